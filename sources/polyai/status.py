"""Where each project of a pipeline stands: its cursor and lag, pending set, last run, rows.

`pipeline_status` reads the state the way a run does (restored from the destination when the
working folder is gone) and counts the rows per project; `freshness` is the verdict alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity

from .operations import PipelineBusy, pipeline_lock
from .projects import ProjectSettings
from .state import SourceState, legacy_project_id

logger = logging.getLogger(__name__)

OK: Final = "ok"
LATE: Final = "late"
NEVER_RUN: Final = "never run"
DATA_TABLES: Final = ("conversations", "turns")


def freshness(cursor: str | None, now: datetime, late_after: timedelta) -> str:
    """`never run` before the first load, `late` once the cursor is further behind now than `late_after`."""
    if cursor is None:
        return NEVER_RUN
    return LATE if now - datetime.fromisoformat(cursor) > late_after else OK


def last_outcome(state: SourceState) -> str | None:
    """How the project's last run ended: ok, failed, partial (a backfill not caught up), or None."""
    last_run = state.last_run
    if last_run.failure:
        return "failed"
    if last_run.ran_at is None and state.cursor is None:
        return None
    return OK if last_run.caught_up else "partial"


def lag_seconds(cursor: str, now: datetime) -> float:
    return round((now - datetime.fromisoformat(cursor)).total_seconds(), 3)


@dataclass(frozen=True)
class ProjectStatus:
    label: str
    state_key: str
    project_id: str
    configured: bool
    verdict: str
    cursor: str | None
    lag_seconds: float | None
    pending: int
    oldest_pending: str | None
    last_run: dict[str, Any]
    rows: dict[str, int | None] = field(default_factory=dict)
    # The project's last resync as its state keeps it (resync.ResyncProgress), if any.
    resync: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def project_status(
    state_key: str,
    state: SourceState,
    project: ProjectSettings | None,
    rows: Mapping[str, Mapping[str, int]] | None,
    now: datetime,
    late_after: timedelta,
) -> ProjectStatus:
    """One project's status, from its state and the row counts by project id (None: not counted)."""
    project_id = project.connector.project_id if project is not None else state_key.split("/")[1]
    cursor = state.cursor
    last_run = state.last_run
    return ProjectStatus(
        label=project.label if project is not None else state.label or state_key,
        state_key=state_key,
        project_id=project_id,
        configured=project is not None,
        verdict=freshness(cursor, now, late_after),
        cursor=cursor,
        lag_seconds=None if cursor is None else lag_seconds(cursor, now),
        pending=len(state.pending),
        oldest_pending=min(state.pending.values(), key=datetime.fromisoformat) if state.pending else None,
        last_run={
            "ran_at": last_run.ran_at,
            "outcome": last_outcome(state),
            "conversations": last_run.conversations,
            "turns": last_run.turns,
            "requests": last_run.requests,
            "retries": last_run.retries,
            "rate_limited": last_run.rate_limited,
            "failure": dict(last_run.failure) if last_run.failure else None,
        },
        rows={
            table: None if rows is None else int(rows.get(table, {}).get(project_id, 0))
            for table in DATA_TABLES
        },
        resync=state.resync,
    )


@dataclass(frozen=True)
class PipelineStatus:
    pipeline_name: str
    dataset_name: str
    destination: str | None
    now: str
    # A run holds the pipeline's lock: the state is the working folder's, rows are not counted.
    run_going_on: bool
    projects: list[ProjectStatus]

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "projects": [project.as_json() for project in self.projects]}


def pipeline_status(
    pipeline: dlt.Pipeline, projects: Sequence[ProjectSettings], now: datetime, late_after: timedelta
) -> PipelineStatus:
    """Each configured project's status, then those the state has but the settings no longer name."""
    run_going_on = False
    try:
        with pipeline_lock(pipeline):
            pipeline.sync_destination()
            rows: dict[str, dict[str, int]] | None = count_rows(pipeline)
    except PipelineBusy:
        run_going_on, rows = True, None
    states = SourceState.projects_of_pipeline(pipeline.state)
    by_key = {project.state_key: project for project in projects}
    statuses = [
        project_status(key, states.get(key, SourceState({})), project, rows, now, late_after)
        for key, project in by_key.items()
    ]
    statuses += [
        project_status(key, state, None, rows, now, late_after)
        for key, state in states.items()
        if key not in by_key and key
    ]
    destination = pipeline.destination.destination_name if pipeline.destination is not None else None
    return PipelineStatus(
        pipeline.pipeline_name, pipeline.dataset_name, destination, now.isoformat(), run_going_on, statuses
    )


def count_rows(pipeline: dlt.Pipeline) -> dict[str, dict[str, int]]:
    """table -> project_id -> rows (turns an earlier version loaded without project_id: its project's)."""
    legacy = legacy_project_id(pipeline.state.get("sources", {}).get("polyai", {}))
    counts: dict[str, dict[str, int]] = {}
    if pipeline.default_schema_name is None:
        return counts
    with pipeline.sql_client() as client:
        for table in DATA_TABLES:
            if table not in pipeline.default_schema.tables:
                continue
            name = client.make_qualified_table_name(table)
            with contextlib.suppress(DestinationUndefinedEntity):
                result = client.execute_sql(f"SELECT project_id, COUNT(*) FROM {name} GROUP BY project_id")
                per_project = counts.setdefault(table, {})
                for project_id, count in result or []:
                    key = project_id if project_id is not None else legacy or ""
                    per_project[key] = per_project.get(key, 0) + int(count)
    return counts
