"""HTTP client of the PolyAI Conversations list endpoint: paging, retries, errors."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from dlt.sources.helpers.requests.session import Session
from requests import Response

from .config import ConnectorSettings
from .retries import RequestPacer, RetryBudget, body_is_broken, make_retrying, make_session
from .settings import API_KEY_HEADER, CORRELATION_HEADER
from .windows import Window

logger = logging.getLogger(__name__)

# What to check for each status that will not get better by retrying.
ERROR_HINTS = {
    400: "check the filters (client_env, channel, variant_id/variant_name, limit)",
    401: "check api_key: it is missing or not accepted",
    403: "check api_key: v3 keys are scoped to one project and one region (project_id, region)",
    404: "check account_id, project_id, region and api_version",
}


class PolyAIAPIError(Exception):
    """The API refused a request; the message names what to check, never the key."""

    def __init__(
        self,
        status: int,
        url: str,
        error_code: str | None,
        error_message: str | None,
        correlation_id: str | None,
    ) -> None:
        self.status = status
        self.url = url
        self.error_code = error_code
        self.error_message = error_message
        self.correlation_id = correlation_id
        hint = ERROR_HINTS.get(status, "the API failed after retries; try again later")
        super().__init__(
            f"PolyAI API answered {status} {error_code or ''} to GET {url}: "
            f"{error_message or 'no error message'} "
            f"(correlation id {correlation_id or 'none'}); {hint}"
        )


class InvalidResponseError(Exception):
    """A 200 whose body is not the JSON the API documents, after retries."""


@dataclass
class Page:
    conversations: list[dict[str, Any]]
    window: Window


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PolyAIClient:
    def __init__(self, settings: ConnectorSettings) -> None:
        self.settings = settings
        self.url = (
            f"{settings.base_url.rstrip('/')}/{settings.api_version}/"
            f"{settings.account_id}/{settings.project_id}/conversations"
        )
        self.pacer = RequestPacer()
        self.retry_budget = RetryBudget(settings.retry_budget)
        self._local = threading.local()
        self._count_lock = threading.Lock()
        self.requests_made = 0

    @property
    def _session(self) -> Session:
        """One session per thread: requests' sessions are not meant to be shared between threads."""
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            settings = self.settings
            session = self._local.session = make_session(
                headers={API_KEY_HEADER: settings.api_key},
                timeout=(settings.connect_timeout, settings.read_timeout),
                retrying_factory=lambda: make_retrying(
                    max_attempts=settings.max_attempts,
                    backoff_factor=settings.backoff_factor,
                    max_retry_delay=settings.max_retry_delay,
                    max_request_seconds=settings.max_request_seconds,
                    budget=self.retry_budget,
                    pacer=self.pacer,
                ),
                pacer=self.pacer,
                pool_size=max(4, settings.concurrency * 2),
            )
        return session

    def base_params(self) -> dict[str, Any]:
        settings = self.settings
        params: dict[str, Any] = {"client_env": settings.client_env, "limit": settings.limit}
        if settings.channels:
            params["channel"] = list(settings.channels)
        if settings.variant_id:
            params["variant_id"] = settings.variant_id
        if settings.variant_name:
            params["variant_name"] = settings.variant_name
        for flag in ("include_latency", "include_context_state", "include_turn_metadata"):
            if getattr(settings, flag):
                params[flag] = "true"
        return params

    def window_params(self, window: Window) -> dict[str, Any]:
        params = self.base_params()
        params["start_time"] = format_time(window.start)
        params["end_time"] = format_time(window.end)
        if window.finished_only:
            params["in_progress"] = "false"
        return params

    def iter_pages(self, window: Window) -> Iterator[Page]:
        """Every page of one window: keyset `cursor` where the API gives one, else `next_offset`.

        Offset pages are positions in a result set that moves while conversations are
        written, so each offset page re-reads a few rows of the previous one and repeats are
        dropped: a shift in either direction neither skips nor doubles a conversation.
        """
        params = self.window_params(window)
        offset_paging = False
        seen: set[str] = set()
        while True:
            body = self._get(params)
            conversations = body.get("conversations") or []
            cursor = body.get("cursor")
            next_offset = body.get("next_offset")
            offset_paging = offset_paging or (not cursor and next_offset is not None)
            if offset_paging:
                conversations = [c for c in conversations if c["id"] not in seen]
                seen.update(c["id"] for c in conversations)
            yield Page(conversations, window)
            if cursor:
                params.pop("offset", None)
                params["cursor"] = cursor
            elif next_offset is not None:
                params.pop("cursor", None)
                params["offset"] = next_page_offset(
                    int(params.get("offset", 0)), next_offset, self.settings.limit
                )
            else:
                return

    def _get(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._count_lock:
            self.requests_made += 1
        response = self._session.get(self.url, params=params)
        if response.status_code == 200:
            body = getattr(response, "parsed_body", None)
            if body is None and not body_is_broken(response, None):
                body = response.parsed_body  # type: ignore[attr-defined]
            if not isinstance(body, dict):
                raise InvalidResponseError(
                    f"PolyAI API sent a body that is not a JSON object to GET {self.url} "
                    f"(correlation id {response.headers.get(CORRELATION_HEADER, 'none')})"
                )
            return body
        raise self._error(response)

    def _error(self, response: Response) -> PolyAIAPIError:
        try:
            envelope = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            envelope = {}
        if not isinstance(envelope, dict):
            envelope = {}
        return PolyAIAPIError(
            status=response.status_code,
            url=self.url,
            error_code=envelope.get("error_code"),
            error_message=envelope.get("error_message") or envelope.get("error"),
            correlation_id=response.headers.get(CORRELATION_HEADER) or envelope.get("error_id"),
        )


def next_page_offset(current: int, next_offset: int, limit: int) -> int:
    """The offset to ask for next: a tenth of a page back, and always forward."""
    return max(current + 1, next_offset - limit // 10)


_DONE = object()


def iter_windows_concurrently(
    client: PolyAIClient, windows: list[Window], concurrency: int
) -> Iterator[Page]:
    """Pages of all windows, fetched by up to `concurrency` threads, yielded as they arrive.

    Pages pass through a small bounded queue, so memory stays at a few pages whatever the
    size of the run; the caller's thread does everything else (state, shaping).
    """
    if concurrency <= 1 or len(windows) <= 1:
        for window in windows:
            yield from client.iter_pages(window)
        return
    pages: queue.Queue[Any] = queue.Queue(maxsize=concurrency * 2)
    todo: queue.Queue[Window] = queue.Queue()
    for window in windows:
        todo.put(window)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            while not stop.is_set():
                try:
                    window = todo.get_nowait()
                except queue.Empty:
                    return
                for page in client.iter_pages(window):
                    if not put(page):
                        return
        except BaseException as error:
            put(error)
        finally:
            put(_DONE)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(min(concurrency, len(windows)))]
    for worker in workers:
        worker.start()
    running = len(workers)
    try:
        while running:
            item = pages.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=5)
