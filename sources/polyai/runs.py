"""The steps of one run of the `conversation_pages` resource: plan, keep what each page adds, close.

The resource (in `__init__`) strings them together; they keep the source state, the only
state a run changes: the cursor, the pending set and the re-pull misses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import run_report
from .config import ConfigurationError, ConnectorSettings
from .http.client import Page, PolyAIClient
from .http.concurrent_windows import FetchLimit, WindowQueue
from .planning import (
    RunPlan,
    clock_skew,
    cursor_after,
    cursor_within_api_clock,
    first_sightings,
    furthest_outside,
    newly_lost,
    next_misses,
    plan_run,
    record_status,
    slices_per_worker,
    start_date_moved_earlier,
)
from .redaction import redact
from .shaping.privacy import PrivacyRules, apply_privacy
from .shaping.records import has_hidden_transcript, isoformat_utc, normalized, parse_timestamp
from .state import LastRun, SourceState

# Answers that refuse the key or the project: running again does not help.
REFUSALS = frozenset({401, 403, 404})


def start_run(
    state: SourceState, settings: ConnectorSettings, now: datetime, limit: FetchLimit | None = None
) -> tuple[RunPlan, WindowQueue]:
    """The run's plan, with the expired conversations dropped from the pending set, and its windows.

    `limit`: the load's limit of conversations, shared with the other projects of the load.
    """
    cursor_text = state.cursor
    plan = plan_run(
        cursor=parse_timestamp(cursor_text) if cursor_text else None,
        pending=state.pending,
        now=now,
        start_date=settings.start_date,
        lookback=settings.lookback,
        max_pending_age=settings.max_pending_age,
        max_window_span=settings.window_span,
        concurrency=settings.concurrency,
        misses=state.repull_misses,
        per_worker=slices_per_worker(settings.limit),
    )
    forget_expired(state.pending, plan, settings)
    note_start_date(state, settings)
    # Every load reads the re-pulls and the main windows up to past the cursor, so each makes
    # progress; past max_conversations_per_load, the windows in flight are finished and the
    # others are left to the next load.
    queue = WindowQueue(
        [*plan.repull_windows, *plan.main_windows],
        always=len(plan.repull_windows) + plan.least_main_windows,
        limit=limit if limit is not None else settings.max_conversations_per_load,
    )
    return plan, queue


def note_start_date(state: SourceState, settings: ConnectorSettings) -> None:
    """Keeps where reading began; warns, once, when `start_date` is moved before it."""
    read_from = parse_timestamp(state.read_from) if state.read_from else None
    if start_date_moved_earlier(read_from, settings.start_date, state.cursor is not None):
        run_report.warn_earlier_start_date(settings.start_date, state.read_from or "")
    elif read_from is not None and state.cursor is not None:
        return
    state.read_from = isoformat_utc(settings.start_date)


def forget_expired(pending: dict[str, str], plan: RunPlan, settings: ConnectorSettings) -> None:
    for conversation_id in plan.expired:
        pending.pop(conversation_id, None)
    run_report.warn_expired(sorted(plan.expired), settings)


@dataclass
class PageTally:
    """What the run's pages added up to so far; `take` keeps what a page adds to the run."""

    settings: ConnectorSettings
    privacy: PrivacyRules
    pending: dict[str, str]
    kept: set[str] = field(default_factory=set)
    # Whether a sighting was committed by an earlier part of this run (written_once.PartSightings).
    loaded_before: Callable[[Any], bool] | None = None
    outside: timedelta = timedelta(0)
    hidden_transcripts: int = 0
    turns: int = 0

    def take(self, page: Page) -> list[dict[str, Any]]:
        """The page's conversations not seen before in this run, with privacy options applied."""
        conversations = normalized(page.conversations, self.settings.api_version)
        self.outside = max(self.outside, furthest_outside(conversations, page.window))
        # Each conversation once per run, whatever the windows and the server's filter.
        conversations = first_sightings(conversations, self.kept, self.loaded_before)
        if self.privacy.active:
            conversations = [apply_privacy(c, self.privacy) for c in conversations]
        for conversation in conversations:
            # Keys of both tables: a server that leaves them out (they are required) still
            # answered for the project and account the request named.
            if not conversation.get("project_id"):
                conversation["project_id"] = self.settings.project_id
            if not conversation.get("account_id"):
                conversation["account_id"] = self.settings.account_id
            record_status(
                self.pending,
                conversation["id"],
                conversation["started_at"],
                bool(conversation["in_progress"]),
            )
            self.hidden_transcripts += has_hidden_transcript(conversation)
            self.turns += len(conversation.get("turns") or ())
        return conversations


def close_run(
    state: SourceState,
    plan: RunPlan,
    queue: WindowQueue,
    client: PolyAIClient,
    tally: PageTally,
    now: datetime,
) -> None:
    """Warns of what the run met, then moves the cursor and saves the pending set and the run's report."""
    settings = tally.settings
    run_report.warn_hidden_transcripts(tally.hidden_transcripts)
    run_report.warn_of_clock_skew(clock_skew(now, client.earliest_server_time), settings)
    run_report.warn_of_filter_disagreement(tally.outside, settings)
    track_repull_misses(state, plan, tally.kept)
    replaced_text = client.text_repair.summary()
    run_report.warn_replaced_text(replaced_text)
    main_windows_read = queue.handed_out - len(plan.repull_windows)
    next_cursor = cursor_within_api_clock(cursor_after(plan, main_windows_read), client.earliest_server_time)
    if next_cursor is not None:
        state.cursor = isoformat_utc(next_cursor)
    state.save_pending()
    state.last_run = LastRun(
        requests=client.requests_made,
        retries=client.transport.retry_budget.used,
        rate_limited=client.transport.pacer.rate_limited,
        ran_at=isoformat_utc(now),
        conversations=len(tally.kept),
        turns=tally.turns,
        repull_windows=len(plan.repull_windows),
        expired=len(plan.expired),
        hidden_transcripts=tally.hidden_transcripts,
        replaced_text=replaced_text,
        caught_up=main_windows_read >= len(plan.main_windows),
    )


def track_repull_misses(state: SourceState, plan: RunPlan, seen: set[str]) -> None:
    """Counts, per pending conversation, the runs whose re-pulls did not return it."""
    misses = next_misses(plan.repull_targets, seen, state.repull_misses)
    state.repull_misses = misses
    run_report.warn_lost_repulls(
        sorted(conversation_id for conversation_id, count in misses.items() if newly_lost(count))
    )


def record_failure(
    state: SourceState, client: PolyAIClient, error: BaseException, now: datetime | None = None
) -> None:
    """A failed project's run: its cursor, pending set and misses stay; its last run says why."""
    state.last_run = dataclasses.replace(
        state.last_run,
        requests=client.requests_made,
        retries=client.transport.retry_budget.used,
        rate_limited=client.transport.pacer.rate_limited,
        ran_at=isoformat_utc(now) if now is not None else state.last_run.ran_at,
        failure=failure_report(error),
    )


def failure_report(error: BaseException) -> dict[str, Any]:
    """What a failed project's last run keeps of the error: already redacted by the error types."""
    return {
        "status": getattr(error, "status", None),
        "error_code": getattr(error, "error_code", None),
        "correlation_id": getattr(error, "correlation_id", None),
        "message": redact(str(error)),
        "refused": is_refusal(error),
    }


def is_refusal(error: BaseException) -> bool:
    """A refusal (a key or setting the API will not accept) needs a person, not another run."""
    return isinstance(error, ConfigurationError) or getattr(error, "status", None) in REFUSALS
