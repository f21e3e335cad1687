"""The run history for tests/integration/test_dbt.py: hand-made rows and the expected `fct_load_health`.

The expectation is computed here in Python from the committed rows (tests/support/run_rows.py),
independently of the dbt models' SQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from sources.polyai.settings import RUN_COLUMN_TYPES
from tests.support.run_rows import committed_runs

SQL_TYPES = {
    "text": "varchar",
    "bigint": "bigint",
    "double": "double",
    "timestamp": "timestamp with time zone",
}
RUNS_DDL = (
    "create table polyai._polyai_runs ("
    + ", ".join(f"{name} {SQL_TYPES[kind]}" for name, kind in RUN_COLUMN_TYPES.items())
    + ", _dlt_load_id varchar not null, _dlt_id varchar not null)"
)
LOADS_DDL = """
create table polyai._dlt_loads (
    load_id varchar not null, schema_name varchar, status bigint not null,
    inserted_at timestamp with time zone not null, schema_version_hash varchar
)
"""
# Every part took 12 s from the start of its extraction to its load's completion.
PART_SECONDS = 12
MEASURES = (
    "runs",
    "load_parts",
    "failed_runs",
    "failed_parts",
    "conversations_loaded",
    "conversations_new",
    "turns_loaded",
    "max_lag_seconds",
    "resyncs",
)


def _row(
    run_id: str, part: int, project: str, load_id: str, ran_at: datetime, **values: Any
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(RUN_COLUMN_TYPES)
    row.update(
        run_id=run_id,
        part=part,
        state_key=f"us-1/{project}/live",
        label=project,
        project_id=project,
        account_id="acc",
        region="us-1",
        client_env="live",
        kind="run",
        ran_at=ran_at,
        extract_started_at=ran_at,
        extract_seconds=1.5,
        requests=3,
        retries=0,
        rate_limited=0,
        repulled=0,
        finished_since_last=0,
        pending_after=0,
        expired=0,
        hidden_transcripts=0,
        connector_version="0.1.0",
        _dlt_load_id=load_id,
        _dlt_id=f"{run_id}-{part}-{project}",
    )
    row.update(values)
    return row


def awkward_runs(late: datetime) -> list[dict[str, Any]]:
    """A run over midnight UTC in two parts, a failed part beside another project's, and the row
    of a load that never completed (killed), which no model may count; a resync of an old range,
    whose cursor lags far behind, beside them."""
    midnight = late + timedelta(minutes=40)
    later = late + timedelta(hours=2)
    counts = {"conversations": 0, "conversations_new": 0, "turns": 0}
    return [
        _row("r1", 1, "proj", "1.1", late, outcome="partial", cursor_after=late - timedelta(hours=2),
             conversations=10, conversations_new=10, turns=50),
        _row("r1", 2, "proj", "1.2", midnight, outcome="ok", cursor_after=midnight - timedelta(seconds=60),
             conversations=4, conversations_new=3, turns=20),
        _row("r2", 1, "proj", "1.3", later, outcome="failed", **counts,
             cursor_before=midnight - timedelta(seconds=60), cursor_after=midnight - timedelta(seconds=60),
             status=403, error_code="FORBIDDEN", error_message="PolyAI API answered 403 FORBIDDEN"),
        _row("r2", 1, "proj-b", "1.3", later, outcome="ok", cursor_after=later - timedelta(seconds=30),
             conversations=5, conversations_new=5, turns=25),
        _row("s1", 1, "proj", "1.5", later + timedelta(minutes=5), kind="resync", outcome="ok",
             cursor_before=late - timedelta(hours=9), cursor_after=late - timedelta(hours=9),
             conversations=7, conversations_new=1, turns=30),
        _row("r3", 1, "proj", "1.4", later + timedelta(minutes=1), outcome="ok", cursor_after=later,
             conversations=99, conversations_new=99, turns=99),
    ]  # fmt: skip


def insert_awkward_runs(connection: duckdb.DuckDBPyConnection, late: datetime) -> None:
    connection.execute(RUNS_DDL)
    connection.execute(LOADS_DDL)
    rows = awkward_runs(late)
    names = list(rows[0])
    connection.executemany(
        f"insert into polyai._polyai_runs ({', '.join(names)}) values ({', '.join('?' for _ in names)})",
        [[row[name] for name in names] for row in rows],
    )
    # Load 1.4 was killed before dlt recorded it.
    completed = {row["_dlt_load_id"]: row["ran_at"] for row in rows if row["_dlt_load_id"] != "1.4"}
    connection.executemany(
        "insert into polyai._dlt_loads values (?, 'polyai', 0, ?, 'hash')",
        [[load_id, ran_at + timedelta(seconds=PART_SECONDS)] for load_id, ran_at in completed.items()],
    )


def expected_awkward_load_health(late: datetime) -> list[tuple[Any, ...]]:
    """(run_date, project_id, *MEASURES) of the awkward rows, by hand."""
    first_day: date = late.date()
    next_day = first_day + timedelta(days=1)
    # proj's second day: r1's second part (lag 60 s) and r2's failed part, 80 min after r1's cursor.
    # The resync adds a part and its rows, and neither a run nor its lag.
    return [
        (first_day, "proj", 1, 1, 0, 0, 10, 10, 50, 7200, 0),
        (next_day, "proj", 2, 3, 1, 1, 11, 4, 50, 80 * 60 + 60, 1),
        (next_day, "proj-b", 1, 1, 0, 0, 5, 5, 25, 30, 0),
    ]


def expected_load_health(database: Path) -> dict[tuple[date, str], dict[str, Any]]:
    """fct_load_health of a real load, from its committed rows of the run history."""
    days: dict[tuple[date, str], dict[str, Any]] = {}
    for row in committed_runs(database):
        key = (row["ran_at"].astimezone(UTC).date(), row["project_id"])
        day = days.setdefault(key, {"runs": set(), "failed": set(), "load_parts": 0, "failed_parts": 0,
                                    "conversations_loaded": 0, "conversations_new": 0, "turns_loaded": 0,
                                    "max_lag_seconds": None, "resyncs": set()})  # fmt: skip
        failed, run = row["outcome"] == "failed", row["kind"] == "run"
        (day["runs"] if run else day["resyncs"]).add(row["run_id"])
        if failed and run:
            day["failed"].add(row["run_id"])
        day["load_parts"] += 1
        day["failed_parts"] += failed
        day["conversations_loaded"] += row["conversations"]
        day["conversations_new"] += row["conversations_new"]
        day["turns_loaded"] += row["turns"]
        if run and row["cursor_after"] is not None:
            lag = (row["ran_at"] - row["cursor_after"]).total_seconds()
            day["max_lag_seconds"] = max(lag, day["max_lag_seconds"] or lag)
    for day in days.values():
        day["failed_runs"] = len(day.pop("failed"))
        day["runs"], day["resyncs"] = len(day["runs"]), len(day["resyncs"])
    return days
