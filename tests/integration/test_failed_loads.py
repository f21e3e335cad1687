"""Loads that fail in the destination: a pipeline never stays stuck, and once the cause is gone
the next run ends exactly at the truth."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
from tests.support.command import run_cli, tables
from tests.support.harness import T0, Harness, make_harness, scheduled_env
from tests.support.truth import compare_tables
from tests.support.warehouses import Warehouse


@pytest.fixture
def postgres_harness(tmp_path: Path, postgres: Warehouse) -> Iterator[Harness]:
    config = SimConfig(seed=31, n_conversations=200, start=T0, end=T0 + timedelta(hours=4))
    yield from make_harness(
        tmp_path, config, SimClock(T0 + timedelta(hours=1)), name="failed", destination=postgres.destination()
    )


def test_a_load_that_fails_for_good_is_aborted_and_the_next_run_reads_its_range_again(
    postgres_harness: Harness,
) -> None:
    """A destination error that no retry mends (here a CHECK constraint an administrator added)
    fails the run; the package is aborted and the state rolled back with it, so the pipeline is
    not stuck on a package that can never load. Once the cause is removed, the next run reads
    that range again and ends exactly at the truth."""
    harness = postgres_harness
    harness.run()
    dataset = harness.pipeline.dataset_name
    with harness.pipeline.sql_client() as client:
        client.execute_sql(
            f"ALTER TABLE {dataset}.turns ADD CONSTRAINT few_turns CHECK (turn_index < 3) NOT VALID"
        )
    cursor_before = harness.source_state["cursor"]
    harness.clock.advance(timedelta(hours=1))
    with pytest.raises(PipelineStepFailed) as failure:
        harness.run()
    assert failure.value.step == "load"
    assert "few_turns" in str(failure.value)
    assert harness.source_state["cursor"] == cursor_before, "the failed load's cursor was kept"
    assert not harness.pipeline.list_normalized_load_packages(), "a package that cannot load stays pending"
    with harness.pipeline.sql_client() as client:
        client.execute_sql(f"ALTER TABLE {dataset}.turns DROP CONSTRAINT few_turns")
    harness.run()
    harness.clock.advance(timedelta(hours=12))
    harness.run()
    problems = compare_tables(
        harness.simulator.truth(),
        harness.rows("conversations", "id"),
        harness.rows("turns", "conversation_id, turn_index"),
    )
    assert not problems, "\n".join(problems[:20])


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path` (root only): a disk that can be filled without harm."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Fills `disk` up to `leave_bytes` of free space; removing the returned file frees it."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free - leave_bytes
    with filler.open("wb") as handle:
        handle.truncate(0)
        chunk = b"\0" * (1 << 20)
        while free > 0:
            handle.write(chunk[: min(len(chunk), free)])
            free -= len(chunk)
    return filler


def test_a_full_disk_names_the_cause_and_the_run_after_freeing_it_ends_at_the_truth(tmp_path: Path) -> None:
    """The DuckDB file (and DuckDB's spill folder beside it) on a disk that fills up mid-run.

    The command runs on this machine's clock: the simulated traffic lies a day in the past, so
    that every conversation has finished when the test ends, and pending ones are kept long
    enough (max_pending_hours) to finish."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=30)
    config = SimConfig(seed=37, n_conversations=600, start=start, end=start + timedelta(hours=6))
    simulator = Simulator(config, SimClock(start + timedelta(hours=1)))
    with SimulatorServer(simulator) as server, small_disk(tmp_path / "disk", "256m") as disk:
        base_url = server.base_url
        database = disk / "full.duckdb"
        env = {
            **scheduled_env(simulator, base_url, database),
            "SOURCES__POLYAI__MAX_PENDING_HOURS": "100",
        }
        assert run_cli(tmp_path, env=env).returncode == 0
        simulator.clock.advance(timedelta(hours=3))
        filler = fill(disk, leave_bytes=64 * 1024)
        failed = run_cli(tmp_path, env=env)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "disk is full" in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr
        filler.unlink()
        finished = run_cli(tmp_path, env=env)
        assert finished.returncode == 0, finished.stderr
        simulator.clock.advance(timedelta(hours=12))
        assert run_cli(tmp_path, env=env).returncode == 0
        conversations, turns = tables(database)
        problems = compare_tables(simulator.truth(), conversations, turns)
        assert not problems, "\n".join(problems[:20])
