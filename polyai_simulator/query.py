"""What a list request asks for: query-string parsing, validation, and the opaque cursor.

Errors are raised as `ApiError` and become the documented error envelope.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from .generator import to_us

ENVIRONMENTS = ("sandbox", "pre-release", "live")
# v3 retrieval modes (search, sampling) are not loading tools and are not simulated; they are
# refused loudly on every version rather than silently ignored, so a client that sends one finds out.
SEARCH_PARAMS = ("query_type", "query", "turn_type", "sample")
FLAGS = ("include_latency", "include_context_state", "include_turn_metadata")
DEFAULT_LIMIT = 5  # the API introduction's default: a client that omits `limit` gets tiny pages


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Query:
    """The filters; two requests with equal queries page through the same result set."""

    start_us: int | None = None  # inclusive, on started_at
    end_us: int | None = None  # exclusive
    client_env: str = "live"
    channels: tuple[str, ...] = ()
    variant_id: str | None = None
    variant_name: str | None = None
    in_progress: bool | None = None

    def fingerprint(self) -> str:
        return hashlib.blake2b(repr(self).encode(), digest_size=6).hexdigest()


@dataclass(frozen=True, slots=True)
class PageRequest:
    version: str
    query: Query = field(default_factory=Query)
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    after_id: str | None = None  # from a valid cursor; only set where cursors are served
    include_latency: bool = False
    include_context_state: bool = False
    include_turn_metadata: bool = False


def uses_cursor(version: str, v2_cursor: bool) -> bool:
    return version == "v3" or (version == "v2" and v2_cursor)


def encode_cursor(last_id: str, query: Query) -> str:
    """URL-safe base64 of the last key served and of the query it belongs to."""
    raw = orjson.dumps({"after": last_id, "q": query.fingerprint()})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, query: Query) -> str:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, fingerprint = data["after"], data["q"]
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise ApiError(400, "INVALID_CURSOR", "The cursor is malformed.") from None
    if not isinstance(after, str) or not isinstance(fingerprint, str):
        raise ApiError(400, "INVALID_CURSOR", "The cursor is malformed.")
    # A cursor is a position in one result set: reusing it with other filters is a client bug.
    if fingerprint != query.fingerprint():
        raise ApiError(400, "INVALID_CURSOR", "The cursor does not belong to these query parameters.")
    return after


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _invalid(name: str, why: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER", f"Invalid value for `{name}`: {why}.")


def _boolean(params: dict[str, list[str]], name: str) -> bool | None:
    value = _one(params, name)
    if value is None:
        return None
    if value.lower() not in ("true", "false"):
        raise _invalid(name, "expected true or false")
    return value.lower() == "true"


def _integer(params: dict[str, list[str]], name: str, default: int, low: int, high: int | None) -> int:
    value = _one(params, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _invalid(name, "expected an integer") from None
    if number < low or (high is not None and number > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise _invalid(name, f"must be {bounds}")
    return number


def parse_time(text: str) -> datetime:
    """ISO 8601 with `Z` or an offset; a naive time is taken as UTC."""
    value = datetime.fromisoformat(text.strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _time(params: dict[str, list[str]], name: str) -> int | None:
    value = _one(params, name)
    if value is None:
        return None
    try:
        return to_us(parse_time(value))
    except ValueError:
        raise _invalid(name, f"{value!r} is not an ISO 8601 date-time") from None


def parse_request(version: str, params: dict[str, list[str]], max_limit: int, v2_cursor: bool) -> PageRequest:
    """The request as the simulator understands it, or ApiError(400) naming the parameter.

    v1 ignores the parameters it never had (`channel`, `cursor`, `include_latency`).
    """
    for name in SEARCH_PARAMS:
        if name in params:
            raise ApiError(400, "UNSUPPORTED_PARAMETER", f"`{name}` is not supported by the simulator.")
    client_env = _one(params, "client_env") or "live"
    if client_env not in ENVIRONMENTS:
        raise _invalid("client_env", "expected sandbox, pre-release or live")
    variant_id = _one(params, "variant_id") or None
    variant_name = _one(params, "variant_name") or None
    if variant_id and variant_name:
        raise ApiError(400, "INVALID_PARAMETER", "Specify only one of `variant_id` or `variant_name`.")
    start_us, end_us = _time(params, "start_time"), _time(params, "end_time")
    if start_us is not None and end_us is not None and start_us > end_us:
        raise _invalid("end_time", "must not be before start_time")
    channels = tuple(sorted(set(params.get("channel", ())))) if version != "v1" else ()
    query = Query(
        start_us=start_us,
        end_us=end_us,
        client_env=client_env,
        channels=channels,
        variant_id=variant_id,
        variant_name=variant_name,
        in_progress=_boolean(params, "in_progress"),
    )
    flags = {name: bool(_boolean(params, name)) for name in FLAGS}
    if version == "v1":
        flags["include_latency"] = False
    token = _one(params, "cursor")
    after_id = decode_cursor(token, query) if token and uses_cursor(version, v2_cursor) else None
    return PageRequest(
        version=version,
        query=query,
        limit=_integer(params, "limit", DEFAULT_LIMIT, 1, max_limit),
        offset=_integer(params, "offset", 0, 0, None),
        after_id=after_id,
        **flags,
    )
