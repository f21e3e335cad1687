"""What the command says when it finishes an earlier run's load, lacks settings or is stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from polyai_simulator import Simulator
from tests.support.harness import finished_traffic, scheduled_env

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "pipelines" / "polyai_pipeline.py"
WORKER = ROOT / "tests" / "support" / "crash_worker.py"


def clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    return {**environment, "DLT_DATA_DIR": str(tmp_path / "dlt_data"), **settings}


def count(database: Path, table: str) -> int:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.sql(f"SELECT count(*) FROM polyai.{table}").fetchall()[0][0]


def test_a_run_that_only_finishes_a_pending_load_reports_the_rows_it_loaded(
    tmp_path: Path, world: tuple[Simulator, str]
) -> None:
    """A run killed after normalize leaves a package: the next run loads it and says what it loaded.

    (A pipeline's very first load killed that way is not pending: dlt starts it afresh.)
    """
    simulator, base_url = world
    database, pipelines = tmp_path / "crash.duckdb", tmp_path / "pipelines"
    worker = [sys.executable, str(WORKER), base_url, str(database), str(pipelines)]
    first = subprocess.run(
        [*worker, simulator.clock.now().isoformat(), "none"], capture_output=True, timeout=300
    )
    assert first.returncode == 0, first.stderr[-3000:]
    simulator.clock.advance(timedelta(hours=1))
    killed = subprocess.run(
        [*worker, simulator.clock.now().isoformat(), "after_normalize"], capture_output=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (pending,) = (pipelines / "crash" / "load" / "normalized").iterdir()

    env = clean_env(tmp_path, **scheduled_env(simulator, base_url, database))
    command = [sys.executable, str(SCRIPT), "--pipeline-name", "crash", "--pipelines-dir", str(pipelines)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    jobs = pipelines / "crash" / "load" / "loaded" / pending.name / "completed_jobs"
    with duckdb.connect() as connection:
        conversations, turns = (
            connection.sql(f"SELECT count(*) FROM read_parquet('{jobs}/{table}.*.parquet')").fetchall()[0][0]
            for table in ("conversations", "turns")
        )
    assert conversations > 0 and turns > conversations
    assert f"loaded {conversations} conversation rows and {turns} turn rows" in result.stdout


def test_no_settings_print_one_line_naming_each_missing_setting(tmp_path: Path) -> None:
    """dlt's own message lists ~60 probed keys and a warning about the run folder."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--pipelines-dir", str(tmp_path / "pipelines")],
        cwd=ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "error: missing setting(s) api_key (SOURCES__POLYAI__API_KEY), account_id "
        "(SOURCES__POLYAI__ACCOUNT_ID), project_id (SOURCES__POLYAI__PROJECT_ID): set them in "
        "the environment, .dlt/secrets.toml or .dlt/config.toml"
    ]


@pytest.fixture
def slow_simulator() -> Iterator[tuple[Simulator, str]]:
    with finished_traffic(seed=5, n_conversations=600, hours=30) as served:
        simulator, _ = served
        simulator.faults.latency_seconds = 0.3
        yield served


def test_sigterm_during_extract_says_what_happened_and_a_rerun_finishes(
    tmp_path: Path, slow_simulator: tuple[Simulator, str]
) -> None:
    simulator, base_url = slow_simulator
    database = tmp_path / "stopped.duckdb"
    env = clean_env(tmp_path, **scheduled_env(simulator, base_url, database))
    command = [sys.executable, str(SCRIPT), "--pipelines-dir", str(tmp_path / "pipelines")]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while simulator.stats.requests < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert simulator.stats.requests >= 3, "the run sent no request"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "run it again" in stderr
    assert "Traceback" not in stderr

    simulator.faults.latency_seconds = 0.0
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert count(database, "conversations") == len(simulator.truth())
