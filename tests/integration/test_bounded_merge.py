"""A load's merge replaces rows since a time bound only, on every destination: the SQL each
receives carries the bound, rows older than it are never touched, and the conversations that
can come back (re-pulled, read again under a later started_at, resynced) still replace exactly.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dlt

from polyai_simulator import SimClock, SimConfig
from sources.polyai.planning import replace_bound
from sources.polyai.shaping.records import parse_timestamp
from tests.support.harness import T0, Harness, make_harness
from tests.support.truth import as_utc, compare_tables
from tests.support.warehouses import Warehouse, destination_harness, small_world

# A time long before the bound, written by each destination's own SQL.
LONG_BEFORE = {
    "duckdb": "{column} - INTERVAL 30 DAY",
    "postgres": "{column} - INTERVAL '30 days'",
    "bigquery": "TIMESTAMP_SUB({column}, INTERVAL 30 DAY)",
    "snowflake": "DATEADD(day, -30, {column})",
}
SENTINEL = "sentinel"


def merge_sql(pipeline: dlt.Pipeline) -> dict[str, str]:
    """The SQL of the last load's merge jobs, by table, as dlt ran it."""
    normalized = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    assert normalized is not None and normalized.loads_ids, "no load was normalized"
    load_id = normalized.loads_ids[-1]
    jobs = pipeline.get_load_package_info(load_id).jobs["completed_jobs"]
    return {
        job.job_file_info.table_name: Path(job.file_path).read_text()
        for job in jobs
        if job.file_path.endswith(".sql")
    }


def add_sentinels(pipeline: dlt.Pipeline, conversation_id: str) -> None:
    """Rows of `conversation_id`, marked by their account_id, that a replace must leave alone
    (30 days before its started_at) or delete (turn 998, at its started_at)."""
    long_before = LONG_BEFORE[pipeline.destination.destination_name]
    # Rows that reach dlt as Python values (BigQuery, Snowflake) carry dlt's NOT NULL ids.
    dlt_ids = "_dlt_id" in pipeline.default_schema.get_table_columns("turns")
    names, values = (", _dlt_load_id, _dlt_id", ", 'sentinel', '{}'") if dlt_ids else ("", "")
    with pipeline.sql_client() as client:
        conversations = client.make_qualified_table_name("conversations")
        turns = client.make_qualified_table_name("turns")
        earlier = long_before.format(column="started_at")
        client.execute_sql(
            f"INSERT INTO {conversations} (project_id, id, started_at, account_id{names})"
            f" SELECT project_id, id, {earlier}, '{SENTINEL}'{values.format('c')} FROM {conversations}"
            f" WHERE id = '{conversation_id}'"
        )
        for turn_index, started in ((999, long_before.format(column="conversation_started_at")),
                                    (998, "conversation_started_at")):  # fmt: skip
            client.execute_sql(
                f"INSERT INTO {turns} (project_id, conversation_id, turn_index, conversation_started_at,"
                f" account_id{names}) SELECT project_id, conversation_id, {turn_index}, {started},"
                f" '{SENTINEL}'{values.format(turn_index)} FROM {turns}"
                f" WHERE conversation_id = '{conversation_id}' AND turn_index = 0"
            )


def rows_since_the_bound_are_replaced_and_older_ones_untouched(harness: Harness) -> None:
    harness.clock.advance(timedelta(hours=14))  # everything finished
    harness.run()
    conversation = next(row for row in harness.rows("conversations", "id") if row["num_turns"])
    add_sentinels(harness.pipeline, conversation["id"])

    harness.run(lookback_minutes=24 * 60)  # every conversation read and replaced again
    truth = harness.simulator.truth(include_latency=True)
    bound = replace_bound(min(as_utc(c["started_at"]) for c in truth))
    assert bound is not None
    sql = merge_sql(harness.pipeline)
    for table, column in (("conversations", "started_at"), ("turns", "conversation_started_at")):
        statement = sql[table]
        assert "DELETE FROM" in statement and f"{column} >= " in statement, statement
        assert bound.strftime("%Y-%m-%d %H:%M:%S") in statement, statement

    conversations = harness.rows("conversations", "id")
    turns = harness.rows("turns", "conversation_id, turn_index")
    sentinels = [row.get("turn_index") for row in conversations + turns if row["account_id"] == SENTINEL]
    assert sentinels == [None, 999], "the merge deleted a row older than its bound, or kept a replaced turn"
    problems = compare_tables(
        truth,
        [row for row in conversations if row["account_id"] != SENTINEL],
        [row for row in turns if row["account_id"] != SENTINEL],
    )
    assert not problems, "\n".join(problems[:20])


