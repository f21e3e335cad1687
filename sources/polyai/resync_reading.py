"""A resync inside the source: each project reads its range in windows, and keeps its progress.

`polyai_source(resync=ResyncRange(...))` reads with `ResyncReading` instead of a run's plan:
no main window from the cursor, no re-pulls; pages are kept exactly as in a run (PageTally:
each conversation once, privacy options, pending set), so what a resync loads is what a run
would load. Each part's progress is written into the project's state, committed with the part.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import dlt

from . import run_report
from .http.concurrent_windows import FetchLimit, WindowQueue
from .loading import current_run_progress, load_until_caught_up
from .planning import RunPlan, slices_per_worker
from .project_runs import ProjectRun, ProjectsReading
from .projects import ProjectSettings
from .resync import ResyncProgress, ResyncRange, ResyncRangeError, read_after, resume, resync_windows
from .run_history import failure_columns
from .runs import failure_report
from .shaping.records import parse_timestamp
from .state import SourceState
from .warehouse_reads import ids_in_range, matched_and_missing, warehouse
from .written_once import EarlierSightings

logger = logging.getLogger(__name__)
T = TypeVar("T")


def resync_projects(
    projects: Sequence[ProjectSettings], resync: ResyncRange, now: datetime
) -> list[ProjectSettings]:
    """The configured projects the resync reads; a project it names that is not configured is refused."""
    resync.check(now)
    keys = {project.state_key for project in projects}
    unknown = [key for key in resync.projects or () if key not in keys]
    if unknown:
        configured = ", ".join(sorted(keys))
        raise ResyncRangeError(
            f"no configured project is {', '.join(map(repr, unknown))} (configured: {configured}): "
            "a resync reads projects of the settings, by project_id, label or state key"
        )
    return [project for project in projects if resync.selects(project.state_key)]


def progress_of(state: SourceState) -> ResyncProgress | None:
    return ResyncProgress.read(state.resync)


@dataclass
class ResyncReading(ProjectsReading):
    """The extraction of one part of a resync, over its projects."""

    resync: ResyncRange = field(kw_only=True)
    # state key -> the progress this part started from.
    started_from: dict[str, ResyncProgress] = field(default_factory=dict, kw_only=True)

    def plan(
        self, state: SourceState, project: ProjectSettings, now: datetime, limit: FetchLimit
    ) -> tuple[RunPlan, WindowQueue]:
        stored = progress_of(state)
        progress = resume(stored, self.resync)
        self.started_from[project.state_key] = progress
        if stored is not None and stored.token != self.resync.token:
            if progress.replaced:
                logger.warning("an unfinished resync %s is replaced by this one", progress.replaced)
            elif progress.continued_from:
                logger.info("going on with the unfinished resync from %s", progress.continued_from)
        windows = []
        if not progress.done:
            connector = project.connector
            read_to = parse_timestamp(progress.read_to)
            assert read_to is not None
            windows = resync_windows(
                read_to,
                self.resync.end_at(now),
                connector.concurrency,
                connector.window_span,
                slices_per_worker(connector.limit),
            )
        plan = RunPlan(main_windows=windows, repull_windows=[])
        # One window whatever the limit: each part moves on.
        return plan, WindowQueue(windows, always=1, limit=limit)

    def close(self, run: ProjectRun) -> None:
        progress = self.started_from[run.project.state_key]
        if progress.done:
            return
        read_to, done = read_after(
            run.plan.main_windows, run.fetch.windows.handed_out, self.resync.end_at(run.now)
        )
        tally, client = run.tally, run.client
        part_start = parse_timestamp(progress.read_to)
        assert part_start is not None
        with warehouse(dlt.current.pipeline()) as reader:
            loaded = ids_in_range(reader, run.project.connector.project_id, part_start, read_to)
            matched, not_served = matched_and_missing(loaded, tally.kept)
        run_report.warn_hidden_transcripts(tally.hidden_transcripts)
        run_report.warn_of_filter_disagreement(tally.outside, tally.settings)
        run_report.warn_replaced_text(client.text_repair.summary())
        counts = {
            "conversations": len(tally.kept),
            "turns": tally.turns,
            "new": len(tally.kept) - matched,
            "not_served": not_served,
            "requests": client.requests_made,
            "hidden_transcripts": tally.hidden_transcripts,
        }
        run.state.save_pending()
        run.state.resync = progress.after_part(read_to, done, counts).stored()

    def sightings(self, loaded: Sequence[ProjectRun]) -> EarlierSightings | None:
        # Each part reads a range of its own and counts what it did not serve: all is staged.
        return None

    def record_failure(self, run: ProjectRun) -> None:
        # A resync's failure is its own: the project's last run stays as the schedule left it.
        progress = self.started_from[run.project.state_key]
        run.state.resync = replace(progress, failure=failure_report(run.failure or Exception())).stored()

    def history_columns(self, run: ProjectRun) -> dict[str, Any]:
        """A resync part's row of `_polyai_runs`: the range it read, its own outcome and figures."""
        before = self.started_from[run.project.state_key]
        after = progress_of(run.state) or before
        columns: dict[str, Any] = {"kind": "resync", "window_from": parse_timestamp(before.read_to)}
        if run.failure is not None:
            return columns | failure_columns(after.failure)
        return columns | {
            "outcome": "ok" if after.done else "partial",
            "window_to": parse_timestamp(after.read_to),
            # New to the warehouse's rows of the range: the table grew by as many.
            "conversations_new": after.new - before.new,
        }

    def where_loaded_stand(self, loaded: Sequence[ProjectRun]) -> tuple[bool, tuple[str | None, ...]]:
        progresses = [progress_of(run.state) for run in loaded]
        done = all(progress is not None and progress.done for progress in progresses)
        return done, tuple(progress.read_to if progress else None for progress in progresses)

    def warn_if_behind(self, loaded: Sequence[ProjectRun]) -> None:
        behind = [p for run in loaded if (p := progress_of(run.state)) is not None and not p.done]
        if not behind or current_run_progress() is not None:
            return
        logger.warning(
            "this load read the resync %s in part only (max_conversations_per_load): run it again "
            "with the same range until it is done, or load it with "
            "sources.polyai.load_resync(pipeline, resync), which loads part after part",
            behind[0].describe(),
        )


def load_resync(
    pipeline: dlt.Pipeline,
    resync: ResyncRange,
    load: Callable[[Any], T] | None = None,
    **source_options: Any,
) -> list[Any]:
    """Reads `resync`'s range again, part after part, each committed (load_until_caught_up).

    Each call is a resync of its own: it goes on with one of the same range left unfinished
    (killed, failed), and reads the range again when the last one ended. `source_options` go
    to `polyai_source` (its settings, `clock`); `load` runs one part.
    """
    from . import polyai_source

    make_source = functools.partial(polyai_source, resync=resync.again(), **source_options)
    return load_until_caught_up(pipeline, make_source, load)
