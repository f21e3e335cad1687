"""The run history: `_polyai_runs`, one row per load part and project, loaded with its data.

The pages resource ends every extraction with a RunEnd item, made once the projects' states
have moved (ProjectsReading.finish): the `conversations` and `turns` transformers pass it by
and the `_polyai_runs` transformer returns its rows. dlt hands every item of a resource to
each of its transformers (a fork step in the resource's pipe) and ends the extraction only
once every item has gone through them; everything one extraction yields, and the source state,
go into one load package. So a row is committed exactly as its data and its cursor are: a load
counts once dlt has recorded it in `_dlt_loads` with status 0, which is how dlt reads its own
state too. A load that a killed run left half done is aborted and read again by the next run
(operations.abort_started_loads), which deletes that load's rows here (forget_rows_of_loads);
dbt's staging model keeps only the rows of complete loads in any case. When every project
fails, the extraction raises and nothing is loaded: no row either.

The normalize and load seconds of a load cannot be in its own rows (those steps run after the
rows are written): `extract_started_at` with `_dlt_loads.inserted_at` gives the whole part's
time (dbt's staging model: `part_seconds`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import dlt
from dlt.common.schema.typing import TTableSchemaColumns

from .planning import RunPlan, Window
from .settings import RUN_COLUMN_TYPES, RUN_KEY, RUNS_TABLE
from .shaping.records import dlt_column_hints, parse_timestamp
from .state import SourceState

if TYPE_CHECKING:
    from .loading import RunProgress
    from .project_runs import ProjectRun

logger = logging.getLogger(__name__)

DISTRIBUTION: Final = "polyai-dlt-connector"


@dataclass(frozen=True)
class RunEnd:
    """The last item of an extraction's pages: the rows of `_polyai_runs` for its part."""

    rows: list[dict[str, Any]]


@dataclass
class ProjectHistory:
    """What one project's part reads beyond its LastRun, counted page by page (`took`)."""

    cursor_before: datetime | None
    # The pending set once the expired were dropped, and its size as stored before the part.
    pending_before: frozenset[str]
    stored_pending: int
    repull_windows: frozenset[Window]
    started_at: datetime
    started: float
    repulled: int = 0
    # `started_at` of the conversations read at or past cursor_before: the new ones are those
    # the cursor moves past (new_before).
    ahead: list[datetime] = field(default_factory=list)

    @classmethod
    def begin(cls, state: SourceState, plan: RunPlan) -> ProjectHistory:
        """After start_run: the state as the part found it (start_run dropped only the expired)."""
        pending = frozenset(state.pending)
        return cls(
            cursor_before=parse_timestamp(state.cursor) if state.cursor else None,
            pending_before=pending,
            stored_pending=len(pending) + len(plan.expired),
            repull_windows=frozenset(plan.repull_windows),
            started_at=datetime.now(UTC),
            started=time.monotonic(),
        )

    def took(self, window: Window, conversations: Sequence[Any]) -> None:
        """Counts the conversations a page added to the part (PageTally.take's result)."""
        if not conversations:
            return
        if window in self.repull_windows:
            self.repulled += len(conversations)
        floor = self.cursor_before
        for conversation in conversations:
            started = datetime.fromisoformat(conversation["started_at"])
            if floor is None or started >= floor:
                self.ahead.append(started)

    def new_before(self, cursor: datetime | None) -> int:
        """Conversations read in [cursor_before, cursor): each is new in one part only."""
        if cursor is None:
            return 0
        return sum(1 for started in self.ahead if started < cursor)


@functools.cache
def connector_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        # The source folder copied into a project without installing it.
        return "unknown"


def part_rows(
    runs: Sequence[ProjectRun],
    progress: RunProgress | None,
    columns_of: Callable[[ProjectRun], dict[str, Any]],
) -> RunEnd:
    """The part's rows, one per project it read, once ProjectsReading.finish has run.

    `columns_of` gives what the kind of reading sets itself (ProjectsReading.history_columns).
    """
    # A plain `pipeline.run` is a run of one part.
    run_id = progress.run_id if progress is not None else new_run_id()
    part = progress.part if progress is not None and progress.part else 1
    finished = time.monotonic()
    return RunEnd([project_row(run, run_id, part, finished) | columns_of(run) for run in runs])


def new_run_id() -> str:
    return uuid.uuid4().hex


