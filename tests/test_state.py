"""The source's state stays small: the pending set stored in columns, old state rows pruned."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import T0, make_harness
from truth import compare_tables

from pipelines.runner import make_pipeline
from polyai_simulator import SimClock, SimConfig
from sources.polyai.operations import KEEP_STATE_ROWS
from sources.polyai.state import LastRun, SourceState, decode_pending, encode_pending


def some_pending(count: int, seed: int = 5) -> dict[str, str]:
    rng = random.Random(seed)
    return {
        str(uuid.UUID(int=rng.getrandbits(128))): (
            T0 + timedelta(seconds=rng.uniform(0, 48 * 3600))
        ).isoformat()
        for _ in range(count)
    }


def test_the_stored_pending_set_reads_back_exactly() -> None:
    pending = some_pending(500)
    decoded = decode_pending(encode_pending(pending))
    assert decoded == pending


def test_an_empty_pending_set_is_stored_as_nothing() -> None:
    assert encode_pending({}) == {}
    assert decode_pending({}) == {}
    assert decode_pending(None) == {}


def test_the_pending_set_of_earlier_versions_is_read_as_it_was() -> None:
    """Earlier versions stored id -> ISO started_at: a pipeline upgrades in place."""
    earlier = {"CA1": "2026-11-02T08:00:00.250000+00:00", "ids": "2026-11-02T09:00:00+00:00"}
    assert decode_pending(earlier) == earlier


def test_ten_thousand_pending_conversations_take_about_their_ids() -> None:
    """Per entry, what the columns add to the opaque id is a few digits (issue: 575 KB of state)."""
    pending = some_pending(10_000)
    stored = len(json.dumps(encode_pending(pending)))
    as_before = len(json.dumps(pending))
    ids_alone = len(json.dumps(list(pending)))
    assert stored < 0.7 * as_before, (stored, as_before)
    assert stored < 1.3 * ids_alone, (stored, ids_alone)


def test_a_damaged_pending_set_is_an_error_not_a_guess() -> None:
    stored = encode_pending(some_pending(3))
    stored["gaps_us"] = stored["gaps_us"][:1]
    with pytest.raises(ValueError, match="damaged"):
        decode_pending(stored)


def test_the_typed_view_reads_and_writes_the_keys_of_the_state() -> None:
    raw: dict[str, object] = {}
    state = SourceState(raw)
    assert state.cursor is None and state.pending == {} and state.last_run == LastRun()
    state.cursor = "2026-11-02T08:00:00+00:00"
    state.pending["CA1"] = "2026-11-02T07:59:00+00:00"
    state.save_pending()
    state.repull_misses = {"CA1": 2}
    state.last_run = LastRun(requests=3, caught_up=False)
    again = SourceState(raw)
    assert again.cursor == "2026-11-02T08:00:00+00:00"
    assert again.pending == {"CA1": "2026-11-02T07:59:00+00:00"}
    assert again.repull_misses == {"CA1": 2}
    assert again.last_run.requests == 3 and not again.last_run.caught_up
    again.repull_misses = {}
    assert "repull_misses" not in raw


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
