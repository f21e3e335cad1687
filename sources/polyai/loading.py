"""Loading a backfill that takes several parts, each committed with its cursor before the next."""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import dlt
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext
from dlt.extract.source import DltSource

from .operations import (
    PipelineBusy,
    abort_started_loads,
    drop_extracts_already_normalized,
    pipeline_lock,
    prune_state_history,
    prune_working_folder,
    refuse_appending_destination,
)
from .state import SourceState

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Set while load_until_caught_up runs its parts: a part that stops short is expected there.
_LOADING_IN_PARTS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "polyai_loading_in_parts", default=False
)


def load_until_caught_up(
    pipeline: dlt.Pipeline,
    make_source: Callable[[], DltSource] | None = None,
    load: Callable[[DltSource], T] | None = None,
) -> list[T] | list[Any]:
    """Loads fresh sources until the cursor has caught up with now; returns each part's result.

    A backfill longer than `max_conversations_per_load` takes several parts. Each is committed
    with its cursor before the next starts, so a failure loses at most one part's work and the
    next run goes on from there. `make_source` builds the source of each part (a dlt source is
    read once; default `polyai_source` with its settings from dlt's config), `load` runs it
    (default `pipeline.run`; an orchestrator passes its own). The pipeline's lock is held
    throughout (one run at a time), a load that a killed run left half done is read again
    (`abort_started_loads`), and the working folder is pruned of what dlt will not read again.
    """
    if make_source is None:
        from . import polyai_source

        make_source = polyai_source
    run: Callable[[DltSource], Any] = load if load is not None else pipeline.run
    return list(iter_load_parts(pipeline, make_source, run))


def iter_load_parts(
    pipeline: dlt.Pipeline, make_source: Callable[[], DltSource], load: Callable[[DltSource], T]
) -> Iterator[T]:
    """load_until_caught_up, one part at a time, for callers that report each part."""
    refuse_appending_destination(pipeline)
    token = _LOADING_IN_PARTS.set(True)
    try:
        with pipeline_lock(pipeline):
            yield from _load_parts_locked(pipeline, make_source, load)
    finally:
        _LOADING_IN_PARTS.reset(token)


def _load_parts_locked(
    pipeline: dlt.Pipeline, make_source: Callable[[], DltSource], load: Callable[[DltSource], T]
) -> Iterator[T]:
    drop_extracts_already_normalized(pipeline)
    abort_started_loads(pipeline)
    previous_cursor: str | None = None
    while True:
        yield load(make_source())
        # After the caller has read this part's packages (a summary counts their files).
        prune_working_folder(pipeline)
        state = SourceState.of_pipeline(pipeline.state)
        if state.last_run.caught_up:
            # Once per run: the parts of a backfill add only a few rows before it.
            prune_state_history(pipeline)
            return
        if previous_cursor is not None and state.cursor == previous_cursor:
            raise RuntimeError(f"a backfill part did not move the cursor ({previous_cursor})")
        previous_cursor = state.cursor
        logger.info("backfill loaded up to %s; loading the next part", previous_cursor)


def warn_if_not_caught_up(state: SourceState, max_conversations_per_load: int | None) -> None:
    """Says so loudly when a plain `pipeline.run` loaded only the first part of a backfill."""
    if state.last_run.caught_up or _LOADING_IN_PARTS.get():
        return
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
