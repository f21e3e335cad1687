"""What the warehouses receive instead of Arrow (the scenarios themselves:
tests/integration/test_destinations.py)."""

from __future__ import annotations

from datetime import UTC, datetime

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
