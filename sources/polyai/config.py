"""The connector's settings, checked before the first request: each error names its setting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

from .records import parse_timestamp
from .settings import (
    API_VERSIONS,
    CLIENT_ENVS,
    DEFAULT_START_DAYS_AGO,
    MAX_LIMIT,
    REGION_BASE_URL,
    REGIONS,
)


class ConfigurationError(ValueError):
    """A setting is missing or wrong; the message names it and gives a valid example."""

    def __init__(self, setting: str, problem: str, example: str) -> None:
        self.setting = setting
        super().__init__(
            f"Setting `{setting}` {problem}. Example: {example} "
            f"(in .dlt/config.toml [sources.polyai], .dlt/secrets.toml, "
            f"or the environment variable SOURCES__POLYAI__{setting.upper()})"
        )


@dataclass(frozen=True)
class ConnectorSettings:
    api_key: str
    account_id: str
    project_id: str
    base_url: str
    api_version: str
    client_env: str
    channels: tuple[str, ...]
    variant_id: str | None
    variant_name: str | None
    include_latency: bool
    include_context_state: bool
    include_turn_metadata: bool
    start_date: datetime
    limit: int
    lookback: timedelta
    max_pending_age: timedelta
    window_span: timedelta | None
    connect_timeout: float
    read_timeout: float
    max_attempts: int
    backoff_factor: float
    max_retry_delay: float
    max_request_seconds: float
    retry_budget: int
    concurrency: int
    # None: one load reads everything up to now.
    max_conversations_per_load: int | None = None

    def __repr__(self) -> str:
        # Keeps the key out of logs, tracebacks and dlt's trace.
        return f"ConnectorSettings(account_id={self.account_id!r}, project_id={self.project_id!r})"


def _require(setting: str, value: str | None, example: str) -> str:
    if value is None or not str(value).strip():
        raise ConfigurationError(setting, "is missing", example)
    return str(value).strip()


def _non_negative(setting: str, value: float, example: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(setting, f"is not a number ({value!r})", example) from None
    if number < 0:
        raise ConfigurationError(setting, f"must not be negative ({value!r})", example)
    return number


def _at_least_one(setting: str, value: int, example: str) -> int:
    number = _non_negative(setting, value, example)
    if number < 1 or number != int(number):
        raise ConfigurationError(setting, f"must be a whole number of at least 1 ({value!r})", example)
    return int(number)


def _choice(setting: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigurationError(
            setting, f"is {value!r}, not one of {', '.join(choices)}", f'{setting} = "{choices[-1]}"'
        )
    return value


def resolve_base_url(region: str, base_url: str | None) -> str:
    if base_url:
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigurationError(
                "base_url", f"is not an http(s) URL ({base_url!r})", 'base_url = "https://proxy.example.com"'
            )
        return base_url.rstrip("/")
    region = _choice("region", region, REGIONS)
    return REGION_BASE_URL.format(region=region)


def parse_start_date(value: str | datetime | None, now: datetime) -> datetime:
    if value is None or value == "":
        return now - timedelta(days=DEFAULT_START_DAYS_AGO)
    try:
        start = parse_timestamp(value)
    except (ValueError, TypeError, OverflowError):
        start = None
    if start is None:
        raise ConfigurationError(
            "start_date", f"is not an ISO 8601 date-time ({value!r})", 'start_date = "2026-01-01T00:00:00Z"'
        )
    if start > now:
        raise ConfigurationError(
            "start_date", f"is in the future ({value!r})", 'start_date = "2026-01-01T00:00:00Z"'
        )
    return start


def parse_channels(channel: str | Sequence[str] | None) -> tuple[str, ...]:
    if channel is None or channel == "":
        return ()
    if isinstance(channel, str):
        return tuple(part.strip() for part in channel.split(",") if part.strip())
    return tuple(str(part) for part in channel)


def build_settings(
    *,
    api_key: str | None,
    account_id: str | None,
    project_id: str | None,
    region: str,
    base_url: str | None,
    api_version: str,
    client_env: str,
    channel: str | Sequence[str] | None,
    variant_id: str | None,
    variant_name: str | None,
    include_latency: bool,
    include_context_state: bool,
    include_turn_metadata: bool,
    start_date: str | datetime | None,
    limit: int,
    lookback_minutes: float,
    max_pending_hours: float,
    window_hours: float | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
    backoff_factor: float,
    max_retry_delay: float,
    max_request_seconds: float,
    retry_budget: int,
    concurrency: int,
    max_conversations_per_load: int | None = None,
    now: datetime | None = None,
) -> ConnectorSettings:
    """Check every setting and turn them into the values the connector runs on."""
    now = now or datetime.now(UTC)
    if variant_id and variant_name:
        raise ConfigurationError(
            "variant_name",
            "cannot be set together with `variant_id`; set one of them",
            'variant_id = "v-123"',
        )
    try:
        page_limit = int(limit)
    except (TypeError, ValueError):
        page_limit = -1
    if not 1 <= page_limit <= MAX_LIMIT:
        raise ConfigurationError("limit", f"must be between 1 and {MAX_LIMIT} ({limit!r})", "limit = 1000")
    window = _non_negative("window_hours", window_hours or 0, "window_hours = 24")
    attempts = int(_non_negative("max_attempts", max_attempts, "max_attempts = 8"))
    return ConnectorSettings(
        api_key=_require("api_key", api_key, 'api_key = "<key issued by PolyAI>" in .dlt/secrets.toml'),
        account_id=_require("account_id", account_id, 'account_id = "acc-123"'),
        project_id=_require("project_id", project_id, 'project_id = "proj-456"'),
        base_url=resolve_base_url(region, base_url),
        api_version=_choice("api_version", api_version, API_VERSIONS),
        client_env=_choice("client_env", client_env, CLIENT_ENVS),
        channels=parse_channels(channel),
        variant_id=variant_id or None,
        variant_name=variant_name or None,
        include_latency=bool(include_latency),
        include_context_state=bool(include_context_state),
        include_turn_metadata=bool(include_turn_metadata),
        start_date=parse_start_date(start_date, now),
        limit=page_limit,
        lookback=timedelta(
            minutes=_non_negative("lookback_minutes", lookback_minutes, "lookback_minutes = 15")
        ),
        max_pending_age=timedelta(
            hours=_non_negative("max_pending_hours", max_pending_hours, "max_pending_hours = 24")
        ),
        window_span=timedelta(hours=window) if window > 0 else None,
        connect_timeout=_non_negative("connect_timeout", connect_timeout, "connect_timeout = 10"),
        read_timeout=_non_negative("read_timeout", read_timeout, "read_timeout = 120"),
        max_attempts=max(1, attempts),
        backoff_factor=_non_negative("backoff_factor", backoff_factor, "backoff_factor = 1"),
        max_retry_delay=_non_negative("max_retry_delay", max_retry_delay, "max_retry_delay = 60"),
        max_request_seconds=_non_negative(
            "max_request_seconds", max_request_seconds, "max_request_seconds = 600"
        ),
        retry_budget=int(_non_negative("retry_budget", retry_budget, "retry_budget = 200")),
        concurrency=_at_least_one("concurrency", concurrency, "concurrency = 4"),
        max_conversations_per_load=(
            _at_least_one(
                "max_conversations_per_load",
                max_conversations_per_load,
                "max_conversations_per_load = 50000",
            )
            if max_conversations_per_load not in (None, 0, "0", "")
            else None
        ),
    )
