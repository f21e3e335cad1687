"""HTTP client of the PolyAI Conversations list endpoint: one window's pages, decoding, errors."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import requests
from requests import Response

from ..config import ConfigurationError, ConnectorSettings
from ..planning import Window, first_sightings
from ..redaction import redact, redact_optional
from ..settings import API_KEY_HEADER, CORRELATION_HEADER, REGION_BASE_URL, REGIONS
from ..shaping.text_repair import TextRepair
from ..shaping.typed_pages import DecodedPage, decode_typed_page
from .paging import PagingProgress
from .retries import CONNECT_ATTEMPTS, connection_failure, is_web_page
from .transport import BodyBudget, Fetched, RetryPolicy, Transport, server_time

logger = logging.getLogger(__name__)

# What to check for each status that will not get better by retrying.
ERROR_HINTS = {
    400: "check the filters (client_env, channel, variant_id/variant_name, limit)",
    401: "check api_key: it is missing or not accepted",
    403: "check api_key: v3 keys are scoped to one project and one region (project_id, region)",
    404: "check account_id, project_id, region and api_version",
}


class PolyAIAPIError(Exception):
    """The API refused a request; the message names what to check, never a secret.

    The server's own words (message, correlation id) are redacted (redaction): a server may
    quote the key back, and this message reaches the terminal, logs and dlt's trace.
    """

    def __init__(
        self,
        status: int,
        url: str,
        error_code: str | None,
        error_message: str | None,
        correlation_id: str | None,
        secrets: Sequence[str | None] = (),
    ) -> None:
        self.status = status
        self.url = redact(url, secrets)
        self.error_code = redact_optional(error_code, secrets)
        self.error_message = redact_optional(error_message, secrets)
        self.correlation_id = redact_optional(correlation_id, secrets)
        hint = ERROR_HINTS.get(status, "the API failed after retries; try again later")
        super().__init__(
            f"PolyAI API answered {status} {self.error_code or ''} to GET {self.url}: "
            f"{self.error_message or 'no error message'} "
            f"(correlation id {self.correlation_id or 'none'}); {hint}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its (already masked) fields: the default would call __init__ with the message.
        fields = (self.status, self.url, self.error_code, self.error_message, self.correlation_id)
        return type(self), fields


class InvalidResponseError(Exception):
    """A 200 whose body is not the JSON the API documents, after retries (message redacted)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class PagingStalledError(InvalidResponseError):
    """The API pages without moving on: a server fault, which running again does not mend.

    An expected error (the CLI prints it on one line and exits 2, as for a refused key):
    exit 1 there means "run again, nothing was lost", which would not help here.
    """


class NotTheAPIError(ConfigurationError):
    """A 200 that is a web page, not JSON: base_url leads to a proxy or sign-in page."""


class APIUnreachableError(ConfigurationError):
    """No connection could be made to base_url at all (refused, no such host name)."""


def base_url_setting(base_url: str) -> str:
    """The setting that chose `base_url`: `region` when it is a region's URL, else `base_url`."""
    return "region" if base_url in {REGION_BASE_URL.format(region=r) for r in REGIONS} else "base_url"


BASE_URL_EXAMPLE = (
    f'region = "us-1" (for {REGION_BASE_URL.format(region="us-1")}), or base_url = "https://..."'
)


