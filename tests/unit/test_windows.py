"""The time-window and pending-set logic, alone."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.polyai.http.concurrent_windows import WindowQueue
from sources.polyai.planning import (
    RunPlan,
    Window,
    cursor_after,
    first_sightings,
    main_window_bounds,
    plan_run,
    record_status,
    repull_windows,
    slice_span,
    slices_per_worker,
    split_expired,
    split_window,
    start_date_moved_earlier,
    taper,
    windows_past,
)
from sources.polyai.settings import MAX_SLICE_SPAN, MIN_PARALLEL_SPAN, REPULL_PADDING
from sources.polyai.written_once import EarlierSightings, PartSightings

T0 = datetime(2026, 11, 1, tzinfo=UTC)
LOOKBACK = timedelta(minutes=15)
DAY = timedelta(days=1)


def iso(value: datetime) -> str:
    return value.isoformat()


def test_first_run_reads_from_start_date_to_now() -> None:
    assert main_window_bounds(None, T0, T0 + DAY, LOOKBACK) == (T0, T0 + DAY)


def test_later_runs_read_from_cursor_minus_lookback() -> None:
    cursor = T0 + DAY
    assert main_window_bounds(cursor, T0, cursor + timedelta(hours=1), LOOKBACK) == (
        cursor - LOOKBACK,
        cursor + timedelta(hours=1),
    )


def test_lookback_never_reaches_before_start_date() -> None:
    cursor = T0 + timedelta(minutes=5)
    assert main_window_bounds(cursor, T0, T0 + DAY, LOOKBACK) == (T0, T0 + DAY)


def test_no_main_window_when_clock_is_behind_the_window_start() -> None:
    assert main_window_bounds(T0 + DAY, T0, T0 + DAY - LOOKBACK * 2, LOOKBACK) is None


def test_split_window_cuts_adjacent_spans() -> None:
    windows = split_window(T0, T0 + timedelta(hours=50), timedelta(hours=24))
    assert [(w.start, w.end) for w in windows] == [
        (T0, T0 + timedelta(hours=24)),
        (T0 + timedelta(hours=24), T0 + timedelta(hours=48)),
        (T0 + timedelta(hours=48), T0 + timedelta(hours=50)),
    ]
    assert split_window(T0, T0 + DAY, None) == [Window(T0, T0 + DAY)]


def test_repull_windows_are_narrow_finished_only_and_merged_when_touching() -> None:
    a = T0 + timedelta(hours=1)
    b = a + timedelta(microseconds=500)  # within the padding of a: one window
    c = T0 + timedelta(hours=5)
    windows = repull_windows([c, a, b], before=T0 + DAY)
    assert windows == [
        Window(a - REPULL_PADDING, b + REPULL_PADDING, True),
        Window(c - REPULL_PADDING, c + REPULL_PADDING, True),
    ]


def test_repull_windows_stop_at_the_main_window() -> None:
    before = T0 + DAY
    inside = before - timedelta(microseconds=10)
    windows = repull_windows([inside, before + timedelta(seconds=1)], before=before)
    assert windows == [Window(inside - REPULL_PADDING, before, True)]


def test_expired_pending_conversations_leave_the_set() -> None:
    now = T0 + timedelta(hours=30)
    pending = {"old": iso(T0), "young": iso(now - timedelta(hours=1))}
    keep, expired = split_expired(pending, now, timedelta(hours=24))
    assert list(keep) == ["young"]
    assert expired == {"old": iso(T0)}


def test_plan_run_covers_recent_pending_by_the_main_window_only() -> None:
    cursor = T0 + DAY
    now = cursor + timedelta(minutes=10)
    recent = cursor - timedelta(minutes=5)  # inside cursor - lookback: main window re-reads it
    older = cursor - timedelta(hours=3)
    plan = plan_run(
        cursor=cursor,
        pending={"recent": iso(recent), "older": iso(older)},
        now=now,
        start_date=T0,
        lookback=LOOKBACK,
        max_pending_age=DAY,
    )
    assert plan.main_windows == [Window(cursor - LOOKBACK, now)]
    assert plan.repull_windows == [Window(older - REPULL_PADDING, older + REPULL_PADDING, True)]
    assert plan.next_cursor == now
    assert plan.expired == {}


def test_plan_run_keeps_cursor_when_nothing_can_be_read() -> None:
    cursor = T0 + DAY
    plan = plan_run(
        cursor=cursor,
        pending={},
        now=cursor - timedelta(hours=1),
        start_date=T0,
        lookback=LOOKBACK,
        max_pending_age=DAY,
    )
    assert plan.main_windows == []
    assert plan.next_cursor == cursor


def test_record_status_adds_in_progress_and_removes_finished() -> None:
    pending: dict[str, str] = {}
    record_status(pending, "a", "t1", True)
    record_status(pending, "b", "t2", True)
    record_status(pending, "a", "t1", False)
    record_status(pending, "zzz", "t3", False)
    assert pending == {"b": "t2"}


# --- properties: any sequence of runs covers every conversation, re-pulls only pending ones ---

offsets = st.lists(st.integers(min_value=0, max_value=10 * 24 * 3600), min_size=1, max_size=40)


def covered(windows: list[Window], moment: datetime) -> bool:
    return any(w.start <= moment < w.end for w in windows)


@settings(max_examples=200, deadline=None)
@given(
    run_gaps=st.lists(st.integers(min_value=1, max_value=48 * 3600), min_size=1, max_size=12),
    starts=offsets,
)
def test_successive_main_windows_leave_no_gap(run_gaps: list[int], starts: list[int]) -> None:
    """Every started_at between start_date and the last run is inside some run's main window."""
    cursor = None
    now = T0
    read: list[Window] = []
    for gap in run_gaps:
        now = now + timedelta(seconds=gap)
        plan = plan_run(
            cursor=cursor, pending={}, now=now, start_date=T0, lookback=LOOKBACK, max_pending_age=DAY
        )
        read.extend(plan.main_windows)
        cursor = plan.next_cursor
    for offset in starts:
        moment = T0 + timedelta(seconds=offset)
        if moment < now:
            assert covered(read, moment)


