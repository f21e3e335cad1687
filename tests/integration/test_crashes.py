"""A worker killed with SIGKILL at any step, then started again, ends with exactly the clean data."""

from __future__ import annotations

import json
import random
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from polyai_simulator import Simulator
from tests.support.command import run_crash_worker, tables
from tests.support.run_rows import check_runs_add_up, committed_runs, uncommitted_runs
from tests.support.truth import compare_tables


def run_worker(
    base_url: str,
    tmp_path: Path,
    simulator: Simulator,
    kill_at: str,
    load_options: dict | None = None,
    plain_dlt: bool = False,
) -> int:
    env = {
        "POLYAI_TEST_LOAD_OPTIONS": json.dumps(load_options or {}),
        "POLYAI_TEST_PLAIN_DLT": "1" if plain_dlt else "0",
    }
    return run_crash_worker(base_url, tmp_path, simulator.clock.now(), kill_at, env)


def assert_each_visible_conversation_once(database: Path, simulator: Simulator) -> None:
    """No doubled conversation or turn, and every conversation the API shows is there."""
    conversations, turns = tables(database)
    assert len({row["id"] for row in conversations}) == len(conversations), "doubled conversations"
    turn_keys = {(row["conversation_id"], row["turn_index"]) for row in turns}
    assert len(turn_keys) == len(turns), f"{len(turns) - len(turn_keys)} doubled turns"
    assert {row["id"] for row in conversations} == {c["id"] for c in simulator.truth()}


def assert_at_the_truth_once_all_finished(
    base_url: str, tmp_path: Path, simulator: Simulator, load_options: dict | None = None
) -> None:
    """A clean run once every conversation has finished ends exactly at the truth."""
    simulator.clock.advance(timedelta(hours=12))
    run_worker(base_url, tmp_path, simulator, "none", load_options)
    conversations, turns = tables(tmp_path / "crash.duckdb")
    problems = compare_tables(simulator.truth(), conversations, turns)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize(
    "kill_at", ["extract:3", "after_extract", "after_normalize", "during_load:0.05", "during_load:0.3"]
)
def test_killed_run_then_rerun_ends_at_the_truth(
    tmp_path: Path, world: tuple[Simulator, str], kill_at: str
) -> None:
    simulator, base_url = world
    # A first clean run, so the kill lands on a pipeline with state and data.
    run_worker(base_url, tmp_path, simulator, "none")
    simulator.clock.advance(timedelta(minutes=50))
    code = run_worker(base_url, tmp_path, simulator, kill_at)
    # A kill timed during load may come after the load finished; the others always land.
    allowed = (-signal.SIGKILL, 0) if kill_at.startswith("during_load") else (-signal.SIGKILL,)
    assert code in allowed, f"worker exited {code}"
    run_worker(base_url, tmp_path, simulator, "none")
    # Everything visible is there once; finished ones are final; then, once all finish, exact.
    assert_each_visible_conversation_once(tmp_path / "crash.duckdb", simulator)
    assert_at_the_truth_once_all_finished(base_url, tmp_path, simulator)


def test_a_backfill_killed_in_its_second_load_goes_on_from_the_first(
    tmp_path: Path, world: tuple[Simulator, str]
) -> None:
    simulator, base_url = world
    small_loads = {"max_conversations_per_load": 30, "window_hours": 0.25}
    code = run_worker(base_url, tmp_path, simulator, "second_load", small_loads)
    assert code == -signal.SIGKILL, f"worker exited {code}"
    conversations, _ = tables(tmp_path / "crash.duckdb")
    visible = {c["id"] for c in simulator.truth()}
    assert 30 <= len(conversations) < len(visible), "the first load should be committed, alone"

    simulator.reset_stats()
    run_worker(base_url, tmp_path, simulator, "none", small_loads)
    starts = {entry["params"]["start_time"] for entry in simulator.stats.request_log}
    assert all(isinstance(start, str) and start.startswith("2026-") for start in starts), starts
    assert "2026-11-02T08:00:00.000000Z" not in starts, "the backfill started again from start_date"
    assert_each_visible_conversation_once(tmp_path / "crash.duckdb", simulator)
    assert_at_the_truth_once_all_finished(base_url, tmp_path, simulator, small_loads)


