"""A resync killed with SIGKILL between its parts or in the middle of a load, then run again, ends exactly."""

from __future__ import annotations

import json
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from polyai_simulator import Simulator
from sources.polyai.resync import ResyncProgress
from sources.polyai.state import SourceState
from tests.support.command import run_crash_worker, tables
from tests.support.harness import T0
from tests.support.truth import compare_tables

RANGE = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=3)).isoformat()}
SMALL_PARTS = {"max_conversations_per_load": 30, "window_hours": 0.25}


def run_worker(base_url: str, tmp_path: Path, simulator: Simulator, kill_at: str, resync: bool) -> int:
    env = {
        "POLYAI_TEST_LOAD_OPTIONS": json.dumps(SMALL_PARTS),
        "POLYAI_TEST_RESYNC": json.dumps(RANGE if resync else None),
    }
    return run_crash_worker(base_url, tmp_path, simulator.clock.now(), kill_at, env)


def stored_progress(tmp_path: Path) -> ResyncProgress | None:
    state_file = next((tmp_path / "pipelines").rglob("state.json"))
    states = SourceState.projects_of_pipeline(json.loads(state_file.read_text()))
    (state,) = states.values()
    return ResyncProgress.read(state.resync)


def hollow_world(tmp_path: Path, world: tuple[Simulator, str]) -> tuple[Simulator, str]:
    """Loaded while transcripts were off, then on: the conversations read then stay hollow."""
    simulator, base_url = world
    simulator.config.transcripts_enabled = False
    run_worker(base_url, tmp_path, simulator, "none", resync=False)
    simulator.config.transcripts_enabled = True
    simulator.clock.advance(timedelta(hours=12))
    run_worker(base_url, tmp_path, simulator, "none", resync=False)
    conversations, turns = tables(tmp_path / "crash.duckdb")
    assert compare_tables(simulator.truth(), conversations, turns), (
        "the tables should hold hollow conversations"
    )
    return simulator, base_url


def assert_exactly_the_truth(tmp_path: Path, simulator: Simulator) -> None:
    conversations, turns = tables(tmp_path / "crash.duckdb")
    assert len({row["id"] for row in conversations}) == len(conversations), "doubled conversations"
    assert len({(r["conversation_id"], r["turn_index"]) for r in turns}) == len(turns), "doubled turns"
    problems = compare_tables(simulator.truth(), conversations, turns)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize(
    "kill_at",
    ["second_load", "after_job:turns.parquet", "after_job:turns.sql", "after_job:_dlt_pipeline_state"],
)
def test_a_resync_killed_then_run_again_ends_exactly(
    tmp_path: Path, world: tuple[Simulator, str], kill_at: str
) -> None:
    simulator, base_url = hollow_world(tmp_path, world)
    code = run_worker(base_url, tmp_path, simulator, kill_at, resync=True)
    assert code == -signal.SIGKILL, f"the resync was not killed at {kill_at} (exit {code})"
    between_parts = kill_at == "second_load"
    killed = stored_progress(tmp_path)
    if between_parts:
        # The first part is committed, and the rerun goes on from it.
        assert killed is not None and not killed.done and killed.parts == 1
    simulator.reset_stats()
    run_worker(base_url, tmp_path, simulator, "none", resync=True)
    done = stored_progress(tmp_path)
    assert done is not None and done.done and done.read_to == RANGE["to"]
    if between_parts:
        assert killed is not None and done.continued_from == killed.read_to
        starts = {entry["params"]["start_time"] for entry in simulator.stats.request_log}
        assert "2026-11-02T08:00:00.000000Z" not in starts, "the resync started again from its start"
    assert_exactly_the_truth(tmp_path, simulator)
