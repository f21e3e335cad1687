"""How a pending conversation is re-pulled as its re-pulls keep missing it (pure)."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from sources.polyai.planning import (
    CHECK_AFTER_MISSES,
    WIDEN_FROM,
    WIDEST,
    WIDEST_AFTER_MISSES,
    RunPlan,
    Window,
    newly_lost,
    next_misses,
    plan_run,
    repull_span,
    within_budget,
)
from sources.polyai.settings import MAX_REPULL_WINDOWS, REPULL_PADDING

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def test_a_re_pull_drops_its_filter_then_widens_up_to_the_widest() -> None:
    assert repull_span(0) == (REPULL_PADDING, True)
    assert repull_span(CHECK_AFTER_MISSES - 1) == (REPULL_PADDING, True)
    assert repull_span(CHECK_AFTER_MISSES) == (REPULL_PADDING, False)
    assert repull_span(CHECK_AFTER_MISSES + 1) == (WIDEN_FROM, False)
    assert repull_span(CHECK_AFTER_MISSES + 2) == (2 * WIDEN_FROM, False)
    assert repull_span(WIDEST_AFTER_MISSES) == (WIDEST, False)
    assert repull_span(WIDEST_AFTER_MISSES - 1)[0] < WIDEST
    assert repull_span(WIDEST_AFTER_MISSES + 5) == (WIDEST, False)
    assert [misses for misses in range(30) if newly_lost(misses)] == [WIDEST_AFTER_MISSES + 1]


def test_misses_count_the_targets_a_run_did_not_see_and_forget_the_others() -> None:
    misses = next_misses({"A", "B", "C"}, seen={"B"}, misses={"A": 2, "B": 5, "D": 1})
    assert misses == {"A": 3, "C": 1}


def plan_a_day_later(pending: dict[str, str], misses: dict[str, int] | None = None) -> RunPlan:
    """The plan of a run a day after T0 whose cursor is half an hour old."""
    now = T0 + timedelta(days=1)
    return plan_run(
        cursor=now - timedelta(minutes=30),
        pending=pending,
        now=now,
        start_date=T0,
        lookback=timedelta(minutes=15),
        max_pending_age=timedelta(hours=24),
        misses=misses,
    )


def test_plan_run_widens_the_re_pull_of_a_conversation_its_re_pulls_missed() -> None:
    missed, fresh = T0 + timedelta(hours=2), T0 + timedelta(hours=10)
    pending = {"MISSED": missed.isoformat(), "FRESH": fresh.isoformat()}
    plan = plan_a_day_later(pending, misses={"MISSED": CHECK_AFTER_MISSES + 1})
    assert plan.repull_targets == {"MISSED", "FRESH"}
    assert Window(missed - WIDEN_FROM, missed + WIDEN_FROM, False) in plan.repull_windows
    assert Window(fresh - REPULL_PADDING, fresh + REPULL_PADDING, True) in plan.repull_windows


def test_thousands_of_pending_conversations_cost_a_bounded_number_of_windows() -> None:
    """10k conversations stuck in progress cost one window each before (7,972 requests a run)."""
    draw = random.Random(7)
    started = [T0 + timedelta(seconds=draw.uniform(0, 20 * 3600)) for _ in range(10_000)]
    plan = plan_a_day_later({f"C{i}": at.isoformat() for i, at in enumerate(started)})
    assert len(plan.repull_windows) <= MAX_REPULL_WINDOWS
    assert all(window.finished_only for window in plan.repull_windows)
    ordered = sorted(plan.repull_windows, key=lambda window: window.start)
    assert all(a.end <= b.start for a, b in itertools.pairwise(ordered)), "windows overlap"
    for at in started:
        assert any(window.start <= at < window.end for window in ordered), f"{at} is not re-pulled"


def test_within_budget_closes_the_smallest_gaps_first() -> None:
    hour = timedelta(hours=1)
    windows = [Window(T0 + n * hour, T0 + n * hour + timedelta(minutes=1), True) for n in (0, 1, 5, 6, 20)]
    assert within_budget(windows, 5) == windows
    assert within_budget(windows, 3) == [
        Window(T0, T0 + hour + timedelta(minutes=1), True),
        Window(T0 + 5 * hour, T0 + 6 * hour + timedelta(minutes=1), True),
        windows[4],
    ]
    assert within_budget(windows, 1) == [Window(T0, windows[4].end, True)]
