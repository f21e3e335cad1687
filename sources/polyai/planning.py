"""Which time windows a run reads, and which conversations stay pending: pure functions, no I/O.

A run reads two kinds of windows on `started_at`:
- the main window, from the cursor minus the lookback up to now (from `start_date` on the
  first run), with no status filter: new conversations, late arrivals and fresh versions of
  conversations that are still in progress;
- re-pull windows: one narrow window around each pending (in-progress) conversation that
  started before the main window, with the API's `in_progress=false` filter, so that a run
  pays for the pending conversations and not for the history between them.

Re-pulls: a conversation still in progress is re-pulled on later runs by a narrow window around
its `started_at` with the API's `in_progress=false` filter: it comes back once it has finished.
A window that does not return it is ambiguous (still in progress, or a server whose time
filter disagrees with the `started_at` it reports), so after a few misses the re-pull drops
the filter (the conversation comes back in progress or finished), then widens, and after the
widest window the run warns: a conversation is never left pending in silence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from .settings import (
    LARGE_PAGE,
    MAX_REPULL_WINDOWS,
    MAX_SLICE_SPAN,
    MIN_PARALLEL_SPAN,
    REPLACE_MARGIN,
    REPULL_PADDING,
    SLICES_PER_WORKER,
    SLICES_PER_WORKER_LARGE_PAGES,
)

# Finished-only re-pulls that may miss a conversation (it is still in progress) before one
# without the filter checks that the API returns it at all.
CHECK_AFTER_MISSES: Final = 2
# Then the window widens on each further miss, from this to WIDEST, on both sides.
WIDEN_FROM: Final = timedelta(minutes=15)
WIDEST: Final = timedelta(hours=8)
# The misses at which the re-pull window is WIDEST.
WIDEST_AFTER_MISSES: Final = CHECK_AFTER_MISSES + 1 + round(math.log2(WIDEST / WIDEN_FROM))


def repull_span(misses: int) -> tuple[timedelta, bool]:
    """(padding on each side of started_at, whether finished-only) after `misses` misses."""
    if misses < CHECK_AFTER_MISSES:
        return REPULL_PADDING, True
    if misses == CHECK_AFTER_MISSES:
        return REPULL_PADDING, False
    return min(WIDEN_FROM * 2 ** (misses - CHECK_AFTER_MISSES - 1), WIDEST), False


def newly_lost(misses: int) -> bool:
    """Whether the conversation has just missed its widest re-pull window too."""
    return misses == WIDEST_AFTER_MISSES + 1


def next_misses(targets: Iterable[str], seen: Container[str], misses: Mapping[str, int]) -> dict[str, int]:
    """The misses after a run: each targeted conversation the run did not see missed once more."""
    return {target: misses.get(target, 0) + 1 for target in targets if target not in seen}


@dataclass(frozen=True)
class Window:
    """Conversations with `start <= started_at < end`; `finished_only` sends `in_progress=false`."""

    start: datetime
    end: datetime
    finished_only: bool = False


@dataclass(frozen=True)
class RunPlan:
    main_windows: list[Window]
    repull_windows: list[Window]
    # Pending conversations given up on this run (id -> started_at), kept as last loaded.
    expired: dict[str, str] = field(default_factory=dict)
    # The cursor once every main window has been read.
    next_cursor: datetime | None = None
    # Pending conversations the re-pull windows look for (repull_span).
    repull_targets: frozenset[str] = frozenset()
    # The main windows a load reads whatever max_conversations_per_load (windows_past).
    least_main_windows: int = 1


def main_window_bounds(
    cursor: datetime | None, start_date: datetime, now: datetime, lookback: timedelta
) -> tuple[datetime, datetime] | None:
    """The span of the main window, or None when there is nothing to read (clock behind)."""
    start = start_date if cursor is None else max(start_date, cursor - lookback)
    if start >= now:
        return None
    return start, now


def split_window(start: datetime, end: datetime, max_span: timedelta | None) -> list[Window]:
    """Cut [start, end) into adjacent windows of at most `max_span`, in time order."""
    if max_span is None or max_span <= timedelta(0):
        return [Window(start, end)]
    windows = []
    cut = start
    while cut < end:
        upper = min(cut + max_span, end)
        windows.append(Window(cut, upper))
        cut = upper
    return windows


def slices_per_worker(page_size: int) -> int:
    """Windows per worker for pages of `page_size` conversations (settings.LARGE_PAGE)."""
    return SLICES_PER_WORKER_LARGE_PAGES if page_size >= LARGE_PAGE else SLICES_PER_WORKER


def slice_span(
    start: datetime, end: datetime, concurrency: int, per_worker: int = SLICES_PER_WORKER
) -> timedelta:
    """A slice length that gives every worker `per_worker` windows and lets a load stop between them.

    Never shorter than MIN_PARALLEL_SPAN (an incremental run stays one window), never longer
    than MAX_SLICE_SPAN (a backfill load can stop after any day: max_conversations_per_load).
    """
    span = (end - start) / (concurrency * per_worker)
    return min(max(span, MIN_PARALLEL_SPAN), MAX_SLICE_SPAN)


def taper(windows: list[Window], concurrency: int) -> list[Window]:
    """The last `concurrency` windows cut in halves, so that the connections finish together.

    A window is read page after page by one connection: with windows of equal size, the run
    waits at its end for the connections that took one window more than the others. Half-size
    windows last make that tail half as long (docs/performance.md).
    """
    if concurrency <= 1 or len(windows) <= concurrency:
        return windows
    halves = []
    for window in windows[-concurrency:]:
        middle = window.start + (window.end - window.start) / 2
        halves += [Window(window.start, middle), Window(middle, window.end)]
    return [*windows[:-concurrency], *halves]


def repull_windows(
    pending_started_at: Iterable[datetime],
    before: datetime,
    padding: timedelta = REPULL_PADDING,
    finished_only: bool = True,
) -> list[Window]:
    """Narrow windows around each time, merged where they touch, none reaching `before`."""
    windows = [
        Window(started_at - padding, min(started_at + padding, before), finished_only)
        for started_at in pending_started_at
        if started_at < before
    ]
    return merged_where_touching(windows)


def merged_where_touching(windows: Iterable[Window]) -> list[Window]:
    """Windows of one kind (finished-only or not) merged where they touch or overlap, in time order."""
    merged: list[Window] = []
    for window in sorted(windows, key=lambda window: (window.finished_only, window.start)):
        last = merged[-1] if merged else None
        if last is not None and last.finished_only == window.finished_only and window.start <= last.end:
            merged[-1] = Window(last.start, max(last.end, window.end), last.finished_only)
        else:
            merged.append(window)
    return merged


def repull_plan(
    keep: Mapping[str, datetime], misses: Mapping[str, int], before: datetime
) -> tuple[list[Window], frozenset[str]]:
    """The re-pull windows of the pending conversations that started before `before`, each as
    wide as its misses say (repulls.repull_span), and the ids they target."""
    targets = {conversation_id for conversation_id, started_at in keep.items() if started_at < before}
    windows: list[Window] = []
    for conversation_id in targets:
        padding, finished_only = repull_span(misses.get(conversation_id, 0))
        windows += repull_windows([keep[conversation_id]], before, padding, finished_only)
    merged = merged_where_touching(windows)
    finished = within_budget([window for window in merged if window.finished_only], MAX_REPULL_WINDOWS)
    return [window for window in merged if not window.finished_only] + finished, frozenset(targets)


def within_budget(windows: list[Window], budget: int) -> list[Window]:
    """At most `budget` windows (in time order, not overlapping): the closest neighbours joined.

    Thousands of pending conversations would otherwise cost a request each on every run. A
    joined window also returns the finished conversations between its pending ones, loaded
    again as they are: the smallest gaps are closed first, where that costs least.
    """
    if len(windows) <= budget:
        return windows
    gaps = sorted(range(1, len(windows)), key=lambda i: windows[i].start - windows[i - 1].end)
    kept_splits = sorted(gaps[len(windows) - budget :])
    joined: list[Window] = []
    first = 0
    for split in [*kept_splits, len(windows)]:
        joined.append(Window(windows[first].start, windows[split - 1].end, windows[first].finished_only))
        first = split
    return joined


def split_expired(
    pending: Mapping[str, str], now: datetime, max_pending_age: timedelta
) -> tuple[dict[str, datetime], dict[str, str]]:
    """Split the pending set into (still pending, id -> started_at) and expired (id -> ISO text)."""
    keep: dict[str, datetime] = {}
    expired: dict[str, str] = {}
    for conversation_id, started_text in pending.items():
        started_at = datetime.fromisoformat(started_text)
        if now - started_at > max_pending_age:
            expired[conversation_id] = started_text
        else:
            keep[conversation_id] = started_at
    return keep, expired


def plan_run(
    *,
    cursor: datetime | None,
    pending: Mapping[str, str],
    now: datetime,
    start_date: datetime,
    lookback: timedelta,
    max_pending_age: timedelta,
    max_window_span: timedelta | None = None,
    concurrency: int = 1,
    misses: Mapping[str, int] | None = None,
    per_worker: int = SLICES_PER_WORKER,
) -> RunPlan:
    """Everything one run will read, decided up front from the saved state and the clock."""
    keep, expired = split_expired(pending, now, max_pending_age)
    bounds = main_window_bounds(cursor, start_date, now, lookback)
    if bounds is None:
        # Nothing new can be read; pending conversations are still re-pulled.
        repulls, targets = repull_plan(keep, misses or {}, now)
        return RunPlan([], repulls, expired, cursor, targets)
    main_start, main_end = bounds
    if max_window_span is None:
        main_windows = taper(
            split_window(main_start, main_end, slice_span(main_start, main_end, concurrency, per_worker)),
            concurrency,
        )
    else:
        main_windows = split_window(main_start, main_end, max_window_span)
    repulls, targets = repull_plan(keep, misses or {}, main_start)
    return RunPlan(
        main_windows=main_windows,
        repull_windows=repulls,
        expired=expired,
        next_cursor=main_end,
        repull_targets=targets,
        least_main_windows=windows_past(main_windows, cursor),
    )


def windows_past(main_windows: list[Window], cursor: datetime | None) -> int:
    """The main windows up to the first that ends past `cursor`: each load reads that many.

    The main windows start `lookback` before the cursor. A load stopped inside the lookback
    would set the cursor back (cursor_after), and the next one would start earlier still.
    """
    for read, window in enumerate(main_windows, start=1):
        if cursor is None or window.end > cursor:
            return read
    return max(len(main_windows), 1)


def cursor_after(plan: RunPlan, main_windows_read: int) -> datetime | None:
    """Where the cursor goes once the first `main_windows_read` main windows have been read.

    A load that stops early (max_conversations_per_load) has read a prefix of the main
    windows, in time order: the next load starts where that prefix ends.
    """
    if main_windows_read >= len(plan.main_windows):
        return plan.next_cursor
    if main_windows_read <= 0:
        raise ValueError("a load reads at least one main window before it may stop")
    return plan.main_windows[main_windows_read - 1].end


def cursor_within_api_clock(cursor: datetime | None, api_time: datetime | None) -> datetime | None:
    """The cursor never passes the API's own clock: what starts after it cannot have been shown.

    The run's windows end at this machine's "now"; with a clock ahead of the API's, a cursor
    set there would skip what the API has not shown yet. `api_time` is the API's clock at the
    run's first answer, so the next run reads on from what the API could show then.
    """
    if cursor is None or api_time is None:
        return cursor
    return min(cursor, api_time)


def clock_skew(now: datetime, api_time: datetime | None) -> timedelta | None:
    """How far this machine's clock is ahead of the API's (negative: behind), if the API told."""
    return None if api_time is None else now - api_time


def record_status(
    pending: MutableMapping[str, str], conversation_id: str, started_at: str, in_progress: bool
) -> None:
    """Track one conversation as seen in a response: in progress joins the set, finished leaves it."""
    if in_progress:
        pending[conversation_id] = started_at
    else:
        pending.pop(conversation_id, None)


def furthest_outside(conversations: Iterable[Any], window: Window) -> timedelta:
    """How far the page's `started_at` values lie outside the window that asked for them (0 inside).

    A server whose time filter disagrees with the `started_at` it reports sends conversations
    outside the range asked: every one is kept (first_sightings), and the distance tells how
    far off its filter is.
    """
    furthest = timedelta(0)
    for conversation in conversations:
        started_at = datetime.fromisoformat(conversation["started_at"])
        furthest = max(furthest, window.start - started_at, started_at - window.end)
    return furthest


def replace_bound(oldest_staged: datetime | None, margin: timedelta = REPLACE_MARGIN) -> datetime | None:
    """The time from which a load's merge deletes the rows it replaces, or None without rows.

    Every row the load replaces started then or later: its conversation was staged with a
    started_at no earlier than `oldest_staged`, and had it at the earlier read too, or one at
    most `margin` earlier. Rounded down to the hour, so that the SQL reads plainly.
    """
    if oldest_staged is None:
        return None
    bound = oldest_staged - margin
    return bound.replace(minute=0, second=0, microsecond=0)


def first_sightings(
    conversations: list[Any], seen: set[str], loaded_before: Callable[[Any], bool] | None = None
) -> list[Any]:
    """The conversations of one page that this run has not kept yet, each once; `seen` learns them.

    Whatever window sends a conversation, and whatever `started_at` it reports, the run keeps
    the first sighting: a server whose time filter disagrees with the `started_at` it reports
    (a timezone slip), one that sends more than each window asked for, pages served twice, or
    one id under two `started_at` values all land each conversation once. `seen` holds every id
    of the load, which stays a few MB at the default `max_conversations_per_load`;
    `loaded_before` tells the sightings an earlier part of the same run committed.
    """
    kept = []
    for conversation in conversations:
        conversation_id = conversation["id"]
        if conversation_id in seen or (loaded_before is not None and loaded_before(conversation)):
            continue
        seen.add(conversation_id)
        kept.append(conversation)
    return kept


def start_date_moved_earlier(read_from: datetime | None, start_date: datetime, has_cursor: bool) -> bool:
    """Whether `start_date` was set earlier than where a project that has run began reading.

    A run reads from its cursor on, so the earlier range is not read by itself (resync reads it).
    """
    return has_cursor and read_from is not None and start_date < read_from
