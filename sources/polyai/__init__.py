"""PolyAI Conversations API source: conversations and their turns, incremental on `started_at`.

Tables:
- `conversations`: one row per conversation `id`, merged.
- `turns`: one row per (`conversation_id`, `turn_index`), merged; a conversation that is
  loaded again replaces all of its turns.
- `_polyai_runs`: one row per load part and project, the run history (run_history.py).

One resource reads the pages (it is the only one that talks to the API and the only one that
changes the state); two transformers shape each page into the two tables, and a third turns
the resource's last item, once the state has moved, into the run history's rows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import dlt
from dlt.common.schema.typing import TDeleteInsertStrategyDict
from dlt.extract.resource import DltResource

from . import allocators
from .config import ConfigurationError, PolyAISourceConfiguration, with_setting_parameters
from .destinations import DestinationFit, layout_hints
from .dlt_notices import json_hint_notice_dropped
from .http.client import InvalidResponseError, PolyAIAPIError
from .http.concurrent_windows import ProjectFailed, RunQueue, iter_projects_concurrently
from .loading import (
    ProjectsFailed,
    current_run_progress,
    iter_load_parts,
    load_until_caught_up,
    prepare_active_pipeline,
)
from .operations import refuse_appending_destination
from .project_runs import Clock, ProjectsReading
from .resync import ResyncRange
from .resync_reading import ResyncReading, load_resync, resync_projects
from .run_history import RunEnd, part_rows, polyai_runs
from .settings import CONVERSATION_COLUMN_TYPES, TURN_COLUMN_TYPES
from .shaping.records import (
    arrow_column_hints,
    conversations_table,
    transformer_disposition,
    turns_table,
    without_merge_key,
)
from .shaping.table_output import TableOutput
from .upgrade import legacy_owner

__all__ = [
    "ConfigurationError",
    "InvalidResponseError",
    "PolyAIAPIError",
    "ProjectsFailed",
    "ResyncRange",
    "iter_load_parts",
    "load_resync",
    "load_until_caught_up",
    "polyai_source",
]

# A conversation is its project's: ids are not documented to be unique across projects.
CONVERSATION_KEY: Final = ("project_id", "id")
TURN_KEY: Final = ("project_id", "conversation_id", "turn_index")
# The source sends each conversation, and so each turn, once per load (first_sightings), so the
# merges skip dlt's ROW_NUMBER() pass over the staged rows, which ran out of DuckDB's
# memory_limit on large loads (docs/performance.md). A row can still be staged twice when a
# load is resumed after a kill (dlt's load jobs are at-least-once): such a load is aborted and
# its range read again instead (operations.abort_started_loads, from load_until_caught_up, and
# from the source itself before a plain `pipeline.run`: loading.prepare_active_pipeline).
# A conversation loaded again replaces its row and all of its turns: each delete is scoped by
# the staged conversations (dlt's key-based delete would match `primary key OR merge key`,
# which DuckDB cannot run as a hash join) and bounded in time, so that it reads the recent
# rows only (planning.replace_bound). The bound and the scope depend on the staged rows, the destination
# and the pipeline's history: the last item of each table carries them (TableOutput.close).
CONVERSATIONS_MERGE: Final[TDeleteInsertStrategyDict] = DestinationFit.of(None).conversations_merge(None)
TURNS_MERGE: Final[TDeleteInsertStrategyDict] = DestinationFit.of(None).turns_merge(None)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dlt.source(name="polyai", section="polyai", max_table_nesting=0, spec=PolyAISourceConfiguration)
@with_setting_parameters(PolyAISourceConfiguration)
def polyai_source(
    *,
    settings: PolyAISourceConfiguration = dlt.config.value,
    clock: Clock | None = None,
    resync: ResyncRange | None = None,
    **_by_name: Any,
) -> Sequence[DltResource]:
    """The PolyAI source. Settings come from dlt config/secrets, section `sources.polyai`.

    Each setting is a keyword argument too (`polyai_source(limit=50)`); they are declared, with
    their defaults, in `config.PolyAISourceConfiguration` alone, and dlt hands the source that
    spec resolved and checked as `settings` (the same values arrive in `_by_name`, unused).
    `clock` returns "now" for the run (tests and the simulator move it); it defaults to UTC now.
    The projects of the `projects` setting (or the one of the top-level settings) load into
    the same tables, each with its own state; one that fails does not stop the others.
    A backfill longer than `max_conversations_per_load` reads only its first part per load:
    `load_until_caught_up(pipeline)` loads part after part; a plain `pipeline.run` warns.
    `resync` reads that `started_at` range again instead of a run (its projects only, in
    parts, the cursor left where it is): `load_resync(pipeline, resync)` loads it.
    """
    clock = clock or utc_now
    now = clock()
    projects = settings.project_settings(now=now)
    if resync is not None:
        projects = resync_projects(projects, resync, now)
    privacy = settings.privacy_rules()
    prepare_active_pipeline()
    conversation_output = TableOutput("conversations", CONVERSATION_COLUMN_TYPES, "started_at")
    turn_output = TableOutput("turns", TURN_COLUMN_TYPES, "conversation_started_at")
    reading_type = ProjectsReading if resync is None else functools.partial(ResyncReading, resync=resync)
    reading = reading_type(
        projects, legacy_owner(settings, projects), privacy, clock, (conversation_output, turn_output)
    )
    pages = conversation_pages(reading)
    return (
        laid_out(pages | conversations(output=conversation_output), "started_at", CONVERSATION_KEY),
        laid_out(pages | turns(output=turn_output), "conversation_started_at", TURN_KEY[:2]),
        pages | polyai_runs(),
    )


def laid_out(resource: DltResource, time_column: str, key: Sequence[str]) -> DltResource:
    """`resource` with the partitioning and clustering that bound its merges (layout_hints)."""
    column, table_hints = layout_hints(time_column, key)
    resource.apply_hints(columns={time_column: column}, additional_table_hints=table_hints)
    return resource


def conversation_pages(reading: ProjectsReading) -> DltResource:
    """Pages of conversations, normalized to v3, for the run's windows; keeps cursor and pending set."""

    @dlt.resource(name="conversation_pages", selected=False)
    def read_pages() -> Iterator[list[dict[str, Any]] | RunEnd]:
        """Each conversation once per run, page by page; the state moves once every page is read,
        and the part's rows of the run history (RunEnd) come last."""
        refuse_appending_destination(dlt.current.pipeline())
        runs = reading.start(dlt.current.source_state())
        queue = RunQueue([run.fetch for run in runs])
        for item in iter_projects_concurrently(queue, reading.concurrency):
            run = runs[item.project]
            if isinstance(item, ProjectFailed):
                run.failure = item.error
                if all(run.failure for run in runs):
                    reading.give_up(runs)
                continue
            conversations = run.take(item) if run.failure is None else []
            if conversations:
                yield conversations
        allocators.extraction_done()
        reading.finish(runs)
        yield part_rows(runs, current_run_progress(), reading.history_columns)

    return read_pages


