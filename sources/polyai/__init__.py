"""PolyAI Conversations API source: conversations and their turns, incremental on `started_at`.

Tables:
- `conversations`: one row per conversation `id`, merged.
- `turns`: one row per (`conversation_id`, `turn_index`), merged; a conversation that is
  loaded again replaces all of its turns.

One resource reads the pages (it is the only one that talks to the API and the only one that
changes the state); two transformers shape each page into the two tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import dlt
import msgspec
from dlt.extract.resource import DltResource

from . import allocators
from .client import InvalidResponseError, Page, PolyAIAPIError, PolyAIClient
from .concurrent_windows import WindowQueue, iter_windows_concurrently
from .config import ConfigurationError, ConnectorSettings, PolyAISourceConfiguration, with_setting_parameters
from .dlt_notices import json_hint_notice_dropped
from .loading import iter_load_parts, load_until_caught_up, prepare_active_pipeline, warn_if_not_caught_up
from .operations import refuse_appending_destination
from .privacy import PrivacyRules, apply_privacy
from .records import (
    arrow_column_hints,
    conversations_table,
    has_hidden_transcript,
    isoformat_utc,
    normalize_v1_conversation,
    parse_timestamp,
    turns_table,
)
from .repulls import WIDEST, newly_lost, next_misses
from .settings import CONVERSATION_COLUMN_TYPES, TURN_COLUMN_TYPES
from .state import LastRun, SourceState
from .table_output import TableOutput
from .typed_pages import page_decoder
from .windows import (
    RunPlan,
    clock_skew,
    cursor_after,
    cursor_within_api_clock,
    first_sightings,
    furthest_outside,
    plan_run,
    record_status,
)

__all__ = [
    "ConfigurationError",
    "InvalidResponseError",
    "PolyAIAPIError",
    "iter_load_parts",
    "load_until_caught_up",
    "polyai_source",
]

logger = logging.getLogger(__name__)
Clock = Callable[[], datetime]


CONVERSATION_KEY: Final = ("id",)
TURN_KEY: Final = ("conversation_id", "turn_index")
# The source sends each conversation, and so each turn, once per load (first_sightings), so the
# merges skip dlt's ROW_NUMBER() pass over the staged rows: with it, a load of 50k conversations
# ran out of DuckDB's 64MB. A row can still be staged twice when a load is resumed after a kill
# (dlt's load jobs are at-least-once): the runner aborts such a load and reads its range again
# instead (operations.abort_started_loads).
CONVERSATIONS_MERGE: Final[dict[str, Any]] = {
    "disposition": "merge",
    "strategy": "delete-insert",
    "deduplicated": True,
}
# A conversation loaded again replaces all of its turns: the delete is scoped by the staged
# conversation ids alone. dlt's key-based delete would match `primary key OR merge key`, which
# DuckDB cannot run as a hash join (it ran out of a 64MB memory_limit on large merges).
TURNS_MERGE: Final[dict[str, Any]] = {
    "disposition": "merge",
    "strategy": "delete-insert",
    "deduplicated": True,
    "destination_scope": "conversation_id IN (SELECT conversation_id FROM {staging_table})",
}
# An API that treats a bound as inclusive, or rounds it, is not a filter that disagrees.
FILTER_TOLERANCE: Final = timedelta(seconds=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dlt.source(name="polyai", section="polyai", max_table_nesting=0, spec=PolyAISourceConfiguration)
@with_setting_parameters(PolyAISourceConfiguration)
def polyai_source(
    *,
    settings: PolyAISourceConfiguration = dlt.config.value,
    clock: Clock | None = None,
    **_by_name: Any,
) -> Sequence[DltResource]:
    """The PolyAI source. Settings come from dlt config/secrets, section `sources.polyai`.

    Each setting is a keyword argument too (`polyai_source(limit=50)`); they are declared, with
    their defaults, in `config.PolyAISourceConfiguration` alone, and dlt hands the source that
    spec resolved and checked as `settings` (the same values arrive in `_by_name`, unused).
    `clock` returns "now" for the run (tests and the simulator move it); it defaults to UTC now.
    A backfill longer than `max_conversations_per_load` reads only its first part per load:
    `load_until_caught_up(pipeline)` loads part after part; a plain `pipeline.run` warns.
    """
    clock = clock or utc_now
    connector = settings.connector_settings(now=clock())
    privacy = settings.privacy_rules()
    prepare_active_pipeline()
    conversation_output = TableOutput("conversations", CONVERSATION_COLUMN_TYPES)
    turn_output = TableOutput("turns", TURN_COLUMN_TYPES)
    pages = conversation_pages(
        PolyAIClient(connector), connector, privacy, clock, (conversation_output, turn_output)
    )
    return (pages | conversations(output=conversation_output), pages | turns(output=turn_output))


def conversation_pages(
    client: PolyAIClient,
    settings: ConnectorSettings,
    privacy: PrivacyRules,
    clock: Clock,
    table_outputs: tuple[TableOutput, TableOutput],
) -> DltResource:
    """Pages of conversations, normalized to v3, for the run's windows; keeps cursor and pending set."""

    @dlt.resource(name="conversation_pages", selected=False)
    def read_pages() -> Iterator[list[dict[str, Any]]]:
        refuse_appending_destination(dlt.current.pipeline())
        state = SourceState(dlt.current.source_state())
        pending = state.pending
        cursor_text = state.cursor
        now = clock()
        plan = plan_run(
            cursor=parse_timestamp(cursor_text) if cursor_text else None,
            pending=pending,
            now=now,
            start_date=settings.start_date,
            lookback=settings.lookback,
            max_pending_age=settings.max_pending_age,
            max_window_span=settings.window_span,
            concurrency=settings.concurrency,
            misses=state.repull_misses,
        )
        forget_expired(pending, plan, settings)
        hidden_transcripts = 0
        windows = [*plan.repull_windows, *plan.main_windows]
        # Every load reads the re-pulls and at least one main window, so each makes progress;
        # past max_conversations_per_load, the windows in flight are finished and the others
        # are left to the next load.
        queue = WindowQueue(
            windows, always=len(plan.repull_windows) + 1, limit=settings.max_conversations_per_load
        )
        kept_this_run: set[str] = set()
        outside = timedelta(0)
        client.text_repair = table_outputs[0].fit().text_repair()
        decoder = typed_page_decoder(settings, privacy, *table_outputs)
        for page in iter_windows_concurrently(client, queue, settings.concurrency, decoder):
            conversations = normalized(page, settings.api_version)
            outside = max(outside, furthest_outside(conversations, page.window))
            # Each conversation once per run, whatever the windows and the server's filter.
            conversations = first_sightings(conversations, kept_this_run)
            if privacy.active:
                conversations = [apply_privacy(c, privacy) for c in conversations]
            for conversation in conversations:
                record_status(
                    pending,
                    conversation["id"],
                    conversation["started_at"],
                    bool(conversation["in_progress"]),
                )
                hidden_transcripts += has_hidden_transcript(conversation)
            if conversations:
                yield conversations
        allocators.extraction_done()
        if hidden_transcripts:
            logger.warning(
                "%d conversations came with no turns although num_turns > 0: the project's "
                "'Conversation transcript' setting (show_transcripts) is off for this API key. "
                "Their turns already loaded were kept; ask PolyAI to turn transcripts on.",
                hidden_transcripts,
            )
        warn_of_clock_skew(clock_skew(now, client.earliest_server_time), settings)
        warn_of_filter_disagreement(outside, settings)
        track_repull_misses(state, plan, kept_this_run)
        replaced_text = client.text_repair.summary()
        warn_replaced_text(replaced_text)
        main_windows_read = queue.handed_out - len(plan.repull_windows)
        next_cursor = cursor_within_api_clock(
            cursor_after(plan, main_windows_read), client.earliest_server_time
        )
        if next_cursor is not None:
            state.cursor = isoformat_utc(next_cursor)
        state.save_pending()
        state.last_run = LastRun(
            requests=client.requests_made,
            repull_windows=len(plan.repull_windows),
            expired=len(plan.expired),
            hidden_transcripts=hidden_transcripts,
            replaced_text=replaced_text,
            caught_up=main_windows_read >= len(plan.main_windows),
        )
        warn_if_not_caught_up(state, settings.max_conversations_per_load)

    return read_pages


