"""The pipeline into the warehouses: PostgreSQL, BigQuery and Snowflake, several runs while the
simulator's clock moves, each ending exactly at the simulator's truth.

Without accounts, against stand-ins on this machine (tests/support/destination_doubles.py): a real
PostgreSQL server, BigQuery through `bqemulator`, Snowflake through `fakesnow`. With
credentials in dlt's standard variables (`DESTINATION__BIGQUERY__CREDENTIALS__*`,
`DESTINATION__SNOWFLAKE__CREDENTIALS__*`), the same scenario also runs against the real
BigQuery and Snowflake, in a dataset of its own that is dropped afterwards.

The connector code is the same in all of them: the destination's file format and JSON
handling come from pipelines/runner.py; only the stand-ins are adjusted, in their launchers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from pipelines.runner import make_pipeline
from sources.polyai.settings import RUNS_TABLE
from sources.polyai.shaping.records import parse_timestamp
from tests.support.harness import Harness
from tests.support.run_rows import late_arrivals
from tests.support.truth import check_run_against_truth, compare_tables
from tests.support.warehouse_rows import column_types
from tests.support.warehouses import Warehouse, destination_harness

T = TypeVar("T")
# Fewer conversations and runs than the DuckDB suite: each emulated load costs seconds.
STEPS_MINUTES = (20, 45, 90, 240, 600)


# --------------------------------------------------------------------------- the scenarios


def runs_while_the_clock_moves_end_exactly_at_the_truth(harness: Harness) -> None:
    """Each run consistent with the truth; the last, after a full re-read, equal to it."""
    pending_seen = 0
    for minutes in STEPS_MINUTES:
        summary = harness.run()
        pending_seen = max(pending_seen, summary.pending)
        check_run_against_truth(harness)
        harness.clock.advance(timedelta(minutes=minutes))
    assert pending_seen > 0, "the scenario never had a conversation in progress at a run"

    # Everything is read again: merged on the keys, nothing may be doubled.
    harness.run(lookback_minutes=24 * 60)
    truth = harness.simulator.truth(include_latency=True)
    assert all(not c["in_progress"] for c in truth), "the scenario should end with everything finished"
    conversations = harness.rows("conversations", "id")
    turns = harness.rows("turns", "conversation_id, turn_index")
    assert len(conversations) == len(truth) > 40
    assert len(turns) == sum(len(c["turns"]) for c in truth)
    assert any(turn.get("latency_detail") for turn in turns), "no JSON latency in the scenario"
    problems = compare_tables(truth, conversations, turns)
    assert not problems, "\n".join(problems[:20])
    assert harness.pending == {}
    run_history_adds_up(harness, conversations, len(STEPS_MINUTES) + 1)


def run_history_adds_up(harness: Harness, conversations: list[dict[str, Any]], runs: int) -> None:
    """One row per run (one part each), typed, adding up to the conversations loaded."""
    rows = harness.rows(RUNS_TABLE, "ran_at")
    assert len(rows) == len({row["run_id"] for row in rows}) == runs
    assert {row["outcome"] for row in rows} == {"ok"} and rows[-1]["pending_after"] == 0
    started = {row["id"]: parse_timestamp(row["started_at"]) for row in conversations}
    for row in rows:
        for name in ("ran_at", "cursor_before", "cursor_after"):
            row[name] = parse_timestamp(row[name])
    late = late_arrivals(rows, harness.simulator, started)
    assert sum(row["conversations_new"] for row in rows) + late == len(conversations)


def check_column_types(harness: Harness, expected: dict[str, str]) -> None:
    actual = column_types(harness.pipeline, "conversations")
    assert {name: actual.get(name) for name in expected} == expected


def test_runs_into_the_warehouse_end_exactly_at_the_truth(tmp_path: Path, warehouse: Warehouse) -> None:
    for harness in destination_harness(tmp_path, warehouse, "polyai_e2e"):
        runs_while_the_clock_moves_end_exactly_at_the_truth(harness)
        if warehouse.types is not None:
            check_column_types(harness, warehouse.types)


def drop_last_turn_and_add_fields(view: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """The API's view of conversations after a change: one turn fewer, a new field, a misfit."""

    def changed(conversation: Any, now: Any, options: Any) -> dict[str, Any]:
        record = view(conversation, now, options)
        if len(record["turns"]) >= 2:
            record["turns"] = record["turns"][:-1]
            record["num_turns"] = len(record["turns"])
        record["sentiment_score"] = 0.75
        record["total_duration"] = 12.5  # a float where the API documents an integer
        return record

    return changed


def test_a_conversation_loaded_again_replaces_its_row_and_all_its_turns(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    for harness in destination_harness(tmp_path, warehouse, "polyai_replace"):
        harness.clock.advance(timedelta(hours=14))  # everything finished
        harness.run()
        turns_before = len(harness.rows("turns", "conversation_id, turn_index"))
        harness.simulator.view = drop_last_turn_and_add_fields(harness.simulator.view)  # type: ignore[method-assign]
        harness.simulator._cache.clear()
        harness.clock.advance(timedelta(minutes=1))
        summary = harness.run(lookback_minutes=24 * 60)

        assert summary.new_columns == [
            "conversations.sentiment_score",
            "conversations.total_duration__v_json",
        ]
        truth = harness.simulator.truth(include_latency=True)
        for conversation in truth:
            # A value that does not fit its column goes, as exact JSON, to the variant column.
            conversation["total_duration__v_json"] = json.dumps(conversation.pop("total_duration"))
        conversations = harness.rows("conversations", "id")
        turns = harness.rows("turns", "conversation_id, turn_index")
        assert len(turns) < turns_before, "no conversation had a turn fewer"
        assert {row["total_duration"] for row in conversations} == {None}
        problems = compare_tables(truth, conversations, turns)
        assert not problems, "\n".join(problems[:20])


def test_a_fresh_working_folder_resumes_from_the_state_kept_in_the_warehouse(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """A new CI runner or container: dlt restores cursor and pending set from the dataset."""
    for harness in destination_harness(tmp_path, warehouse, "polyai_restore"):
        first = harness.run()
        assert first.pending > 0
        cursor = harness.source_state["cursor"]
        harness.pipeline = make_pipeline(
            harness.pipeline.pipeline_name,
            warehouse.destination(),
            harness.pipeline.dataset_name,
            str(tmp_path / "fresh_working_folder"),
        )
        harness.clock.advance(timedelta(hours=14))
        harness.simulator.reset_stats()
        harness.run()
        # Not a second backfill from start_date: the main window starts at the restored cursor.
        main_windows = [
            entry
            for entry in harness.simulator.stats.request_log
            if entry["params"].get("in_progress") is None
        ]
        starts = [parse_timestamp(param_value(entry, "start_time")) for entry in main_windows]
        assert starts and min(starts) > harness.simulator.config.start, (starts, cursor)
        problems = compare_tables(
            harness.simulator.truth(include_latency=True),
            harness.rows("conversations", "id"),
            harness.rows("turns", "conversation_id, turn_index"),
        )
        assert not problems, "\n".join(problems[:20])
        assert harness.pending == {}


def param_value(entry: dict[str, Any], name: str) -> Any:
    value = entry["params"].get(name)
    return value[0] if isinstance(value, list) and len(value) == 1 else value
