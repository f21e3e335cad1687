"""Response bodies are read only once they fit in the decode budget, and every byte comes back."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from dlt.sources.helpers.requests.session import Session
from requests.structures import CaseInsensitiveDict
from tenacity import RetryCallState

from sources.polyai.http.transport import (
    Fetched,
    RetryPolicy,
    Transport,
    read_within_budget,
    release_dropped_response,
)


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


def read(response: FakeResponse, budget: RecordingBudget | None) -> Fetched:
    return read_within_budget(response, budget)  # type: ignore[arg-type]


def test_the_transport_asks_for_the_body_unread_and_reads_it_within_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []
    budget = RecordingBudget(log)
    response = FakeResponse(log, b"{}" * 50, **{"Content-Length": "100"})

    def get(session: Session, url: str, **kwargs: Any) -> FakeResponse:
        assert kwargs["stream"] is True
        return response

    monkeypatch.setattr(Session, "get", get)
    transport = Transport({}, (1.0, 1.0), RetryPolicy(1, 0.0, 0.0, 10.0), retries=0, pool_size=1)
    fetched = transport.get("http://api.invalid/conversations", {}, budget)
    assert fetched.response is response and log == ["acquire 100", "read"]
    assert fetched.body_bytes == budget.in_use == 100


def test_a_body_of_declared_size_waits_for_room_before_it_is_read() -> None:
    log: list[str] = []
    budget = RecordingBudget(log)
    fetched = read(FakeResponse(log, b"{}" * 50, **{"Content-Length": "100"}), budget)
    assert log == ["acquire 100", "read"]
    reservation = fetched.reservation
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
    read(FakeResponse(log, body, **headers), budget)
    assert log == ["read", "acquire 100"]
    assert budget.in_use == 100


def test_a_body_shorter_than_declared_holds_what_it_is() -> None:
    log: list[str] = []
    budget = RecordingBudget(log)
    fetched = read(FakeResponse(log, b"{}", **{"Content-Length": "100"}), budget)
    assert log == ["acquire 100", "read", "release 100", "acquire 2"]
    assert fetched.reservation is not None and fetched.reservation.size == budget.in_use == 2


def test_a_body_cut_off_while_read_gives_its_room_back() -> None:
    log: list[str] = []
    budget = RecordingBudget(log)
    with pytest.raises(ConnectionError):
        read(FakeResponse(log, b"reset", **{"Content-Length": "100"}), budget)
    assert log == ["acquire 100", "read", "release 100"]
    assert budget.in_use == 0


@pytest.mark.parametrize("status", [429, 500, 404])
def test_an_error_body_is_read_outside_the_budget(status: int) -> None:
    log: list[str] = []
    budget = RecordingBudget(log)
    fetched = read(FakeResponse(log, b"{}", status, **{"Content-Length": "2"}), budget)
    assert log == ["read"]
    assert fetched.reservation is None


def test_without_a_budget_the_body_is_read_at_once() -> None:
    log: list[str] = []
    fetched = read(FakeResponse(log, b"{}", **{"Content-Length": "2"}), None)
    assert log == ["read"] and fetched.reservation is None


def test_a_response_that_is_retried_gives_its_room_back() -> None:
    log: list[str] = []
    budget = RecordingBudget(log)
    fetched = read(FakeResponse(log, b"{", **{"Content-Length": "1"}), budget)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.set_result(fetched)
    release_dropped_response(state)
    assert budget.in_use == 0