@dlt.transformer(
    name="conversations",
    primary_key=CONVERSATION_KEY,
    write_disposition=transformer_disposition(CONVERSATIONS_MERGE),
    columns=arrow_column_hints(CONVERSATION_COLUMN_TYPES, keys=CONVERSATION_KEY),
)
def conversations(page: list[dict[str, Any]] | RunEnd, output: TableOutput) -> Iterator[Any]:
    """One row per conversation, the latest version replacing the earlier ones."""
    with json_hint_notice_dropped():
        if isinstance(page, RunEnd):
            yield from output.close()
        else:
            yield from output.hand_over(*conversations_table(page, output.current()))


@dlt.transformer(
    name="turns",
    primary_key=TURN_KEY,
    write_disposition=transformer_disposition(TURNS_MERGE),
    # The destination scope replaces the merge key that earlier versions stored.
    columns=without_merge_key(arrow_column_hints(TURN_COLUMN_TYPES, keys=TURN_KEY), "conversation_id"),
)
def turns(page: list[dict[str, Any]] | RunEnd, output: TableOutput) -> Iterator[Any]:
    """One row per turn; a conversation loaded again replaces all of its earlier turns."""
    with json_hint_notice_dropped():
        if isinstance(page, RunEnd):
            yield from output.close()
        else:
            yield from output.hand_over(*turns_table(page, output.current()))
