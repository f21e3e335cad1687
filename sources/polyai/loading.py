"""Loading a backfill that takes several parts, each committed with its cursor before the next."""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dlt
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext
from dlt.extract.source import DltSource

from .live import LiveCounters
from .operations import (
    PipelineBusy,
    abort_started_loads,
    drop_extracts_already_normalized,
    pipeline_lock,
    prune_state_history,
    prune_working_folder,
    refuse_appending_destination,
)
from .run_history import new_run_id
from .state import LAST_RUN, PROJECTS, SourceState
from .written_once import EarlierSightings

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class RunProgress:
    """What each part of a run in parts reports to the loop (load_until_caught_up)."""

    # state key -> the failure report (runs.failure_report) of projects that failed in this run:
    # the later parts leave them out.
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    # Of the last part, over the projects it loaded.
    caught_up: bool = True
    cursors: tuple[str | None, ...] = ()
    # state key -> the stored last run of each project, when all of them failed and the part
    # raised: nothing was loaded, so the failure is kept in the working folder's state alone.
    gave_up: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The run's figures while it goes, over all its parts (live.py), for a progress display.
    live: LiveCounters = field(default_factory=LiveCounters)
    # The run history's (`_polyai_runs`) run id, shared by the parts, and the part being loaded.
    run_id: str = field(default_factory=new_run_id)
    part: int = 0
    # What the last part kept, for the next one not to stage again (written_once).
    sightings: EarlierSightings | None = None


# Set while load_until_caught_up runs its parts: a part that stops short is expected there.
_RUN_PROGRESS: contextvars.ContextVar[RunProgress | None] = contextvars.ContextVar(
    "polyai_run_progress", default=None
)


def current_run_progress() -> RunProgress | None:
    return _RUN_PROGRESS.get()


class ProjectsFailed(Exception):
    """Some projects failed in a run whose other projects were loaded and committed.

    `failures`: label -> failure report (status, error_code, correlation_id, message, refused);
    `results`: each part's result, as load_until_caught_up returns them.
    """

    def __init__(self, failures: dict[str, dict[str, Any]], results: list[Any]) -> None:
        self.failures = failures
        self.results = results
        lines = "; ".join(f"{label}: {report['message']}" for label, report in failures.items())
        super().__init__(f"{len(failures)} project(s) not loaded in this run: {lines}")

    @property
    def refused(self) -> bool:
        """Whether a person must act (a key or project refused), rather than run again."""
        return any(report.get("refused") for report in self.failures.values())


def load_until_caught_up(
    pipeline: dlt.Pipeline,
    make_source: Callable[[], DltSource] | None = None,
    load: Callable[[DltSource], T] | None = None,
) -> list[T] | list[Any]:
    """Loads fresh sources until the cursor has caught up with now; returns each part's result.

    A backfill longer than `max_conversations_per_load` takes several parts. Each is committed
    with its cursor before the next starts, so a failure loses at most one part's work and the
    next run goes on from there. A project that fails is left out of the later parts; once the
    others are loaded, ProjectsFailed says which and why. `make_source` builds the source of
    each part (a dlt source is read once; default `polyai_source` with its settings from dlt's
    config), `load` runs it (default `pipeline.run`; an orchestrator passes its own). The
    pipeline's lock is held throughout (one run at a time), a load that a killed run left half
    done is read again (`abort_started_loads`), and the working folder is pruned of what dlt
    will not read again.
    """
    if make_source is None:
        from . import polyai_source

        make_source = polyai_source
    run: Callable[[DltSource], Any] = load if load is not None else pipeline.run
    results: list[Any] = []
    try:
        for result in iter_load_parts(pipeline, make_source, run):
            results.append(result)
    except ProjectsFailed as failed:
        failed.results = results
        raise
    return results


