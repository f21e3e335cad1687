"""Operating the command: overlapping runs, a DuckDB file held open, the working folder's size,
a destination that cannot merge."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.runner import DEFAULT_PIPELINE_NAME
from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
from sources.polyai import polyai_source
from sources.polyai.operations import folder_size, prune_working_folder
from tests.support.command import SCRIPT, run_cli, tables
from tests.support.harness import T0, finished_traffic, make_harness, scheduled_env
from tests.support.truth import compare_tables


@pytest.fixture
def slow_simulator() -> Iterator[tuple[Simulator, str]]:
    """Finished traffic on the real clock, every response a little late, so that a run lasts
    long enough to be overlapped. No conversation runs for hours, so the truth a test compares
    with does not move while it runs."""
    clock = SimClock()
    now = clock.now()
    config = SimConfig(
        seed=21,
        n_conversations=400,
        start=now - timedelta(hours=12),
        end=now - timedelta(hours=1),
        long_running_fraction=0.0,
    )
    simulator = Simulator(config, clock)
    simulator.faults.latency_seconds = 3.0
    with SimulatorServer(simulator) as server:
        yield simulator, server.base_url


# An analyst's session: the DuckDB file open read-write in another process, which sleeps.
HOLD_OPEN = (
    "import duckdb, time; held = duckdb.connect({database!r}); print('open', flush=True); time.sleep(600)"
)


def cli_process(cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    environment.update(env, DLT_DATA_DIR=str(cwd / "dlt_data"))
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--pipelines-dir", str(cwd / "pipelines")],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def assert_exact(database: Path, simulator: Simulator) -> None:
    conversations, turns = tables(database)
    problems = compare_tables(simulator.truth(), conversations, turns)
    assert not problems, "\n".join(problems[:20])


def test_a_second_run_of_the_same_pipeline_stops_at_once_naming_the_first(
    tmp_path: Path, slow_simulator: tuple[Simulator, str]
) -> None:
    simulator, base_url = slow_simulator
    database = tmp_path / "overlap.duckdb"
    env = scheduled_env(simulator, base_url, database)
    first = cli_process(tmp_path, env)
    lock = tmp_path / "pipelines" / f"{DEFAULT_PIPELINE_NAME}.lock"
    try:
        # The first run is under way once dlt has made its working folder.
        wait_for(lambda: (tmp_path / "pipelines" / DEFAULT_PIPELINE_NAME).is_dir())
        time.sleep(1)
        started = time.monotonic()
        second = run_cli(tmp_path, env=env)
        elapsed = time.monotonic() - started
    except BaseException:
        first.kill()
        first.communicate()
        raise
    assert second.returncode == 2, second.stdout + second.stderr
    assert first.poll() is None, "the first run ended before the second started: make it slower"
    assert f"PID {first.pid}" in second.stderr and str(lock) in second.stderr
    assert "Traceback" not in second.stderr
    assert elapsed < 30
    print(f"the second run exited after {elapsed:.1f} s")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert f"loaded {len(simulator.truth())} conversation rows" in out
    assert_exact(database, simulator)


def test_a_duckdb_file_held_open_by_another_process_is_named_with_its_pid(
    tmp_path: Path, slow_simulator: tuple[Simulator, str]
) -> None:
    simulator, base_url = slow_simulator
    simulator.faults.latency_seconds = 0.0
    database = tmp_path / "held.duckdb"
    env = scheduled_env(simulator, base_url, database)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN.format(database=str(database))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        held = run_cli(tmp_path, env=env)
    finally:
        holder.kill()
        holder.wait()
    assert held.returncode == 2, held.stdout + held.stderr
    assert f"PID {holder.pid}" in held.stderr and str(database) in held.stderr
    assert "Traceback" not in held.stderr and "internet connection" not in held.stderr
    assert len(held.stderr.strip().splitlines()) == 1, held.stderr
    again = run_cli(tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert_exact(database, simulator)


def test_the_working_folder_keeps_only_what_dlt_reads_again(tmp_path: Path) -> None:
    """After many runs, `load/loaded/` holds the last two packages; an extract that failed
    leaves no folder behind; a package extracted but not loaded stays and is loaded."""
    config = SimConfig(seed=5, n_conversations=600, start=T0, end=T0 + timedelta(hours=30))
    clock = SimClock(T0 + timedelta(hours=2))
    for harness in make_harness(tmp_path, config, clock, name="prune"):
        working_dir = Path(harness.pipeline.working_dir)
        harness.run()
        # An extract that fails leaves its unfinished package in a folder of its own, which
        # no later extract uses.
        with pytest.raises(PipelineStepFailed):
            harness.run(api_key="wrong")
        assert extract_folders(working_dir) != ["extracted"]
        for _ in range(8):
            clock.advance(timedelta(hours=4))
            harness.run()
        loaded = sorted((working_dir / "load" / "loaded").iterdir())
        assert len(loaded) == 2, loaded
        assert extract_folders(working_dir) == ["extracted"]
        # A package extracted but not yet loaded (a run killed after its extract) stays: the
        # next run loads it.
        clock.advance(timedelta(hours=4))
        harness.pipeline.extract(polyai_source(**harness.options()))
        pending = harness.pipeline.list_extracted_load_packages()
        assert pending
        prune_working_folder(harness.pipeline)
        assert harness.pipeline.list_extracted_load_packages() == pending
        harness.run()
        assert not harness.pipeline.has_pending_data
        assert len(list((working_dir / "load" / "loaded").iterdir())) == 2
        harness.run()
        assert_exact(harness.database, harness.simulator)  # type: ignore[arg-type]
        print(f"working folder after 9 loads: {folder_size(working_dir)} bytes")


def extract_folders(working_dir: Path) -> list[str]:
    return sorted(path.name for path in (working_dir / "normalize").iterdir() if path.is_dir())


def test_plain_filesystem_is_refused_at_once(tmp_path: Path) -> None:
    with finished_traffic(seed=4, n_conversations=20, hours=3) as (simulator, base_url):
        env = {
            **scheduled_env(simulator, base_url, tmp_path / "unused.duckdb"),
            "DESTINATION__FILESYSTEM__BUCKET_URL": str(tmp_path / "bucket"),
        }
        started = time.monotonic()
        result = run_cli(tmp_path, "--destination", "filesystem", env=env)
        assert result.returncode == 2, result.stdout + result.stderr
        assert 'table_format="delta"' in result.stderr and "iceberg" in result.stderr
        assert "Traceback" not in result.stderr
        assert time.monotonic() - started < 30
        assert not (tmp_path / "bucket").exists()
        assert simulator.stats.requests == 0


def test_filesystem_refused_for_any_entry_point(tmp_path: Path) -> None:
    config = SimConfig(seed=5, n_conversations=10, start=T0, end=T0 + timedelta(hours=1))
    destination = dlt.destinations.filesystem(str(tmp_path / "bucket"))
    for harness in make_harness(tmp_path, config, SimClock(T0 + timedelta(hours=2)), destination=destination):
        with pytest.raises(Exception, match="cannot merge"):
            harness.run()