@dataclass
class Page:
    # Dicts, or typed records (typed_pages.TypedRecord) that read like them.
    conversations: list[Any]
    window: Window
    # Size of the response body it was decoded from (concurrent_windows.DecodeBudget).
    body_bytes: int = 0
    # Which of the run's projects it belongs to (concurrent_windows.RunQueue).
    project: int = 0


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PolyAIClient:
    def __init__(self, settings: ConnectorSettings) -> None:
        self.settings = settings
        self.url = (
            f"{settings.base_url.rstrip('/')}/{settings.api_version}/"
            f"{settings.account_id}/{settings.project_id}/conversations"
        )
        self.transport = Transport(
            headers={API_KEY_HEADER: settings.api_key},
            timeout=(settings.connect_timeout, settings.read_timeout),
            policy=RetryPolicy(
                max_attempts=settings.max_attempts,
                backoff_factor=settings.backoff_factor,
                max_retry_delay=settings.max_retry_delay,
                max_request_seconds=settings.max_request_seconds,
            ),
            retries=settings.retry_budget,
            pool_size=max(4, settings.concurrency * 2),
        )
        self._count_lock = threading.Lock()
        self.requests_made = 0
        # The API's own clock (its `Date` header) at the first answer of the run.
        self.earliest_server_time: datetime | None = None
        # What the run's destination keeps; set by the source once it knows the destination.
        self.text_repair = TextRepair()

    @property
    def retries(self) -> int:
        """Attempts of this client's requests that were retries (transport's retry budget)."""
        return self.transport.retry_budget.used

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

    def iter_pages(
        self,
        window: Window,
        decode_budget: BodyBudget | None = None,
        decoder: msgspec.json.Decoder[Any] | None = None,
    ) -> Iterator[Page]:
        """Every page of one window: keyset `cursor` where the API gives one, else `next_offset`.

        Offset pages are positions in a result set that moves while conversations are
        written, so each offset page re-reads a few rows of the previous one. Keyset pages do
        not shift, but a cache or a retried request may serve one again, even after the page
        that followed it. Either way a conversation is sent once per window, whatever the
        paging: the window keeps the ids it has read (the strings its records came with;
        they live as long as the window, not the run), and the run tells the destination
        that its rows need no de-duplication. A window whose paging does not move on
        (paging.PagingProgress) fails with PagingStalledError instead of asking again.

        With `decode_budget`, a page's body is read and decoded only once it fits in the
        budget; the consumer gives the bytes back when done with the page. Decoded pages are
        a few times larger than their bodies: this keeps memory flat however many windows are
        fetched at once. With `decoder`, pages that fit it come as typed records
        (typed_pages), the others as dicts.
        """
        params = self.window_params(window)
        seen: set[str] = set()
        progress = PagingProgress()
        while True:
            progress.asking(params.get("cursor"))
            page, cursor, next_offset = self._next_page(params, window, decode_budget, decoder)
            received = len(page.conversations)
            page.conversations = first_sightings(page.conversations, seen)
            if cursor or next_offset is not None:
                offset = int(params.get("offset", 0))
                stall = progress.stall(len(page.conversations), received, cursor, next_offset, offset)
                if stall is not None and progress.stuck:
                    if decode_budget is not None:
                        decode_budget.release(page.body_bytes)
                    raise self._stalled(window, stall, progress.stalled)
                if stall is not None:
                    logger.info("window %s: the API sent %s; asking again", describe(window), stall)
            yield page
            # A suspended generator keeps its locals: without this, every worker would hold
            # its last decoded page, the largest object of a run, while it fetches the next.
            del page
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

    def _stalled(self, window: Window, stall: str, pages: int) -> PagingStalledError:
        return PagingStalledError(
            f"PolyAI API does not move on while paging GET {self.url} for the window "
            f"{describe(window)}: {pages} pages in a row brought {stall}. This load stopped with "
            "nothing of it loaded, and the cursor stays where the last load left it; running "
            "again will not help while the API pages this way: report it to PolyAI support"
        )

    def _next_page(
        self,
        params: dict[str, Any],
        window: Window,
        decode_budget: BodyBudget | None,
        decoder: msgspec.json.Decoder[Any] | None,
    ) -> tuple[Page, str | None, int | None]:
        """One page of `window` and where the next one starts; the decoded body is not kept."""
        body, body_bytes = self._get(params, decode_budget, decoder)
        return Page(body.conversations, window, body_bytes), body.cursor, body.next_offset

    def _get(
        self,
        params: dict[str, Any],
        decode_budget: BodyBudget | None,
        decoder: msgspec.json.Decoder[Any] | None,
    ) -> tuple[DecodedPage, int]:
        """One page, decoded, and its size; a body that passed the retry check but does not
        parse is fetched again."""
        for attempt in range(1, self.settings.max_attempts + 1):
            fetched = self._request(params, decode_budget)
            response = fetched.response
            if is_web_page(response):
                fetched.release()
                raise self._web_page(response)
            body = decode_page(response.content, decoder, self.text_repair)
            if body is not None:
                # The caller gives the reserved bytes back once done with the page.
                return body, fetched.body_bytes
            fetched.release()
            logger.info("page body is not a JSON object (attempt %d); fetching it again", attempt)
        raise InvalidResponseError(
            f"PolyAI API sent a body that is not a JSON object to GET {self.url} "
            f"{self.settings.max_attempts} times "
            f"(correlation id {response.headers.get(CORRELATION_HEADER, 'none')})"
        )

    def _request(self, params: dict[str, Any], decode_budget: BodyBudget | None = None) -> Fetched:
        """One GET, retried; a 200's body is read once it fits in `decode_budget` (transport)."""
        with self._count_lock:
            self.requests_made += 1
        started = time.monotonic()
        try:
            fetched = self.transport.get(self.url, params, decode_budget)
        except requests.ConnectionError as error:
            why = connection_failure(error)
            if why is None:
                raise
            raise self._unreachable(why, time.monotonic() - started) from error
        self._observe_server_clock(fetched.response)
        if fetched.response.status_code == 200:
            return fetched
        raise self._error(fetched.response)

    def _observe_server_clock(self, response: Response) -> None:
        served_at = server_time(response)
        if served_at is None:
            return
        with self._count_lock:
            if self.earliest_server_time is None or served_at < self.earliest_server_time:
                self.earliest_server_time = served_at

    def _unreachable(self, why: str, seconds: float) -> APIUnreachableError:
        base_url = self.settings.base_url
        attempts = min(CONNECT_ATTEMPTS, self.settings.max_attempts)
        return APIUnreachableError(
            base_url_setting(base_url),
            f"leads to {base_url}, which cannot be reached: {why} ({attempts} attempts in "
            f"{seconds:.1f} s). Check it, and that this machine can reach it (network, DNS, "
            "proxy settings such as HTTPS_PROXY, firewall)",
            BASE_URL_EXAMPLE,
        )

    def _web_page(self, response: Response) -> NotTheAPIError:
        content_type = response.headers.get("Content-Type") or "none"
        return NotTheAPIError(
            base_url_setting(self.settings.base_url),
            f"leads to {self.settings.base_url}, which answered GET {self.url} with a web page "
            f"(status 200, Content-Type {content_type}), not the API's JSON: it looks like a "
            "proxy's or a sign-in page. Check it, and any proxy between this machine and the API",
            BASE_URL_EXAMPLE,
        )

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
            error_code=_text(envelope.get("error_code")),
            error_message=_text(envelope.get("error_message") or envelope.get("error")),
            correlation_id=response.headers.get(CORRELATION_HEADER) or _text(envelope.get("error_id")),
            secrets=(self.settings.api_key,),
        )