@settings(max_examples=200, deadline=None)
@given(
    pending_offsets=st.lists(st.integers(min_value=0, max_value=3 * 24 * 3600), max_size=30, unique=True),
    cursor_offset=st.integers(min_value=0, max_value=3 * 24 * 3600),
)
def test_every_live_pending_conversation_is_read_exactly_once(
    pending_offsets: list[int], cursor_offset: int
) -> None:
    cursor = T0 + timedelta(seconds=cursor_offset)
    now = cursor + timedelta(minutes=30)
    pending = {f"c{i}": iso(T0 + timedelta(seconds=s)) for i, s in enumerate(pending_offsets)}
    plan = plan_run(
        cursor=cursor, pending=pending, now=now, start_date=T0, lookback=LOOKBACK, max_pending_age=DAY
    )
    all_windows = plan.main_windows + plan.repull_windows
    for conversation_id, started in pending.items():
        started_at = datetime.fromisoformat(started)
        hits = sum(w.start <= started_at < w.end for w in all_windows)
        if conversation_id in plan.expired:
            assert now - started_at > DAY
            assert hits <= 1
        elif started_at >= now:
            assert hits == 0  # seen ahead of our clock: the next main window reads it
        else:
            assert hits == 1
    # Re-pull windows cost is bounded by the pending count, not by the time they span.
    assert len(plan.repull_windows) <= len(pending)
    for window in plan.repull_windows:
        assert window.finished_only
        assert window.end - window.start <= 2 * REPULL_PADDING * max(1, len(pending))


HOUR = timedelta(hours=1)


