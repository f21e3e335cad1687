"""What is retried, how long to wait, and how much: the retry policy of API requests.

dlt's `Client` retries 429, 5xx, timeouts and resets with exponential backoff and honours
`Retry-After`; it has no jitter (parallel windows would retry in lock-step) and no budget
across a run, which is what this adds. Its lists of statuses and exceptions to retry are
reused as they are; the transport (transport.py) applies all this with tenacity.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from email.utils import mktime_tz, parsedate_tz
from typing import Any

import requests
import urllib3
from dlt.sources.helpers.requests.retry import DEFAULT_RETRY_EXCEPTIONS, DEFAULT_RETRY_STATUS
from requests import Response
from tenacity import RetryCallState

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


def is_retried(response: Response | None, error: BaseException | None) -> bool:
    """An answer or a failure that may go away when asked again: 429, 5xx, a broken body, a reset."""
    if error is not None:
        return isinstance(error, DEFAULT_RETRY_EXCEPTIONS)
    return response is not None and (
        response.status_code in DEFAULT_RETRY_STATUS or body_is_broken(response, None)
    )


def retry_after(response: Response) -> float | None:
    """The seconds the answer's `Retry-After` asks to wait (RFC 9110: seconds or a date), if any.

    Read as dlt's `wait_exponential_retry_after` (and urllib3) read it.
    """
    header = response.headers.get("Retry-After")
    if not header:
        return None
    seconds: float
    if re.match(r"^\s*[0-9]+\s*$", header):
        seconds = int(header)
    else:
        date = parsedate_tz(header)
        if date is None:
            return None
        seconds = mktime_tz(date) - time.time()
    return seconds if seconds > 0 else None


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

    def spend(self, attempt: int, problem: object) -> None:
        with self._lock:
            self.left -= 1
            self.used += 1
        logger.info("retrying a request (attempt %d): %s", attempt, problem)

    def exhausted(self, retry_state: RetryCallState) -> bool:
        return self.left <= 0