def _text(value: Any) -> str | None:
    """An envelope field as text: a server may send any JSON there."""
    return None if value is None else str(value)


def decode_page(
    content: bytes, decoder: msgspec.json.Decoder[Any] | None, repair: TextRepair | None = None
) -> DecodedPage | None:
    """Typed records where the page fits `decoder`, else dicts; None for a body that is no JSON object.

    A lone surrogate escape (and NUL, where `repair` says the destination cannot hold it) is
    replaced by U+FFFD and counted in `repair` (text_repair) instead of failing the page:
    one odd character must not block every later run. A body still broken after that (cut
    short) is None, and fetched again.
    """
    repair = repair or TextRepair()
    page = _decode(content, decoder)
    if not repair.needs_repair(content, page is not None):
        return page
    fixed = repair.repair(content)
    if fixed is None:
        return page
    repaired = _decode(fixed, decoder)
    if repaired is not None:
        repair.record(content)
    return repaired


def _decode(content: bytes, decoder: msgspec.json.Decoder[Any] | None) -> DecodedPage | None:
    if decoder is not None:
        typed = decode_typed_page(decoder, content)
        if typed is not None:
            return typed
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    return DecodedPage(body.get("conversations") or [], body.get("cursor"), body.get("next_offset"))


def describe(window: Window) -> str:
    finished = ", in_progress=false" if window.finished_only else ""
    return f"start_time={format_time(window.start)} end_time={format_time(window.end)}{finished}"


def next_page_offset(current: int, next_offset: int, limit: int) -> int:
    """The offset to ask for next: a tenth of a page back, and always forward."""
    return max(current + 1, next_offset - limit // 10)
