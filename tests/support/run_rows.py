"""The run history (`_polyai_runs`) read back, and the identities its rows must keep with the tables.

Written from the columns' documented meaning and the simulator's truth (when each
conversation became visible), not from the connector's own counting.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from polyai_simulator import Simulator

COMMITTED = """
SELECT runs.* FROM polyai._polyai_runs AS runs
JOIN polyai._dlt_loads AS loads ON loads.load_id = runs._dlt_load_id AND loads.status = 0
ORDER BY runs._dlt_load_id, runs.state_key
"""


def query(database: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        relation = connection.sql(sql, params=list(params) or None)
        names = [column[0] for column in relation.description]
        return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


def committed_runs(database: Path) -> list[dict[str, Any]]:
    """The rows of complete loads, in load order (dlt's load ids grow with time)."""
    return query(database, COMMITTED)


def uncommitted_runs(database: Path) -> list[dict[str, Any]]:
    return query(
        database,
        "SELECT * FROM polyai._polyai_runs WHERE _dlt_load_id NOT IN "
        "(SELECT load_id FROM polyai._dlt_loads WHERE status = 0)",
    )


def late_arrivals(rows: Sequence[dict[str, Any]], simulator: Simulator, started: dict[str, datetime]) -> int:
    """Conversations loaded that were not new in any part: the API showed each only after the
    part whose cursor moved past its `started_at` (a later part's lookback loaded it).

    `rows`: one project's committed rows in load order; `started`: its loaded conversations.
    """
    spans = [
        (row["cursor_before"], row["cursor_after"], row["ran_at"])
        for row in rows
        if row["outcome"] != "failed"
    ]
    late = 0
    for conversation_id, started_at in started.items():
        moved_past = next(
            (
                ran_at
                for before, after, ran_at in spans
                if (before is None or before <= started_at) and started_at < after
            ),
            None,
        )
        visible_at = simulator.entry(conversation_id).visible_at
        late += moved_past is None or visible_at > moved_past
    return late


def check_runs_add_up(database: Path, simulators: dict[str, Simulator]) -> dict[str, int]:
    """Per project, over the committed rows: the rows of `conversations` are the new ones plus the
    late arrivals, and its newest row's pending set is its rows still in progress (nothing
    expired). Returns the late arrivals per project."""
    runs = committed_runs(database)
    keys = [(row["run_id"], row["part"], row["state_key"]) for row in runs]
    assert len(set(keys)) == len(keys), "two rows for one part of one project"
    late_by_project = {}
    for project, simulator in simulators.items():
        rows = [row for row in runs if row["project_id"] == project]
        loaded = query(
            database,
            "SELECT id, started_at, in_progress FROM polyai.conversations WHERE project_id = ?",
            project,
        )
        started = {row["id"]: row["started_at"] for row in loaded}
        late = late_arrivals(rows, simulator, started)
        new = sum(row["conversations_new"] for row in rows)
        assert len(loaded) == new + late, f"{project}: {len(loaded)} rows, {new} new + {late} late"
        ok = [row for row in rows if row["outcome"] != "failed"]
        in_progress = sum(row["in_progress"] for row in loaded)
        assert ok[-1]["pending_after"] == in_progress, f"{project}: pending {ok[-1]['pending_after']}"
        late_by_project[project] = late
    return late_by_project