def test_first_sightings_keep_each_conversation_once_per_run_whatever_its_started_at() -> None:
    seen: set[str] = set()
    inside_first = {"id": "CI", "started_at": iso(T0 + timedelta(minutes=5))}
    inside_second = {"id": "CJ", "started_at": iso(T0 + timedelta(minutes=65))}
    # The same id under another started_at (seen in two windows of one run): kept once.
    moved = {"id": "CI", "started_at": iso(T0 + timedelta(minutes=95))}
    assert first_sightings([inside_first, inside_second, inside_first], seen) == [inside_first, inside_second]
    assert first_sightings([moved, {"id": "CK", "started_at": iso(T0)}], seen) == [
        {"id": "CK", "started_at": iso(T0)}
    ]
    assert seen == {"CI", "CJ", "CK"}


def test_first_sightings_skip_the_finished_conversations_an_earlier_part_committed() -> None:
    """Only what the earlier part kept finished, before its cursor, is skipped: one it kept in
    progress, one served past its cursor and a new one are read."""
    cursor = T0 + HOUR
    earlier = EarlierSightings("1", {"project": PartSightings({"CA", "CB", "CD"}, frozenset({"CB"}), cursor)})
    sightings = earlier.of("project")
    assert sightings is not None and earlier.of("another project") is None
    before, after = iso(cursor - timedelta(minutes=5)), iso(cursor)
    page = [
        {"id": "CA", "started_at": before},
        {"id": "CB", "started_at": before},
        {"id": "CC", "started_at": before},
        {"id": "CD", "started_at": after},
    ]
    seen: set[str] = set()
    assert [c["id"] for c in first_sightings(page, seen, sightings.committed)] == ["CB", "CC", "CD"]
    assert seen == {"CB", "CC", "CD"}
    assert first_sightings(page, set(), PartSightings({"CA"}, frozenset(), None).committed) == page


def test_a_window_keeps_the_first_of_each_id_within_and_across_pages() -> None:
    seen: set[str] = set()
    page = [{"id": "A"}, {"id": "B"}, {"id": "A"}]
    assert first_sightings(page, seen) == [{"id": "A"}, {"id": "B"}]
    assert first_sightings([{"id": "B"}, {"id": "C"}], seen) == [{"id": "C"}]
    assert seen == {"A", "B", "C"}


@settings(max_examples=200, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=8, unique=True),
    times=st.lists(st.integers(min_value=-2_000, max_value=12_000), max_size=60),
    inclusive_end=st.booleans(),
    slack=st.integers(min_value=0, max_value=3_000),
    filter_offset=st.integers(min_value=-7_200, max_value=7_200),
)
def test_every_conversation_the_server_sends_is_kept_exactly_once(
    cuts: list[int], times: list[int], inclusive_end: bool, slack: int, filter_offset: int
) -> None:
    """Whatever the server does at the bounds, whatever it sends beyond them, and whatever the
    offset between its time filter and the `started_at` it reports (a timezone slip)."""
    bounds = [T0 + timedelta(seconds=s) for s in sorted({0, *cuts})]
    windows = [Window(a, b) for a, b in itertools.pairwise(bounds)] or [Window(T0, T0 + HOUR)]
    conversations = [
        {"id": f"C{i}", "started_at": iso(T0 + timedelta(seconds=t))} for i, t in enumerate(times)
    ]

    def served(window: Window) -> list[dict[str, str]]:
        low, high = window.start - timedelta(seconds=slack), window.end + timedelta(seconds=slack)
        filtered_at = [
            (c, datetime.fromisoformat(c["started_at"]) + timedelta(seconds=filter_offset))
            for c in conversations
        ]
        return [c for c, at in filtered_at if low <= at < high or (inclusive_end and at == high)]

    seen: set[str] = set()
    kept = [c["id"] for window in windows for c in first_sightings(served(window), seen)]
    assert len(kept) == len(set(kept)), "a conversation was kept twice"
    every_served = {c["id"] for window in windows for c in served(window)}
    assert set(kept) == every_served, "a conversation the server sent was dropped"


