"""Response bodies are read only once they fit in the decode budget, and every byte comes back."""

from __future__ import annotations

import gzip
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import Harness
from requests.structures import CaseInsensitiveDict
from tenacity import RetryCallState

from polyai_simulator.faults import Faults
from sources.polyai import concurrent_windows
from sources.polyai.retries import reading_bodies_within_budget, release_dropped_response, reservation_of


class RecordingBudget:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.in_use = 0

    def acquire(self, size: int) -> None:
        self.log.append(f"acquire {size}")
        self.in_use += size

    def release(self, size: int) -> None:
        self.log.append(f"release {size}")
        self.in_use -= size


class FakeResponse:
    """A response whose body is read when `content` is first asked for, as with stream=True."""

    def __init__(self, log: list[str], body: bytes, status: int = 200, **headers: str) -> None:
        self.log, self.body, self.status_code = log, body, status
        self.headers = CaseInsensitiveDict(headers)
        self._read = False

    @property
    def content(self) -> bytes:
        if not self._read:
            self.log.append("read")
            if self.body == b"reset":
                raise ConnectionError("connection reset while reading the body")
            self._read = True
        return self.body


def send_returning(response: FakeResponse, budget: RecordingBudget | None) -> Any:
    def send(request: Any, **kwargs: Any) -> FakeResponse:
        assert kwargs["stream"] is True
        return response

    return reading_bodies_within_budget(send, SimpleNamespace(body_budget=budget))  # type: ignore[arg-type]


def test_a_body_of_declared_size_waits_for_room_before_it_is_read() -> None:
    log: list[str] = []
    budget = RecordingBudget(log)
    response = send_returning(FakeResponse(log, b"{}" * 50, **{"Content-Length": "100"}), budget)(None)
    assert log == ["acquire 100", "read"]
    reservation = reservation_of(response)
    assert reservation is not None and reservation.size == 100
    reservation.release()
    reservation.release()  # given back once only
    assert budget.in_use == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Content-Length": "40", "Content-Encoding": "gzip"}, {"Content-Length": "n/a"}],
    ids=["chunked", "compressed", "unreadable-length"],
)
def test_a_body_of_unknown_size_is_read_then_waits_for_room(headers: dict[str, str]) -> None:
    log: list[str] = []
    budget = RecordingBudget(log)
    body = gzip.decompress(gzip.compress(b"{" + b" " * 98 + b"}"))
    send_returning(FakeResponse(log, body, **headers), budget)(None)
    assert log == ["read", "acquire 100"]
    assert budget.in_use == 100


def test_a_body_shorter_than_declared_holds_what_it_is() -> None:
    log: list[str] = []
    budget = RecordingBudget(log)
    response = send_returning(FakeResponse(log, b"{}", **{"Content-Length": "100"}), budget)(None)
    assert log == ["acquire 100", "read", "release 100", "acquire 2"]
    assert reservation_of(response).size == budget.in_use == 2  # type: ignore[union-attr]


def test_a_body_cut_off_while_read_gives_its_room_back() -> None:
    log: list[str] = []
    budget = RecordingBudget(log)
    with pytest.raises(ConnectionError):
        send_returning(FakeResponse(log, b"reset", **{"Content-Length": "100"}), budget)(None)
    assert log == ["acquire 100", "read", "release 100"]
    assert budget.in_use == 0


@pytest.mark.parametrize("status", [429, 500, 404])
def test_an_error_body_is_read_outside_the_budget(status: int) -> None:
    log: list[str] = []
    budget = RecordingBudget(log)
    response = send_returning(FakeResponse(log, b"{}", status, **{"Content-Length": "2"}), budget)(None)
    assert log == ["read"]
    assert reservation_of(response) is None


def test_without_a_budget_the_body_is_read_at_once() -> None:
    log: list[str] = []
    response = send_returning(FakeResponse(log, b"{}", **{"Content-Length": "2"}), None)(None)
    assert log == ["read"] and reservation_of(response) is None


def test_a_response_that_is_retried_gives_its_room_back() -> None:
    log: list[str] = []
    budget = RecordingBudget(log)
    response = send_returning(FakeResponse(log, b"{", **{"Content-Length": "1"}), budget)(None)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.set_result(response)
    release_dropped_response(state)
    assert budget.in_use == 0


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