def warn_replaced_text(replaced: dict[str, int]) -> None:
    if replaced:
        logger.warning(
            "replaced characters the destination cannot hold by U+FFFD (lone UTF-16 surrogates; "
            "NUL on PostgreSQL) in %d values: %s",
            sum(replaced.values()),
            ", ".join(f"{column} {count}" for column, count in replaced.items()),
        )


def typed_page_decoder(
    settings: ConnectorSettings,
    privacy: PrivacyRules,
    conversation_output: TableOutput,
    turn_output: TableOutput,
) -> msgspec.json.Decoder | None:
    """The fast path's decoder (typed_pages), where it applies: v2/v3 pages loaded as they are.

    v1 pages are rewritten to v3 conventions and privacy options rewrite values: both work on
    dicts, so they take the general path.
    """
    if settings.api_version == "v1" or privacy.active:
        return None
    return page_decoder(conversation_output.current(), turn_output.current())


def normalized(page: Page, api_version: str) -> list[dict[str, Any]]:
    """v1 pages are brought to v3 conventions; started_at is made canonical UTC text for the state."""
    if api_version == "v1":
        return [normalize_v1_conversation(c) for c in page.conversations]
    for conversation in page.conversations:
        conversation["started_at"] = isoformat_utc(parse_timestamp(conversation["started_at"]))  # type: ignore[arg-type]
    return page.conversations


