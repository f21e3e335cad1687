"""Every byte reserved for a response body comes back in a real run through retries and broken
bodies (the reads: tests/unit/test_body_budget.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from polyai_simulator.faults import Faults
from sources.polyai.http import concurrent_windows
from tests.support.harness import Harness


def test_every_reserved_byte_comes_back_through_retries_and_broken_bodies(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    budgets: list[concurrent_windows.DecodeBudget] = []

    class TrackedBudget(concurrent_windows.DecodeBudget):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            budgets.append(self)

    monkeypatch.setattr(concurrent_windows, "DecodeBudget", TrackedBudget)
    harness.simulator.faults = Faults(seed=7, slow_seconds=0.2)
    harness.simulator.faults.set_rates(server_error=0.1, reset=0.1, truncate=0.1, invalid_json=0.1)
    harness.clock.advance(timedelta(hours=5))
    summary = harness.run(limit=10, concurrency=4)
    faults = [entry["fault"] for entry in harness.simulator.stats.request_log if entry.get("fault")]
    assert {"truncate", "invalid_json", "reset"} <= set(faults), faults
    assert summary.conversations > 100
    assert budgets and all(budget._in_use == 0 for budget in budgets)
