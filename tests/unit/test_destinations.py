"""What the warehouses receive instead of Arrow, and the merges they run (the scenarios
themselves: tests/integration/test_destinations.py and test_bounded_merge.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sources.polyai.destinations import TESTED_DESTINATIONS, DestinationFit
from sources.polyai.planning import replace_bound
from sources.polyai.shaping.records import conversations_table, rows_with_json_values


def test_rows_for_warehouses_carry_json_as_objects_and_json_scalars_as_text() -> None:
    """What BigQuery and Snowflake receive instead of Arrow: objects dlt writes as nested JSON."""
    page = [
        {
            "id": "c1",
            "started_at": "2026-11-02T08:00:00Z",
            "metrics": {"REASON": ["a", "b"]},
            "state": None,
            "context": {"n": 2**70},  # a new field, beyond 64 bits
            "total_duration": 12.5,  # a misfit: its variant column holds the JSON number
        }
    ]
    table, new_columns = conversations_table(page)
    assert new_columns == {"context": "json", "total_duration__v_json": "json"}
    [row] = rows_with_json_values(table)
    assert row["metrics"] == {"REASON": ["a", "b"]}
    assert row["state"] is None
    assert row["context"] == {"n": 2**70}
    # dlt's normalizer parses text into a `json` column; a bare 12.5 would get a column of its own.
    assert row["total_duration__v_json"] == "12.5"
    assert row["total_duration"] is None
    assert row["started_at"] == datetime(2026, 11, 2, 8, tzinfo=UTC)


def test_the_bound_is_the_hour_a_day_before_the_oldest_row_staged() -> None:
    oldest = datetime(2026, 11, 2, 8, 41, 7, 5, tzinfo=UTC)
    assert replace_bound(oldest) == datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    assert replace_bound(None) is None
    assert replace_bound(oldest, margin=timedelta(0)) == datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("destination", TESTED_DESTINATIONS)
def test_every_tested_destination_bounds_both_deletes_in_time(destination: str) -> None:
    fit = DestinationFit.of(destination)
    since = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    for merge, column in (
        (fit.conversations_merge(since), "conversations.started_at >= "),
        (fit.turns_merge(since, legacy_project_id="proj-1"), "turns.conversation_started_at >= "),
    ):
        scope = merge["destination_scope"]
        assert scope.startswith(column) and "2026-11-01 08:00:00.000000+00:00" in scope, scope
        assert "{staging_table}" in scope
        # dlt fills the placeholders with str.format: nothing else may read as one.
        assert scope.format(staging_table="s").count("{") == 0
    assert "COALESCE(turns.project_id, 'proj-1')" in fit.turns_merge(since, "proj-1")["destination_scope"]


def test_other_destinations_and_loads_without_rows_merge_without_a_bound() -> None:
    since = datetime(2026, 11, 1, tzinfo=UTC)
    assert " >= " not in DestinationFit.of("clickhouse").turns_merge(since)["destination_scope"]
    assert " >= " not in DestinationFit.of("duckdb").conversations_merge(None)["destination_scope"]
