"""The command a user runs: the demo, the summary, and clear failures without tracebacks."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from polyai_simulator import Simulator
from tests.support.command import SCRIPT, run_cli
from tests.support.harness import finished_traffic, scheduled_env


@pytest.fixture
def live_simulator() -> Iterator[tuple[Simulator, str]]:
    with finished_traffic(seed=3, n_conversations=150, hours=7) as served:
        yield served


def test_demo_loads_duckdb_without_credentials(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--demo", "--demo-conversations", "400")
    assert result.returncode == 0, result.stderr
    assert "conversation rows" in result.stdout
    assert "SELECT" in result.stdout
    with duckdb.connect(str(tmp_path / "polyai_demo.duckdb"), read_only=True) as connection:
        conversations = connection.sql("SELECT count(*) FROM polyai.conversations").fetchall()[0][0]
        turns = connection.sql("SELECT count(*) FROM polyai.turns").fetchall()[0][0]
    assert 0 < conversations <= 400
    assert turns > conversations


def test_the_demo_in_a_second_folder_loads_its_own_file(tmp_path: Path) -> None:
    """dlt keeps pipeline state in one data folder for all checkouts: the demo must not follow it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    environment["DLT_DATA_DIR"] = str(tmp_path / "shared_dlt_data")
    for folder in ("first", "second"):
        (tmp_path / folder).mkdir()
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--demo", "--demo-conversations", "200"],
            cwd=tmp_path / folder,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        with duckdb.connect(str(tmp_path / folder / "polyai_demo.duckdb"), read_only=True) as connection:
            loaded = connection.sql("SELECT count(*) FROM polyai.conversations").fetchall()[0][0]
        assert loaded > 100, (folder, loaded)


def test_scheduled_run_reads_env_settings_and_prints_summary(
    tmp_path: Path, live_simulator: tuple[Simulator, str]
) -> None:
    simulator, base_url = live_simulator
    env = scheduled_env(simulator, base_url, tmp_path / "scheduled.duckdb")
    result = run_cli(tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    visible = len(simulator.truth())
    assert f"loaded {visible} conversation rows" in result.stdout
    assert "cursor" in result.stdout
    assert simulator.config.api_key not in result.stdout + result.stderr


def test_a_load_that_runs_out_of_duckdb_memory_names_the_setting_and_loses_nothing(
    tmp_path: Path, live_simulator: tuple[Simulator, str]
) -> None:
    simulator, base_url = live_simulator
    env = {**scheduled_env(simulator, base_url, tmp_path / "tight.duckdb"), "LOAD__RAISE_ON_MAX_RETRIES": "1"}
    tight = run_cli(
        tmp_path, env={**env, "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG": '{"memory_limit": "1MB"}'}
    )
    assert tight.returncode == 1, tight.stdout + tight.stderr
    assert "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG" in tight.stderr
    assert "Traceback" not in tight.stderr
    # The pending package is loaded by the next run, with the limit raised.
    again = run_cli(
        tmp_path, env={**env, "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG": '{"memory_limit": "256MB"}'}
    )
    assert again.returncode == 0, again.stderr
    with duckdb.connect(str(tmp_path / "tight.duckdb"), read_only=True) as connection:
        loaded = connection.sql("SELECT count(*) FROM polyai.conversations").fetchall()
    assert loaded == [(len(simulator.truth()),)]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SOURCES__POLYAI__ACCOUNT_ID": "a", "SOURCES__POLYAI__PROJECT_ID": "p"}, "api_key"),
        (
            {
                "SOURCES__POLYAI__API_KEY": "k",
                "SOURCES__POLYAI__ACCOUNT_ID": "a",
                "SOURCES__POLYAI__PROJECT_ID": "p",
                "SOURCES__POLYAI__REGION": "mars-1",
            },
            "region",
        ),
        (
            {
                "SOURCES__POLYAI__API_KEY": "k",
                "SOURCES__POLYAI__ACCOUNT_ID": "a",
                "SOURCES__POLYAI__PROJECT_ID": "p",
                "SOURCES__POLYAI__LIMIT": "5000",
            },
            "limit",
        ),
    ],
)
def test_bad_settings_exit_non_zero_with_the_setting_named(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    result = run_cli(tmp_path, env=env)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_rejected_key_exits_with_the_api_error_and_no_traceback(
    tmp_path: Path, live_simulator: tuple[Simulator, str]
) -> None:
    simulator, base_url = live_simulator
    env = {
        "SOURCES__POLYAI__API_KEY": "wrong-key-123",
        "SOURCES__POLYAI__ACCOUNT_ID": simulator.config.account_id,
        "SOURCES__POLYAI__PROJECT_ID": simulator.config.project_id,
        "SOURCES__POLYAI__BASE_URL": base_url,
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "rejected.duckdb"),
    }
    simulator.reset_stats()
    result = run_cli(tmp_path, env=env)
    assert result.returncode == 2
    # Never retried: at most one request per connection before the run stops.
    assert 1 <= simulator.stats.requests <= 4
    assert "403" in result.stderr
    assert "correlation id" in result.stderr
    assert "Traceback" not in result.stderr
    assert "wrong-key-123" not in result.stdout + result.stderr