def project_row(run: ProjectRun, run_id: str, part: int, finished: float) -> dict[str, Any]:
    project, history = run.project, run.history
    connector = project.connector
    row: dict[str, Any] = {
        "run_id": run_id,
        "part": part,
        "state_key": project.state_key,
        "label": project.label,
        "project_id": connector.project_id,
        "account_id": connector.account_id,
        # projects.state_key: "<region>/<project_id>/<client_env>".
        "region": project.state_key.split("/", 1)[0],
        "client_env": connector.client_env,
        "ran_at": run.now,
        "extract_started_at": history.started_at,
        "extract_seconds": round(finished - history.started, 3),
        "cursor_before": history.cursor_before,
        "conversations": len(run.tally.kept),
        "turns": run.tally.turns,
        "repulled": history.repulled,
        "hidden_transcripts": run.tally.hidden_transcripts,
        # The part's own client: a resync leaves last_run as the schedule's run left it.
        "requests": run.client.requests_made,
        "retries": run.client.transport.retry_budget.used,
        "rate_limited": run.client.transport.pacer.rate_limited,
        "connector_version": connector_version(),
    }
    row |= failed_columns(run) if run.failure is not None else loaded_columns(run)
    # Every column in every row, in the table's order: the failure's are NULL on the others.
    return {name: row.get(name) for name in RUN_COLUMN_TYPES}


def failure_columns(failure: Mapping[str, Any] | None) -> dict[str, Any]:
    failure = failure or {}
    return {
        "status": failure.get("status"),
        "error_code": failure.get("error_code"),
        "correlation_id": failure.get("correlation_id"),
        "error_message": failure.get("message"),
    }


def loaded_columns(run: ProjectRun) -> dict[str, Any]:
    """A project whose state moved: where its cursor went and what its pending set did."""
    plan, history = run.plan, run.history
    main_read = run.fetch.windows.handed_out - len(plan.repull_windows)
    cursor = parse_timestamp(run.state.cursor) if run.state.cursor else None
    return {
        "outcome": "ok" if run.state.last_run.caught_up else "partial",
        "window_from": plan.main_windows[0].start if plan.main_windows else None,
        "window_to": plan.main_windows[main_read - 1].end if plan.main_windows and main_read > 0 else None,
        "cursor_after": cursor,
        "conversations_new": history.new_before(cursor),
        "finished_since_last": len((history.pending_before & run.tally.kept).difference(run.state.pending)),
        "pending_after": len(run.state.pending),
        "expired": len(plan.expired),
    }


def failed_columns(run: ProjectRun) -> dict[str, Any]:
    """A failed project: its state stays, so the next part reads its conversations as new again."""
    return {
        "outcome": "failed",
        "cursor_after": run.history.cursor_before,
        "conversations_new": 0,
        "finished_since_last": 0,
        "pending_after": run.history.stored_pending,
        "expired": 0,
    } | failure_columns(run.state.last_run.failure)


def run_column_hints() -> TTableSchemaColumns:
    hints = dlt_column_hints(RUN_COLUMN_TYPES)
    for name in RUN_KEY:
        hints[name] = {**hints[name], "nullable": False}
    return hints


@dlt.transformer(
    name=RUNS_TABLE,
    primary_key=RUN_KEY,
    # Merged on its key with dlt's own deduplication: a job copied twice cannot double a row.
    write_disposition="merge",
    columns=run_column_hints(),
)
def polyai_runs(item: Any) -> Any:
    """The rows of the part's RunEnd; every page of conversations passes by."""
    return item.rows if isinstance(item, RunEnd) else None


def forget_rows_of_loads(pipeline: dlt.Pipeline, load_ids: Iterable[str]) -> None:
    """Deletes the rows of loads that were aborted: their part is read again, with rows of its own."""
    load_ids = list(load_ids)
    if not load_ids:
        return
    try:
        schema = pipeline.default_schema
        if RUNS_TABLE not in schema.tables:
            return
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(RUNS_TABLE)
            column = client.escape_column_name(schema.naming.normalize_identifier("_dlt_load_id"))
            placeholders = ", ".join(["%s"] * len(load_ids))
            client.execute_sql(f"DELETE FROM {table} WHERE {column} IN ({placeholders})", *load_ids)
    except Exception as error:
        # Those rows are not counted anyway: their loads are not in _dlt_loads.
        logger.info("could not delete the rows of aborted loads from %s: %s", RUNS_TABLE, error)