def test_slices_give_each_worker_a_few_windows_between_an_hour_and_a_day() -> None:
    assert slice_span(T0, T0 + DAY, 2) == DAY / 8
    assert slice_span(T0, T0 + timedelta(hours=2), 8) == MIN_PARALLEL_SPAN
    assert slice_span(T0, T0 + 365 * DAY, 8) == MAX_SLICE_SPAN
    # One connection still gets windows, so that a long backfill can stop between them.
    assert slice_span(T0, T0 + DAY, 1) == DAY / 4


def test_large_pages_get_one_window_per_worker_and_small_pages_several() -> None:
    assert slices_per_worker(1000) == slices_per_worker(500) == 1
    assert slices_per_worker(499) == slices_per_worker(50) == 4
    # 10 days over 10 connections: a window a day with large pages, six hours with small ones.
    assert slice_span(T0, T0 + 10 * DAY, 10, slices_per_worker(1000)) == DAY
    assert slice_span(T0, T0 + 10 * DAY, 10, slices_per_worker(50)) == DAY / 4
    large = plan_run(
        cursor=None,
        pending={},
        now=T0 + 10 * DAY,
        start_date=T0,
        lookback=LOOKBACK,
        max_pending_age=DAY,
        concurrency=10,
        per_worker=slices_per_worker(1000),
    )
    # One window per connection (none to taper), the whole span covered once.
    assert len(large.main_windows) == 10
    assert large.main_windows[0].start == T0 and large.main_windows[-1].end == T0 + 10 * DAY
    assert all(a.end == b.start for a, b in itertools.pairwise(large.main_windows))


def backfill_plan() -> tuple[RunPlan, datetime]:
    now = T0 + 3 * DAY
    plan = plan_run(
        cursor=None,
        pending={},
        now=now,
        start_date=T0,
        lookback=LOOKBACK,
        max_pending_age=DAY,
        max_window_span=DAY,
    )
    return plan, now


def test_a_load_that_read_every_main_window_moves_the_cursor_to_now() -> None:
    plan, now = backfill_plan()
    assert len(plan.main_windows) == 3
    assert cursor_after(plan, 3) == now


def test_a_load_that_stopped_early_moves_the_cursor_to_the_end_of_what_it_read() -> None:
    plan, _ = backfill_plan()
    assert cursor_after(plan, 1) == T0 + DAY
    assert cursor_after(plan, 2) == T0 + 2 * DAY


def test_a_load_must_read_one_main_window() -> None:
    plan, _ = backfill_plan()
    with pytest.raises(ValueError):
        cursor_after(plan, 0)


def test_a_run_with_nothing_to_read_keeps_its_cursor() -> None:
    cursor = T0 + DAY
    plan = plan_run(
        cursor=cursor, pending={}, now=cursor - HOUR, start_date=T0, lookback=LOOKBACK, max_pending_age=DAY
    )
    assert cursor_after(plan, 0) == cursor


def test_window_queue_stops_at_its_limit_after_a_prefix_and_the_first_ones() -> None:
    windows = [Window(T0 + n * HOUR, T0 + (n + 1) * HOUR) for n in range(6)]
    queue = WindowQueue(windows, always=2, limit=100)
    assert queue.take() == windows[0]
    queue.fetched(60)
    assert queue.take() == windows[1]
    assert queue.take() == windows[2]
    queue.fetched(40)
    assert queue.take() is None
    assert queue.take() is None
    assert queue.handed_out == 3


def test_window_queue_hands_out_the_first_ones_even_past_its_limit() -> None:
    windows = [Window(T0 + n * HOUR, T0 + (n + 1) * HOUR) for n in range(4)]
    queue = WindowQueue(windows, always=2, limit=1)
    queue.fetched(5)
    assert [queue.take() for _ in range(3)] == [windows[0], windows[1], None]