def iter_load_parts(
    pipeline: dlt.Pipeline,
    make_source: Callable[[], DltSource],
    load: Callable[[DltSource], T],
    live: LiveCounters | None = None,
) -> Iterator[T]:
    """load_until_caught_up, one part at a time, for callers that report each part.

    `live`: counters the source keeps up to date while it runs (a caller's progress display).

    Raises ProjectsFailed after the last part if a project failed (the others are committed).
    """
    refuse_appending_destination(pipeline)
    progress = RunProgress() if live is None else RunProgress(live=live)
    token = _RUN_PROGRESS.set(progress)
    try:
        with pipeline_lock(pipeline):
            yield from _load_parts_locked(pipeline, make_source, load, progress)
    finally:
        _RUN_PROGRESS.reset(token)
    if progress.failures:
        raise ProjectsFailed(
            {progress.labels.get(key, key): report for key, report in progress.failures.items()}, []
        )


def _load_parts_locked(
    pipeline: dlt.Pipeline,
    make_source: Callable[[], DltSource],
    load: Callable[[DltSource], T],
    progress: RunProgress,
) -> Iterator[T]:
    drop_extracts_already_normalized(pipeline)
    abort_started_loads(pipeline)
    previous_cursors: tuple[str | None, ...] | None = None
    while True:
        progress.part += 1
        try:
            result = load(make_source())
        except BaseException:
            if progress.gave_up:
                keep_failures_locally(pipeline, progress.gave_up)
            raise
        yield result
        # After the caller has read this part's packages (a summary counts their files).
        prune_working_folder(pipeline)
        if progress.caught_up:
            # Once per run: the parts of a backfill add only a few rows before it.
            prune_state_history(pipeline)
            return
        cursors = ", ".join(map(str, progress.cursors))
        if progress.cursors == previous_cursors:
            raise RuntimeError(f"a backfill part did not move the cursor ({cursors})")
        previous_cursors = progress.cursors
        logger.info("backfill loaded up to %s; loading the next part", cursors)


def keep_failures_locally(pipeline: dlt.Pipeline, last_runs: dict[str, dict[str, Any]]) -> None:
    """Records in the local state why each project's run failed, for `status` to say so.

    Only the last run's report changes (cursor and pending set stay), and nothing is loaded:
    the next load commits it with its own state, or a restore from the destination drops it.
    """
    try:
        with pipeline.managed_state() as state:
            projects = state.setdefault("sources", {}).setdefault("polyai", {}).setdefault(PROJECTS, {})
            for key, last_run in last_runs.items():
                projects.setdefault(key, {})[LAST_RUN] = last_run
    except Exception as error:  # the run's own error says what matters
        logger.warning("could not record the failed run in the pipeline's state: %s", error)


def warn_if_not_caught_up(states: Sequence[SourceState], max_conversations_per_load: int | None) -> None:
    """Says so loudly when a plain `pipeline.run` loaded only the first part of a backfill."""
    behind = [state for state in states if not state.last_run.caught_up]
    if not behind or _RUN_PROGRESS.get() is not None:
        return
    state = behind[0]
    logger.warning(
        "this load stopped at max_conversations_per_load (%s) with started_at read up to %s: the "
        "backfill is not complete. Run it again until it is, or load it with "
        "sources.polyai.load_until_caught_up(pipeline), which loads part after part until caught "
        "up (each part committed). Raising max_conversations_per_load makes parts larger.",
        max_conversations_per_load,
        state.cursor,
    )


def prepare_active_pipeline() -> None:
    """Reads again a load that a killed plain `pipeline.run` left half done.

    dlt's `run` resumes such a load before it extracts anything, and this source's merges are
    told that each row is staged once, which a resumed load can break. So the source, when it
    is created, aborts that load on the pipeline about to run it (the active one). A run that
    holds the pipeline's lock does this itself; its lock makes this one a no-op.
    """
    context = Container()[PipelineContext]
    if not context.is_active():
        return
    pipeline = context.pipeline()
    if not isinstance(pipeline, dlt.Pipeline):
        return
    with contextlib.suppress(PipelineBusy), pipeline_lock(pipeline):
        drop_extracts_already_normalized(pipeline)
        abort_started_loads(pipeline)
