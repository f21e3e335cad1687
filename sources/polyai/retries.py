"""Retries and pacing of API requests, built from dlt's request helpers and tenacity.

dlt's `Client` retries 429, 5xx, timeouts and resets with exponential backoff and honours
`Retry-After`; it has no jitter (parallel windows would retry in lock-step) and no budget
across a run, which is what this adds. Its predicates and its `Session` are reused as they are.
The session also waits for room in the run's decode budget before it reads a body
(`reading_bodies_within_budget`), so that a retried response gives its room back.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests
import urllib3
from dlt.sources.helpers.requests.retry import (
    DEFAULT_RETRY_EXCEPTIONS,
    DEFAULT_RETRY_STATUS,
    retry_if_predicate,
    retry_if_status,
    wait_exponential_retry_after,
)
from dlt.sources.helpers.requests.session import Session
from requests import Response
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_any,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random,
)

logger = logging.getLogger(__name__)


# A refused connection or a host name that does not resolve gets this many attempts: a
# restart or a resolver hiccup passes within their backoff (about 1 + 2 s by default), while
# an API that is not there (a wrong base_url or region, no route out) fails in seconds instead
# of after the whole retry policy. Timeouts, resets, 5xx and 429 keep that whole policy.
CONNECT_ATTEMPTS = 3
# Media types of web pages: what proxies, captive portals and sign-in pages answer with.
WEB_PAGE_TYPES = ("text/html", "application/xhtml+xml")


def body_is_broken(response: Response | None, exception: BaseException | None) -> bool:
    """A 200 whose body is cut short is retried like a 5xx; a web page is not (the client refuses it).

    A cheap check (a JSON object starts with `{` and ends with `}`) so that pages are decoded
    once, later and one at a time; the client fetches again a body that still fails to parse.
    """
    if response is None or response.status_code != 200:
        return False
    body = response.content.strip()
    return not (body.startswith(b"{") and body.endswith(b"}")) and not is_web_page(response)


def is_web_page(response: Response) -> bool:
    """An HTML (or XML) document rather than JSON: it starts with `<` or says it is HTML.

    A JSON body cut short still starts with `{`; whatever its Content-Type says, that is JSON.
    """
    body = response.content.lstrip()
    if body.startswith(b"<"):
        return True
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return media_type in WEB_PAGE_TYPES and not body.startswith(b"{")


def connection_failure(error: BaseException | None) -> str | None:
    """Why no connection could be made to the host at all (refused, no such name), else None.

    requests raises ConnectionError for every transport failure; urllib3's reason behind it
    tells a host that is not there (NewConnectionError, NameResolutionError) from one that is
    slow (ConnectTimeoutError: requests' ConnectTimeout) or drops a connection it accepted
    (ProtocolError). Through a proxy that cannot be reached, the reason is the proxy's.
    """
    if not isinstance(error, requests.ConnectionError) or isinstance(error, requests.Timeout):
        return None
    reason: Any = error.args[0] if error.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError -> its cause
    behind_proxy = isinstance(reason, urllib3.exceptions.ProxyError)
    if behind_proxy:
        reason = reason.original_error
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        host = "the proxy's host name" if behind_proxy else "its host name"
        return f"{host} does not resolve (DNS)"
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        cause = reason.__cause__ or reason.__context__
        detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else "refused"
        return f"no connection could be made{' to the proxy' if behind_proxy else ''} ({detail})"
    return None


def cannot_connect(attempts: int) -> Callable[[RetryCallState], bool]:
    """A tenacity stop: after `attempts`, stop retrying a request that cannot connect at all."""

    def stop(retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        return (
            retry_state.attempt_number >= attempts
            and outcome is not None
            and outcome.failed
            and connection_failure(outcome.exception()) is not None
        )

    return stop


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


_RESERVATION = "polyai_reservation"


def reservation_of(response: Response) -> Reservation | None:
    reservation: Reservation | None = getattr(response, _RESERVATION, None)
    return reservation


def reading_bodies_within_budget(send: Callable[..., Response], session: Session) -> Callable[..., Response]:
    """`send` that reads a 200's body only once it fits in `session.body_budget`, if it has one.

    With several connections and a fast API, bodies arrive faster than the caller shapes
    pages: read at once, each waiting connection held a raw body (~5 MB per page of 1000
    conversations). Waiting before the read leaves them in the socket: extracting the first
    50k conversations of a 100k backfill with 8 connections peaked at ~262 MB instead of
    ~299 MB. The response carries its `Reservation`; whoever drops the response releases it.
    """

    def send_then_read(request: Any, **kwargs: Any) -> Response:
        streamed = kwargs.pop("stream", False)
        response = send(request, stream=True, **kwargs)
        budget: BodyBudget | None = getattr(session, "body_budget", None)
        if streamed:
            return response
        if budget is None or response.status_code != 200:
            response.content  # noqa: B018 - read now, as requests does when not streaming
            return response
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
        setattr(response, _RESERVATION, reservation)
        return response

    return send_then_read


def declared_body_size(response: Response) -> int:
    """The body's size from its headers, or 0 when they do not tell it (chunked or compressed)."""
    if response.headers.get("Content-Encoding", "identity") != "identity":
        return 0
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else 0


def release_dropped_response(retry_state: RetryCallState) -> None:
    """A response about to be retried gives back the room its body held."""
    outcome = retry_state.outcome
    if outcome is not None and not outcome.failed:
        reservation = reservation_of(outcome.result())
        if reservation is not None:
            reservation.release()


class RequestPacer:
    """Slows every request down after a 429 and speeds back up while answers are good.

    Shared by all threads of a run, so that parallel windows back off together.
    """

    def __init__(self, max_delay: float = 5.0) -> None:
        self.delay = 0.0
        self.max_delay = max_delay
        self.rate_limited = 0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            delay = self.delay
        if delay:
            time.sleep(delay * random.uniform(0.5, 1.0))

    def observe(self, status: int | None) -> None:
        with self._lock:
            if status == 429:
                self.rate_limited += 1
                self.delay = min(self.max_delay, max(0.05, self.delay * 2))
            elif status is not None and status < 400:
                self.delay = self.delay * 0.8 if self.delay > 0.01 else 0.0


class RetryBudget:
    """Total retries allowed in one run: a broken API fails the run instead of retrying forever."""

    def __init__(self, retries: int) -> None:
        self.left = retries
        self.used = 0
        self._lock = threading.Lock()

    def spend(self, retry_state: RetryCallState) -> None:
        with self._lock:
            self.left -= 1
            self.used += 1
        outcome = retry_state.outcome
        problem: Any = outcome.exception() if outcome and outcome.failed else None
        if problem is None and outcome is not None:
            problem = f"HTTP {getattr(outcome.result(), 'status_code', '?')}"
        logger.info("retrying a request (attempt %d): %s", retry_state.attempt_number, problem)

    def exhausted(self, retry_state: RetryCallState) -> bool:
        return self.left <= 0


def make_retrying(
    *,
    max_attempts: int,
    backoff_factor: float,
    max_retry_delay: float,
    max_request_seconds: float,
    budget: RetryBudget,
    pacer: RequestPacer,
) -> Retrying:
    return Retrying(
        before=lambda _: pacer.wait(),
        wait=wait_exponential_retry_after(multiplier=backoff_factor, max=max_retry_delay)
        + wait_random(0, backoff_factor),
        retry=retry_any(
            retry_if_status(DEFAULT_RETRY_STATUS),
            retry_if_exception_type(DEFAULT_RETRY_EXCEPTIONS),
            retry_if_predicate(body_is_broken),
        ),
        stop=stop_after_attempt(max_attempts)
        | stop_after_delay(max_request_seconds)
        | budget.exhausted
        | cannot_connect(CONNECT_ATTEMPTS),
        before_sleep=lambda state: (release_dropped_response(state), budget.spend(state)),
        reraise=True,
        # After the last attempt the last response is returned and reported by the client.
        retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
    )


def make_session(
    headers: dict[str, str],
    timeout: tuple[float, float],
    retrying_factory: Callable[[], Retrying],
    pacer: RequestPacer,
    pool_size: int,
) -> Session:
    session = Session(timeout=timeout, raise_for_status=False)
    session.headers.update(headers)
    # Called for every attempt, retries included, so the pacer sees each 429.
    session.hooks["response"].append(lambda response, *args, **kwargs: pacer.observe(response.status_code))
    adapter = HTTPAdapter(pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.send = retrying_factory().wraps(  # type: ignore[method-assign]
        reading_bodies_within_budget(session.send, session)
    )
    return session
