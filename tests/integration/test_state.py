"""Old state rows are pruned in the warehouse and a fresh working folder resumes from the newest
(the encoding: tests/unit/test_state.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from pipelines.runner import make_pipeline
from polyai_simulator import SimClock, SimConfig
from sources.polyai.operations import KEEP_STATE_ROWS
from tests.support.harness import T0, make_harness
from tests.support.truth import compare_tables


def test_runs_with_many_pending_keep_few_state_rows_and_restore_from_the_newest(tmp_path: Path) -> None:
    """Every run changes the state; the warehouse keeps the newest rows only, and a fresh
    working folder still resumes exactly from them."""
    config = SimConfig(
        seed=31, n_conversations=400, start=T0, end=T0 + timedelta(hours=3), long_running_fraction=0.5
    )
    clock = SimClock(T0 + timedelta(hours=1))
    for harness in make_harness(tmp_path, config, clock, name="state_rows", include_latency=True):
        pending_seen = 0
        for _ in range(KEEP_STATE_ROWS + 3):
            summary = harness.run()
            pending_seen = max(pending_seen, summary.pending)
            clock.advance(timedelta(minutes=20))
        assert pending_seen > 50, "the scenario never had many conversations in progress"
        stored = harness.source_state["pending"]
        assert not stored or isinstance(stored.get("ids"), list), "the pending set is not stored in columns"
        versions = [row["version"] for row in harness.rows("_dlt_pipeline_state", "version")]
        assert len(versions) == KEEP_STATE_ROWS, versions
        assert max(versions) == harness.pipeline.state["_state_version"]
        # A new machine: dlt restores the state from the newest row that was kept.
        harness.pipeline = make_pipeline(
            harness.pipeline.pipeline_name,
            harness.pipeline.destination,
            harness.pipeline.dataset_name,
            str(tmp_path / "fresh_working_folder"),
        )
        clock.advance(timedelta(hours=8))
        harness.simulator.reset_stats()
        harness.run()
        main_starts = [
            datetime.fromisoformat(str(entry["params"]["start_time"]).replace("Z", "+00:00"))
            for entry in harness.simulator.stats.request_log
            if entry["params"].get("in_progress") is None
        ]
        assert main_starts and min(main_starts) > config.start, "a second backfill from start_date"
        assert harness.pending == {}
        problems = compare_tables(
            harness.simulator.truth(include_latency=True),
            harness.rows("conversations", "id"),
            harness.rows("turns", "conversation_id, turn_index"),
        )
        assert not problems, "\n".join(problems[:20])