def test_window_queue_without_a_limit_hands_out_everything_in_order() -> None:
    windows = [Window(T0 + n * HOUR, T0 + (n + 1) * HOUR) for n in range(4)]
    queue = WindowQueue(windows, always=1)
    queue.fetched(10**9)
    assert [queue.take() for _ in range(5)] == [*windows, None]
    assert queue.handed_out == 4


def test_taper_halves_the_last_windows_and_leaves_no_gap() -> None:
    windows = split_window(T0, T0 + 10 * HOUR, HOUR)
    tapered = taper(windows, concurrency=3)
    assert tapered[:7] == windows[:7]
    assert [w.end - w.start for w in tapered[7:]] == [HOUR / 2] * 6
    assert all(a.end == b.start for a, b in itertools.pairwise(tapered))
    assert (tapered[0].start, tapered[-1].end) == (T0, T0 + 10 * HOUR)
    # Nothing to balance with one connection, or as few windows as connections.
    assert taper(windows, concurrency=1) == windows
    assert taper(windows[:3], concurrency=3) == windows[:3]


def test_a_backfill_plan_ends_with_half_windows_for_the_connections() -> None:
    now = T0 + 4 * DAY
    plan = plan_run(
        cursor=None, pending={}, now=now, start_date=T0, lookback=LOOKBACK, max_pending_age=DAY, concurrency=2
    )
    spans = [w.end - w.start for w in plan.main_windows]
    assert spans == [DAY / 2] * 6 + [DAY / 4] * 4
    assert plan.main_windows[-1].end == now


def test_start_date_moved_earlier_only_counts_after_a_run_that_began_later() -> None:
    began = datetime(2026, 1, 10, tzinfo=UTC)
    assert start_date_moved_earlier(began, began - timedelta(days=1), has_cursor=True)
    assert not start_date_moved_earlier(began, began, has_cursor=True)
    assert not start_date_moved_earlier(began, began + timedelta(days=1), has_cursor=True)
    assert not start_date_moved_earlier(None, began, has_cursor=True)
    assert not start_date_moved_earlier(began, began - timedelta(days=1), has_cursor=False)


def test_a_load_reads_past_the_cursor_when_windows_are_shorter_than_the_lookback() -> None:
    cursor = T0 + DAY
    plan = plan_run(
        cursor=cursor,
        pending={},
        now=cursor + timedelta(hours=1),
        start_date=T0,
        lookback=timedelta(minutes=30),
        max_pending_age=DAY,
        max_window_span=timedelta(minutes=6),
    )
    # [cursor - 30 min, cursor - 24 min) ... : the sixth window is the first to end past the cursor.
    assert plan.least_main_windows == 6
    assert plan.main_windows[4].end == cursor < plan.main_windows[5].end
    assert cursor_after(plan, plan.least_main_windows) > cursor
    assert cursor_after(plan, plan.least_main_windows - 1) == cursor


@given(
    lookback_minutes=st.integers(0, 240),
    span_minutes=st.integers(1, 120),
    ahead_minutes=st.integers(1, 600),
)
def test_the_least_a_load_reads_never_sets_the_cursor_back(
    lookback_minutes: int, span_minutes: int, ahead_minutes: int
) -> None:
    cursor = T0 + DAY
    plan = plan_run(
        cursor=cursor,
        pending={},
        now=cursor + timedelta(minutes=ahead_minutes),
        start_date=T0,
        lookback=timedelta(minutes=lookback_minutes),
        max_pending_age=DAY,
        max_window_span=timedelta(minutes=span_minutes),
    )
    least = plan.least_main_windows
    assert cursor_after(plan, least) > cursor
    # And not one window more than needed.
    assert least == 1 or cursor_after(plan, least - 1) <= cursor


def test_windows_past_a_first_run_is_one_window() -> None:
    windows = split_window(T0, T0 + DAY, timedelta(hours=1))
    assert windows_past(windows, None) == 1
    assert windows_past([], None) == 1