def track_repull_misses(state: SourceState, plan: RunPlan, seen: set[str]) -> None:
    """Counts, per pending conversation, the runs whose re-pulls did not return it (repulls)."""
    misses = next_misses(plan.repull_targets, seen, state.repull_misses)
    state.repull_misses = misses
    lost = sorted(conversation_id for conversation_id, count in misses.items() if newly_lost(count))
    if lost:
        logger.warning(
            "%d conversations still in progress were not returned by their re-pulls, even "
            "%s either side of their started_at without the in_progress filter: the API's time "
            "filter may disagree with the started_at it reports. They stay pending (re-pulled "
            "in that widest window) until max_pending_hours: %s%s",
            len(lost),
            WIDEST,
            ", ".join(lost[:5]),
            " ..." if len(lost) > 5 else "",
        )


def warn_of_filter_disagreement(outside: timedelta, settings: ConnectorSettings) -> None:
    if outside <= FILTER_TOLERANCE:
        return
    logger.warning(
        "the PolyAI API sent conversations whose started_at lies up to %s outside the time range "
        "asked for: its time filter disagrees with the started_at it reports. Every conversation "
        "it sent was kept once. A filter that lags the reported started_at by more than "
        "lookback_minutes (%s) hides conversations from every run: raise lookback_minutes above "
        "that lag if the counts fall short.",
        outside,
        settings.lookback,
    )


def warn_of_clock_skew(skew: timedelta | None, settings: ConnectorSettings) -> None:
    if skew is None or abs(skew) <= settings.lookback:
        return
    if skew > timedelta(0):
        consequence = "the cursor follows the API's clock, so nothing is skipped"
    else:
        consequence = "conversations of that last stretch are read on the next run"
    logger.warning(
        "this machine's clock is %s %s the PolyAI API's (its Date header), more than "
        "lookback_minutes: %s; set the machine's clock right (NTP)",
        abs(skew),
        "ahead of" if skew > timedelta(0) else "behind",
        consequence,
    )


def forget_expired(pending: dict[str, str], plan: RunPlan, settings: ConnectorSettings) -> None:
    if not plan.expired:
        return
    for conversation_id in plan.expired:
        pending.pop(conversation_id, None)
    sample = ", ".join(sorted(plan.expired)[:5])
    logger.warning(
        "%d conversations were still in progress %s after they started (max_pending_hours); "
        "they are no longer re-pulled and keep their last loaded rows: %s%s",
        len(plan.expired),
        settings.max_pending_age,
        sample,
        " ..." if len(plan.expired) > 5 else "",
    )


def without_merge_key(hints: dict[str, dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    """Says so explicitly: dlt keeps a merge key stored by an earlier version otherwise."""
    return {**hints, name: {**hints[name], "merge_key": False}}


@dlt.transformer(
    name="conversations",
    primary_key=CONVERSATION_KEY,
    write_disposition=CONVERSATIONS_MERGE,
    columns=arrow_column_hints(CONVERSATION_COLUMN_TYPES, keys=CONVERSATION_KEY),
)
def conversations(page: list[dict[str, Any]], output: TableOutput) -> Iterator[Any]:
    """One row per conversation, the latest version replacing the earlier ones."""
    table, new_columns = conversations_table(page, output.current())
    with json_hint_notice_dropped():
        yield output.hand_over(table, new_columns)


@dlt.transformer(
    name="turns",
    primary_key=TURN_KEY,
    write_disposition=TURNS_MERGE,
    # The destination scope replaces the merge key that earlier versions stored.
    columns=without_merge_key(arrow_column_hints(TURN_COLUMN_TYPES, keys=TURN_KEY), "conversation_id"),
)
def turns(page: list[dict[str, Any]], output: TableOutput) -> Iterator[Any]:
    """One row per turn; a conversation loaded again replaces all of its earlier turns."""
    table, new_columns = turns_table(page, output.current())
    if table.num_rows:
        with json_hint_notice_dropped():
            yield output.hand_over(table, new_columns)
