"""How a pending conversation is re-pulled as its re-pulls keep missing it (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sources.polyai.repulls import (
    CHECK_AFTER_MISSES,
    WIDEN_FROM,
    WIDEST,
    WIDEST_AFTER_MISSES,
    newly_lost,
    next_misses,
    repull_span,
)
from sources.polyai.settings import REPULL_PADDING
from sources.polyai.windows import Window, plan_run

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


def test_plan_run_widens_the_re_pull_of_a_conversation_its_re_pulls_missed() -> None:
    now = T0 + timedelta(days=1)
    missed, fresh = T0 + timedelta(hours=2), T0 + timedelta(hours=10)
    pending = {"MISSED": missed.isoformat(), "FRESH": fresh.isoformat()}
    plan = plan_run(
        cursor=now - timedelta(minutes=30),
        pending=pending,
        now=now,
        start_date=T0,
        lookback=timedelta(minutes=15),
        max_pending_age=timedelta(hours=24),
        misses={"MISSED": CHECK_AFTER_MISSES + 1},
    )
    assert plan.repull_targets == {"MISSED", "FRESH"}
    assert Window(missed - WIDEN_FROM, missed + WIDEN_FROM, False) in plan.repull_windows
    assert Window(fresh - REPULL_PADDING, fresh + REPULL_PADDING, True) in plan.repull_windows