def test_on_duckdb_a_load_replaces_rows_since_its_bound_only(tmp_path: Path) -> None:
    config, clock = small_world()
    for harness in make_harness(tmp_path, config, clock, include_latency=True, limit=7):
        rows_since_the_bound_are_replaced_and_older_ones_untouched(harness)


def test_in_the_warehouse_a_load_replaces_rows_since_its_bound_only(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    for harness in destination_harness(tmp_path, warehouse, "polyai_bounded"):
        rows_since_the_bound_are_replaced_and_older_ones_untouched(harness)


def test_a_started_at_that_moves_later_between_runs_still_replaces_exactly(tmp_path: Path) -> None:
    """The server reports some conversations again, two hours later, in a later run: their rows
    of the first run started before anything that run stages (what a bound taken from the
    staged rows alone would keep, doubled)."""
    config = SimConfig(
        seed=7,
        n_conversations=200,
        start=T0,
        end=T0 + timedelta(hours=3),
        long_running_fraction=0.0,
        late_arrival_fraction=0.0,
        echo_fraction=0.2,
        echo_shift_seconds=2 * 3600,
    )
    clock = SimClock(T0 + timedelta(hours=3, minutes=20))
    for harness in make_harness(tmp_path, config, clock, window_hours=1):
        cursor = harness.run(lookback_minutes=0).cursor
        assert cursor is not None
        first = {row["id"]: row["started_at"] for row in harness.rows("conversations", "id")}
        clock.advance(timedelta(hours=3))
        harness.run(lookback_minutes=0)
        conversations = harness.rows("conversations", "id")
        turns = harness.rows("turns", "conversation_id, turn_index")
        moved = [
            row["id"] for row in conversations if row["started_at"] != first.get(row["id"], row["started_at"])
        ]
        assert moved, "the second run read no conversation under a later started_at"
        # Each was first loaded under a started_at before anything the second run reads (from
        # the first run's cursor on).
        assert all(first[id_] < parse_timestamp(cursor) for id_ in moved)
        assert len(conversations) == len({row["id"] for row in conversations}), "doubled conversations"
        keys = {(row["conversation_id"], row["turn_index"]) for row in turns}
        assert len(keys) == len(turns), f"{len(turns) - len(keys)} doubled turns"
        by_id = {row["id"]: row for row in conversations}
        assert all(
            row["conversation_started_at"] == by_id[row["conversation_id"]]["started_at"] for row in turns
        )


def test_a_conversation_re_pulled_up_to_max_pending_hours_after_it_started_replaces_exactly(
    tmp_path: Path,
) -> None:
    """Runs every hour while conversations run for up to six hours (max_pending_hours): the last
    re-pulls of each happen hours after it started, in runs that stage little else."""
    config = SimConfig(
        seed=31,
        n_conversations=150,
        start=T0,
        end=T0 + timedelta(hours=2),
        long_running_fraction=0.3,
        late_arrival_fraction=0.0,
    )
    clock = SimClock(T0 + timedelta(hours=1))
    for harness in make_harness(tmp_path, config, clock, max_pending_hours=7):
        repulled_late = 0
        while clock.now() < T0 + timedelta(hours=10):
            summary = harness.run()
            # Past the data's end and its lookback, a run loads re-pulled conversations only.
            repulled_late += summary.conversations if clock.now() > T0 + timedelta(hours=4) else 0
            clock.advance(timedelta(hours=1))
        assert repulled_late, "no conversation was re-pulled hours after the data ended"
        assert harness.pending == {}
        truth = harness.simulator.truth()
        conversations = harness.rows("conversations", "id")
        turns = harness.rows("turns", "conversation_id, turn_index")
        problems = compare_tables(truth, conversations, turns)
        assert not problems, "\n".join(problems[:20])