def test_api_key_and_salt_never_land_in_output_files_or_the_database(
    tmp_path: Path, live_simulator: tuple[Simulator, str]
) -> None:
    simulator, base_url = live_simulator
    simulator.config.api_key = key = "sk-live-7f3a9c1e5b2d4f60-unique-marker"
    salt = "salt-3b8e1d2a9c7f-unique-marker"
    env = {
        "SOURCES__POLYAI__API_KEY": key,
        "SOURCES__POLYAI__ACCOUNT_ID": simulator.config.account_id,
        "SOURCES__POLYAI__PROJECT_ID": simulator.config.project_id,
        "SOURCES__POLYAI__BASE_URL": base_url,
        "SOURCES__POLYAI__START_DATE": simulator.config.start.isoformat(),
        "SOURCES__POLYAI__PHONE_NUMBERS": "hash",
        "SOURCES__POLYAI__PII_SALT": salt,
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "secret.duckdb"),
        "RUNTIME__LOG_LEVEL": "INFO",
    }
    result = run_cli(tmp_path, "--verbose", env=env)
    assert result.returncode == 0, result.stderr
    simulator.config.api_key = "another-key"  # the next run is refused: an error path too
    failed = run_cli(tmp_path, "--verbose", env=env)
    assert failed.returncode == 2
    for secret in (key, salt):
        assert secret not in result.stdout + result.stderr + failed.stdout + failed.stderr
        leaks = [
            str(path)
            for path in tmp_path.rglob("*")
            if path.is_file() and secret.encode() in path.read_bytes()
        ]
        assert leaks == [], f"{secret} written to {leaks}"
    assert (tmp_path / "secret.duckdb").stat().st_size > 0
    assert any((tmp_path / "pipelines").rglob("*")), "the pipeline's working folder was searched"


def test_a_run_imports_neither_pandas_nor_sqlalchemy(
    tmp_path: Path, live_simulator: tuple[Simulator, str]
) -> None:
    """Both are installed here (BigQuery and Dagster extras); ~50 MB a run needs not (lean_imports)."""
    if importlib.util.find_spec("pandas") is None or importlib.util.find_spec("sqlalchemy") is None:
        pytest.skip("pandas and SQLAlchemy are not installed: nothing to keep out")
    simulator, base_url = live_simulator
    env = scheduled_env(simulator, base_url, tmp_path / "scheduled.duckdb")
    result = run_cli(tmp_path, env={**env, "PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr
    imported = [
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert {"duckdb", "pyarrow.parquet", "dlt.load"} <= set(imported)  # the trace covers the whole run
    # A refused import shows up too, alone; one that happened brings its submodules.
    assert not [name for name in imported if name.startswith(("pandas.", "sqlalchemy."))]
