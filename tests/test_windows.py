"""The time-window and pending-set logic, alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sources.polyai.settings import REPULL_PADDING
from sources.polyai.windows import (
    Window,
    main_window_bounds,
    plan_run,
    record_status,
    repull_windows,
    split_expired,
    split_window,
)

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
