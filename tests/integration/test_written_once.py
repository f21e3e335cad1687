"""A load whose rows replace no loaded row is appended, written once; any other load merges.

The decision is the merge's own (rows since its bound whose conversation is staged): a first
backfill appends, a load that re-reads loaded conversations merges, and both end at the truth.
The later parts of a backfill do not stage again the finished conversations that the part
before them committed (their lookback re-reads them), so they append too. The kill tests of an
appended load are in test_crashes.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dlt
import pytest
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from polyai_simulator import SimClock, SimConfig
from sources.polyai.written_once import load_committed
from tests.integration.test_bounded_merge import merge_sql
from tests.support.harness import T0, make_harness
from tests.support.truth import compare_tables
from tests.support.warehouses import small_world


def loaded_tables(pipeline: dlt.Pipeline) -> set[str]:
    """The tables the last load wrote a file of rows to (appended, or copied into staging)."""
    normalized = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    assert normalized is not None and normalized.loads_ids, "no load was normalized"
    jobs = pipeline.get_load_package_info(normalized.loads_ids[-1]).jobs["completed_jobs"]
    return {job.job_file_info.table_name for job in jobs if not job.file_path.endswith(".sql")}


def staged_rows(pipeline: dlt.Pipeline, table: str) -> int:
    """Rows of `table` in dlt's staging dataset, where a merge copies them first (0 if none)."""
    with pipeline.sql_client() as client, client.with_staging_dataset():
        if not client.has_dataset():
            return 0
        qualified = client.make_qualified_table_name(table)
        try:
            rows = client.execute_sql(f"SELECT count(*) FROM {qualified}")
        except DatabaseUndefinedRelation:  # a table dlt never created there
            return 0
        return int(rows[0][0]) if rows else 0


def test_a_first_backfill_is_appended_and_a_load_that_meets_loaded_rows_merges(tmp_path: Path) -> None:
    config, clock = small_world()
    for harness in make_harness(tmp_path, config, clock, limit=7):
        harness.run()
        pipeline = harness.pipeline
        assert {"conversations", "turns"} <= loaded_tables(pipeline)
        assert not {"conversations", "turns"} & set(merge_sql(pipeline)), "a first backfill was merged"
        assert staged_rows(pipeline, "conversations") == staged_rows(pipeline, "turns") == 0
        first = harness.rows("conversations", "id")
        assert first and harness.pending, "the first run should leave conversations in progress"

        # In-progress conversations are read again: they are loaded rows, so this load merges.
        clock.advance(timedelta(hours=14))
        harness.run()
        assert {"conversations", "turns"} <= set(merge_sql(pipeline)), "re-pulled rows were appended"
        assert staged_rows(pipeline, "conversations") > 0
        conversations = harness.rows("conversations", "id")
        turns = harness.rows("turns", "conversation_id, turn_index")
        problems = compare_tables(harness.simulator.truth(), conversations, turns)
        assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("limit", [7, 40])
def test_every_part_of_a_backfill_is_appended_and_counts_each_conversation_once(
    tmp_path: Path, limit: int
) -> None:
    """Each part reads the lookback before its cursor again: what it re-reads, the part before
    committed, finished, in this run. Those are not staged again, so every part appends, the
    staging dataset stays empty, and the run counts each conversation once."""
    # Finished traffic: a part that re-reads a conversation still in progress merges (above).
    config = SimConfig(
        seed=41, n_conversations=400, start=T0, end=T0 + timedelta(hours=30), long_running_fraction=0.0
    )
    clock = SimClock(T0 + timedelta(hours=31))
    for harness in make_harness(tmp_path, config, clock, limit=limit):
        summary = harness.run(max_conversations_per_load=60, concurrency=2, lookback_minutes=120)
        assert summary.caught_up and summary.loads >= 3, summary.loads
        staged = staged_rows(harness.pipeline, "conversations"), staged_rows(harness.pipeline, "turns")
        assert staged == (0, 0), f"a part of the backfill was merged: {staged} rows staged"
        conversations = harness.rows("conversations", "id")
        turns = harness.rows("turns", "conversation_id, turn_index")
        assert summary.conversations == len(conversations), (summary.conversations, len(conversations))
        assert summary.turns == len(turns), (summary.turns, len(turns))
        parts = [row for row in harness.rows("_polyai_runs", "_dlt_load_id") if row["kind"] == "run"]
        assert len(parts) == summary.loads
        assert sum(row["conversations"] for row in parts) == len(conversations)
        problems = compare_tables(harness.simulator.truth(), conversations, turns)
        assert not problems, "\n".join(problems[:20])


def test_only_a_load_the_destination_recorded_counts_as_committed(tmp_path: Path) -> None:
    """The next part skips what the last one kept only once `_dlt_loads` holds that load."""
    config, clock = small_world()
    for harness in make_harness(tmp_path, config, clock, limit=7):
        assert not load_committed(harness.pipeline, "1764000000.0"), "nothing was loaded yet"
        harness.run()
        trace = harness.pipeline.last_trace
        assert trace is not None and trace.last_normalize_info is not None
        load_id = trace.last_normalize_info.loads_ids[-1]
        assert load_committed(harness.pipeline, load_id)
        assert not load_committed(harness.pipeline, f"{load_id}1")


def test_a_backfill_in_parts_from_a_server_whose_filter_is_offset_ends_at_the_truth(tmp_path: Path) -> None:
    """A filter an hour ahead of the reported started_at sends each part conversations past its
    cursor and, to the next part, ones the part before committed: the next part skips only
    those started before that cursor, and the tables end at the truth, each row once."""
    config = SimConfig(
        seed=43,
        n_conversations=300,
        start=T0,
        end=T0 + timedelta(hours=20),
        long_running_fraction=0.0,
        late_arrival_fraction=0.0,
        filter_offset_seconds=3600,
    )
    clock = SimClock(T0 + timedelta(hours=22))
    for harness in make_harness(tmp_path, config, clock, limit=10):
        summary = harness.run(max_conversations_per_load=40, concurrency=2, lookback_minutes=75)
        assert summary.caught_up and summary.loads >= 3, summary.loads
        conversations = harness.rows("conversations", "id")
        turns = harness.rows("turns", "conversation_id, turn_index")
        assert len({row["id"] for row in conversations}) == len(conversations)
        problems = compare_tables(harness.simulator.truth(), conversations, turns)
        assert not problems, "\n".join(problems[:20])
