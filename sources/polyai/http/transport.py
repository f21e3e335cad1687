"""The API client's transport: one session per thread, retried GETs, bodies read within a budget.

`Transport.get` returns a `Fetched`: the response, its body read, and the room that body
holds in the caller's budget (`Reservation`), which the caller gives back once done with it.
Retries follow the policy of retries.py, applied with tenacity; pacing (retries.RequestPacer)
is shared by every thread of a run.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import requests
from dlt.sources.helpers.requests.session import Session
from requests import Response
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from .retries import CONNECT_ATTEMPTS, RequestPacer, RetryBudget, cannot_connect, is_retried, retry_after

logger = logging.getLogger(__name__)


class BodyBudget(Protocol):
    """Room for response bodies (concurrent_windows.DecodeBudget); `acquire` waits for room."""

    def acquire(self, size: int) -> None: ...

    def release(self, size: int) -> None: ...


@dataclass
class Reservation:
    """Bytes of a budget held by one response body, given back once."""

    budget: BodyBudget
    size: int

    def release(self) -> None:
        size, self.size = self.size, 0
        if size:
            self.budget.release(size)


@dataclass(frozen=True)
class Fetched:
    """An answer with its body read; a 200 read within a budget holds its `reservation` there."""

    response: Response
    reservation: Reservation | None = None

    @property
    def body_bytes(self) -> int:
        """What the body holds in the budget; its size when it was read outside any."""
        return self.reservation.size if self.reservation is not None else len(self.response.content)

    def release(self) -> None:
        if self.reservation is not None:
            self.reservation.release()


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_factor: float
    max_retry_delay: float
    # Attempts of one request stop being made after this long, whatever is left of the others.
    max_request_seconds: float


def read_within_budget(response: Response, budget: BodyBudget | None) -> Fetched:
    """`response` (streamed) with its body read, a 200's only once it fits in `budget`.

    With several connections and a fast API, bodies arrive faster than the caller shapes
    pages: read at once, each waiting connection held a raw body of a few MB. Waiting before
    the read leaves them in the socket.
    """
    if budget is None or response.status_code != 200:
        response.content  # noqa: B018 - read now, as requests does when not streaming
        return Fetched(response)
    reservation = Reservation(budget, 0)
    declared = declared_body_size(response)
    if declared:
        budget.acquire(declared)
        reservation.size = declared
    try:
        body = response.content
    except BaseException:
        reservation.release()
        raise
    if len(body) != reservation.size:
        # Not known before the read: wait for room as a whole, holding nothing meanwhile.
        reservation.release()
        budget.acquire(len(body))
        reservation.size = len(body)
    return Fetched(response, reservation)


def declared_body_size(response: Response) -> int:
    """The body's size from its headers, or 0 when they do not tell it (chunked or compressed)."""
    if response.headers.get("Content-Encoding", "identity") != "identity":
        return 0
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else 0


def server_time(response: Response) -> datetime | None:
    """The time of the server's `Date` header (RFC 9110: an origin server with a clock sends it)."""
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        served_at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return served_at.replace(tzinfo=UTC) if served_at.tzinfo is None else served_at.astimezone(UTC)


def _fetched(retry_state: RetryCallState) -> Fetched | None:
    """The attempt's answer; None when it failed."""
    outcome = retry_state.outcome
    if outcome is None or outcome.failed:
        return None
    fetched: Fetched = outcome.result()
    return fetched


def _is_retried(retry_state: RetryCallState) -> bool:
    fetched = _fetched(retry_state)
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None and outcome.failed else None
    return is_retried(fetched.response if fetched else None, error)


def release_dropped_response(retry_state: RetryCallState) -> None:
    """A response about to be retried gives back the room its body held."""
    fetched = _fetched(retry_state)
    if fetched is not None:
        fetched.release()


def _last_answer(retry_state: RetryCallState) -> Fetched:
    """After the last attempt its answer is returned and reported by the client (or it raises)."""
    assert retry_state.outcome is not None
    fetched: Fetched = retry_state.outcome.result()
    return fetched


class RetryAfterWait(wait_exponential):
    """Exponential backoff, or what the answer's `Retry-After` asks for, up to `max`."""

    def __call__(self, retry_state: RetryCallState) -> float:
        fetched = _fetched(retry_state)
        asked = retry_after(fetched.response) if fetched is not None else None
        if asked is not None:
            return max(self.min, min(self.max, asked))
        return super().__call__(retry_state)