# dlt's commit points of a run, each killed at the instant after it: a load job that committed
# in DuckDB but is not yet recorded done (dlt runs it again: at-least-once), and the extract
# and normalize steps with their package written but not committed.
COMMIT_POINTS = [
    "before_extract_commit",
    "before_normalize_commit",
    "after_normalize_commit",
    "after_job:conversations.parquet",
    "after_job:turns.parquet",
    "after_job:_dlt_pipeline_state",
    "after_job:conversations.sql",
    "after_job:turns.sql",
    "after_job:_polyai_runs.sql",
]


@pytest.mark.parametrize("kill_at", COMMIT_POINTS)
def test_a_kill_at_each_commit_point_then_a_rerun_doubles_and_loses_nothing(
    tmp_path: Path, world: tuple[Simulator, str], kill_at: str
) -> None:
    simulator, base_url = world
    run_worker(base_url, tmp_path, simulator, "none")
    simulator.clock.advance(timedelta(minutes=50))
    code = run_worker(base_url, tmp_path, simulator, kill_at)
    assert code == -signal.SIGKILL, f"the worker was not killed at {kill_at} (exit {code})"
    run_worker(base_url, tmp_path, simulator, "none")
    assert_each_visible_conversation_once(tmp_path / "crash.duckdb", simulator)
    assert_at_the_truth_once_all_finished(base_url, tmp_path, simulator)


# A first backfill replaces no loaded row, so it is appended (sources/polyai/written_once.py):
# each job writes its rows into the final table, and a kill after one committed leaves them there.
@pytest.mark.parametrize("kill_at", ["after_job:conversations.parquet", "after_job:turns.parquet"])
def test_a_first_backfill_killed_after_an_append_then_rerun_doubles_and_loses_nothing(
    tmp_path: Path, world: tuple[Simulator, str], kill_at: str
) -> None:
    simulator, base_url = world
    code = run_worker(base_url, tmp_path, simulator, kill_at)
    assert code == -signal.SIGKILL, f"the worker was not killed at {kill_at} (exit {code})"
    conversations, turns = tables(tmp_path / "crash.duckdb")
    appended = conversations if kill_at.startswith("after_job:conversations") else turns
    assert appended, "the killed load did not append its rows to the final table"
    run_worker(base_url, tmp_path, simulator, "none")
    assert_each_visible_conversation_once(tmp_path / "crash.duckdb", simulator)
    assert_at_the_truth_once_all_finished(base_url, tmp_path, simulator)


# The parts after the first append too: they do not stage again what the part before committed.
@pytest.mark.parametrize("kill_at", ["after_job:conversations.parquet#2", "after_job:turns.parquet#2"])
def test_a_backfill_killed_after_an_append_of_its_second_part_then_rerun_doubles_and_loses_nothing(
    tmp_path: Path, world: tuple[Simulator, str], kill_at: str
) -> None:
    simulator, base_url = world
    small_loads = {"max_conversations_per_load": 30, "window_hours": 0.25}
    code = run_worker(base_url, tmp_path, simulator, kill_at, small_loads)
    assert code == -signal.SIGKILL, f"the worker was not killed at {kill_at} (exit {code})"
    table = "conversations" if kill_at.startswith("after_job:conversations") else "turns"
    assert rows_beyond_committed_parts(tmp_path / "crash.duckdb", table), "the second part was not appended"
    run_worker(base_url, tmp_path, simulator, "none", small_loads)
    assert_each_visible_conversation_once(tmp_path / "crash.duckdb", simulator)
    assert_at_the_truth_once_all_finished(base_url, tmp_path, simulator, small_loads)


def rows_beyond_committed_parts(database: Path, table: str) -> int:
    """Rows of `table` beyond what the committed parts loaded (`_polyai_runs`): a killed load's."""
    conversations, turns = tables(database)
    committed = sum(row[table] for row in committed_runs(database))
    return len(conversations if table == "conversations" else turns) - committed


@pytest.mark.parametrize("kill_at", ["after_job:_polyai_runs.sql", "after_job:conversations.sql"])
def test_a_kill_mid_load_leaves_no_run_history_row_without_its_data(
    tmp_path: Path, world: tuple[Simulator, str], kill_at: str
) -> None:
    """The run history's row of a killed load is not committed (its load is not in `_dlt_loads`);
    the rerun deletes it with the load it aborts, and the committed rows add up to the tables."""
    simulator, base_url = world
    database = tmp_path / "crash.duckdb"
    run_worker(base_url, tmp_path, simulator, "none")
    simulator.clock.advance(timedelta(minutes=50))
    assert run_worker(base_url, tmp_path, simulator, kill_at) == -signal.SIGKILL
    stray = uncommitted_runs(database)
    # Killed right after its row was merged, before the load was recorded complete.
    assert len(stray) == 1 if kill_at.startswith("after_job:_polyai_runs") else len(stray) <= 1
    assert len(committed_runs(database)) == 1
    run_worker(base_url, tmp_path, simulator, "none")
    assert not uncommitted_runs(database), "the aborted load's row is still there"
    rows = committed_runs(database)
    assert len(rows) == 2 and rows[0]["run_id"] != rows[1]["run_id"]
    assert {row["run_id"] for row in stray}.isdisjoint(row["run_id"] for row in rows)
    check_runs_add_up(database, {simulator.config.project_id: simulator})
    assert_at_the_truth_once_all_finished(base_url, tmp_path, simulator)
    check_runs_add_up(database, {simulator.config.project_id: simulator})


@pytest.mark.parametrize("kill_at", ["after_job:turns.parquet", "after_job:conversations.sql"])
def test_a_plain_dlt_run_killed_mid_load_then_run_again_doubles_and_loses_nothing(
    tmp_path: Path, world: tuple[Simulator, str], kill_at: str
) -> None:
    """`dlt.pipeline(...).run(polyai_source())` alone, no runner: dlt would resume the killed
    load and stage its rows twice; the source aborts it when created and reads it again."""
    simulator, base_url = world
    run_worker(base_url, tmp_path, simulator, "none", plain_dlt=True)
    simulator.clock.advance(timedelta(minutes=50))
    code = run_worker(base_url, tmp_path, simulator, kill_at, plain_dlt=True)
    assert code == -signal.SIGKILL, f"the worker was not killed at {kill_at} (exit {code})"
    run_worker(base_url, tmp_path, simulator, "none", plain_dlt=True)
    assert_each_visible_conversation_once(tmp_path / "crash.duckdb", simulator)
    simulator.clock.advance(timedelta(hours=12))
    run_worker(base_url, tmp_path, simulator, "none", plain_dlt=True)
    conversations, turns = tables(tmp_path / "crash.duckdb")
    problems = compare_tables(simulator.truth(), conversations, turns)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.slow
def test_many_kills_at_random_moments_with_reruns_double_and_lose_nothing(
    tmp_path: Path, world: tuple[Simulator, str]
) -> None:
    """SIGKILLs drawn at random over a run's lifetime (imports, extract, normalize, load), each
    followed by a clean rerun, while the clock moves: no duplicate after any rerun, and the
    tables end exactly at the truth."""
    simulator, base_url = world
    draw = random.Random(20261202)
    run_worker(base_url, tmp_path, simulator, "none")
    killed = 0
    for _ in range(12):
        simulator.clock.advance(timedelta(minutes=15))
        code = run_worker(base_url, tmp_path, simulator, f"random:{draw.uniform(0.3, 4.0):.2f}")
        killed += code == -signal.SIGKILL
        run_worker(base_url, tmp_path, simulator, "none")
        assert_each_visible_conversation_once(tmp_path / "crash.duckdb", simulator)
    assert killed >= 6, f"only {killed} of 12 runs were killed: the draws miss the runs"
    assert_at_the_truth_once_all_finished(base_url, tmp_path, simulator)