class KeyedSession(Session):
    """A session whose headers (the API key) go to the host it was given only."""

    # requests drops `Authorization` on a redirect to another host, never a custom header.
    keyed_headers: tuple[str, ...] = ()

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: Response) -> None:
        old_url = response.request.url or ""
        if self.should_strip_auth(old_url, prepared_request.url or ""):
            for name in self.keyed_headers:
                prepared_request.headers.pop(name, None)
        super().rebuild_auth(prepared_request, response)


class Transport:
    """GETs of one run: a session per thread, retries within the run's budget, shared pacing."""

    def __init__(
        self,
        headers: dict[str, str],
        timeout: tuple[float, float],
        policy: RetryPolicy,
        retries: int,
        pool_size: int,
    ) -> None:
        self.headers = headers
        self.timeout = timeout
        self.pool_size = pool_size
        self.pacer = RequestPacer()
        self.retry_budget = RetryBudget(retries)
        self._retrying = self._make_retrying(policy)
        self._local = threading.local()

    @property
    def session(self) -> Session:
        """This thread's session: requests' sessions are not meant to be shared between threads."""
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = KeyedSession(timeout=self.timeout, raise_for_status=False)
            session.headers.update(self.headers)
            session.keyed_headers = tuple(self.headers)
            adapter = HTTPAdapter(pool_maxsize=self.pool_size)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        return session

    def get(self, url: str, params: dict[str, Any], body_budget: BodyBudget | None = None) -> Fetched:
        """One GET, retried; the answer after the last attempt is returned whatever its status.

        A 200's body is read once it fits in `body_budget`: the caller releases the `Fetched`.
        """
        retrying = self._retrying.copy()
        return retrying(self._attempt, url, params, body_budget)

    def _attempt(self, url: str, params: dict[str, Any], body_budget: BodyBudget | None) -> Fetched:
        started = time.monotonic()
        response: Response | None = None
        try:
            response = self.session.get(url, params=params, stream=True)
            # Every attempt, retries included, so that the pacer sees each 429.
            self.pacer.observe(response.status_code)
            fetched = read_within_budget(response, body_budget)
        except BaseException as error:
            log_attempt(url, params, response, started, error)
            raise
        log_attempt(url, params, response, started)
        return fetched

    def _make_retrying(self, policy: RetryPolicy) -> Retrying:
        limits = stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_request_seconds)
        unreachable = cannot_connect(CONNECT_ATTEMPTS)

        def stop(retry_state: RetryCallState) -> bool:
            return limits(retry_state) or self.retry_budget.exhausted(retry_state) or unreachable(retry_state)

        return Retrying(
            before=lambda _: self.pacer.wait(),
            wait=RetryAfterWait(multiplier=policy.backoff_factor, max=policy.max_retry_delay)
            + wait_random(0, policy.backoff_factor),
            retry=_is_retried,
            stop=stop,
            before_sleep=self._before_sleep,
            reraise=True,
            retry_error_callback=_last_answer,
        )

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        release_dropped_response(retry_state)
        self.retry_budget.spend(retry_state.attempt_number, _problem(retry_state))


def log_attempt(
    url: str,
    params: dict[str, Any],
    response: Response | None,
    started: float,
    error: BaseException | None = None,
) -> None:
    """One line per attempt (the CLI's --verbose): path and query as sent, status, time.

    Never the headers: they carry the key.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    sent = response.request if response is not None else requests.Request("GET", url, params=params).prepare()
    # Until the headers came (requests' own measure): a body may then wait for the decode budget.
    seconds = response.elapsed.total_seconds() if response is not None else time.monotonic() - started
    took = f"{seconds * 1000:.0f} ms"
    answer = f"{response.status_code} in {took}" if response is not None else f"no answer after {took}"
    if error is not None:
        answer += f", failed: {type(error).__name__}: {error}"
    elif response is not None:
        answer += f", {len(response.content)} bytes"
    logger.info("GET %s: %s", sent.path_url, answer)


def _problem(retry_state: RetryCallState) -> object:
    """Why the attempt is retried: its failure, or its status."""
    fetched = _fetched(retry_state)
    if fetched is not None:
        return f"HTTP {fetched.response.status_code}"
    outcome = retry_state.outcome
    return outcome.exception() if outcome is not None else None
