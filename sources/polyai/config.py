"""The connector's settings, checked before the first request: each error names its setting."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

import dlt
from dlt.common.configuration import configspec
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretStrValue, TSecretValue

from .redaction import register_secrets
from .settings import (
    API_VERSIONS,
    CLIENT_ENVS,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_CONVERSATIONS_PER_LOAD,
    DEFAULT_START_DAYS_AGO,
    MAX_LIMIT,
    REGION_BASE_URL,
    REGIONS,
)
from .shaping.privacy import PrivacyRules, build_privacy_rules
from .shaping.records import parse_timestamp

if TYPE_CHECKING:
    from .projects import ProjectSettings

logger = logging.getLogger(__name__)
# Needed by the single-project settings alone: with `projects`, each entry gives its own or inherits them.
SINGLE_PROJECT_SETTINGS = frozenset({"api_key", "account_id", "project_id"})


class ConfigurationError(ValueError):
    """A setting is missing or wrong; the message names it and gives a valid example."""

    def __init__(self, setting: str, problem: str, example: str, where: str | None = None) -> None:
        self.setting, self.problem, self.example = setting, problem, example
        where = where or (
            f"in .dlt/config.toml [sources.polyai], .dlt/secrets.toml, "
            f"or the environment variable SOURCES__POLYAI__{setting.upper()}"
        )
        super().__init__(f"Setting `{setting}` {problem}. Example: {example} ({where})")


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


def require(setting: str, value: str | None, example: str, problem: str = "is missing") -> str:
    if value is None or not str(value).strip():
        raise ConfigurationError(setting, problem, example)
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


def choice(setting: str, value: str, choices: Sequence[str]) -> str:
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
    region = choice("region", region, REGIONS)
    return REGION_BASE_URL.format(region=region)


def checked_start_date(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        start = parse_timestamp(value)
    except (ValueError, TypeError, OverflowError):
        start = None
    if start is None:
        raise ConfigurationError(
            "start_date", f"is not an ISO 8601 date-time ({value!r})", 'start_date = "2026-01-01T00:00:00Z"'
        )
    return start


def parse_start_date(value: str | datetime | None, now: datetime) -> datetime:
    start = checked_start_date(value)
    if start is None:
        return now - timedelta(days=DEFAULT_START_DAYS_AGO)
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


def _whole(setting: str, value: int, example: str) -> int:
    return int(_non_negative(setting, value, example))


@configspec
class PolyAISourceConfiguration(BaseConfiguration):
    """The source's settings, section `[sources.polyai]`: each declared here alone, with its default.

    dlt resolves them from keyword arguments, the environment, .dlt/secrets.toml and
    .dlt/config.toml; `on_resolved` checks them, so a wrong one fails before any request, and
    `connector_settings` gives the form the connector runs on. The README's table and
    .dlt/config.toml document them (tests/unit/test_config_spec.py keeps the three in step).
    """

    api_key: TSecretStrValue = dlt.secrets.value
    """The `x-api-key` PolyAI issued for the project and region (secret)."""
    account_id: str = dlt.config.value
    project_id: str = dlt.config.value
    projects: TSecretValue | None = None
    """Several projects (projects.py): a list of tables, each `project_id` and what differs.

    Secret-typed because entries carry keys: dlt's trace records no value of a secret field, and
    reads it from .dlt/secrets.toml and the environment, never config.toml. `Any`, so that dlt
    hands over the environment's JSON text as is and projects.py refuses bad JSON by name.
    """
    region: str = "us-1"
    """us-1 | uk-1 | euw-1 -> https://api.{region}.platform.polyai.app"""
    base_url: str | None = None
    """Overrides the region's host (proxy, private link, the simulator)."""
    api_version: str = "v3"
    """v3 | v2 | v1 (legacy; normalized to v3 conventions)"""
    client_env: str = "live"
    """live | sandbox | pre-release"""
    channel: str | list[str] | None = None
    """Only these channels (a list, or comma-separated text); default: all."""
    variant_id: str | None = None
    variant_name: str | None = None
    """Only this variant; or variant_id, not both."""
    include_latency: bool = False
    include_context_state: bool = False
    include_turn_metadata: bool = False
    start_date: str | None = None
    """ISO 8601: where the first run begins; default: 30 days before the first run."""
    limit: int = 1000
    """Conversations per request, 1-1000 (always sent)."""
    lookback_minutes: float = 15.0
    """Each run re-reads this much before the cursor, for late arrivals."""
    max_pending_hours: float = 24.0
    """A conversation still in progress this long after it started is no longer re-pulled."""
    window_hours: float | None = None
    """Slices of the main window; default: concurrency x slices_per_worker(limit) slices of 1-24 h."""
    # Not dlt's `[runtime] request_timeout`, `request_max_attempts`, `request_backoff_factor`,
    # `request_max_retry_delay`: they mean other things (one timeout for connect and read, where
    # a large page needs a long read but a dead host should fail fast; no retry of a 200 whose
    # body is cut short) and default otherwise (60 s, 5 attempts, waits up to 300 s), so
    # defaulting ours from them would change how every run behaves.
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_attempts: int = 8
    backoff_factor: float = 1.0
    max_retry_delay: float = 60.0
    max_request_seconds: float = 600.0
    """One request, all its attempts and waits included, gives up after this long."""
    retry_budget: int = 200
    """Retries allowed in one run, across all requests."""
    concurrency: int = DEFAULT_CONCURRENCY
    max_conversations_per_load: int | None = DEFAULT_MAX_CONVERSATIONS_PER_LOAD
    """0 or None: one load reads everything up to now."""
    phone_numbers: str = "keep"
    """keep | hash | drop"""
    pii_salt: TSecretStrValue | None = None
    """The key of the phone numbers' hash (secret); needed by phone_numbers = "hash"."""
    redact_transcripts: bool = False
    redact_state_keys: str | list[str] | None = None
    """State keys whose values are redacted, at any depth (a list, or comma-separated text)."""

    def on_partial(self) -> None:
        """Without the single project's settings, resolved all the same when `projects` gives them."""
        from .projects import parse_projects, project_api_keys

        error = self.__exception__
        missing = set(getattr(error, "fields", ()))
        register_secrets(*project_api_keys(self.projects))
        if missing and missing <= SINGLE_PROJECT_SETTINGS and parse_projects(self.projects):
            self.resolve()

    def on_resolved(self) -> None:
        from .projects import check_entries, parse_projects, project_api_keys

        # First, so that every message built from here on (errors, logs) masks the keys and the salt.
        register_secrets(self.api_key, self.pii_salt, *project_api_keys(self.projects))
        entries = parse_projects(self.projects)
        if self.variant_id and self.variant_name:
            raise ConfigurationError(
                "variant_name",
                "cannot be set together with `variant_id`; set one of them",
                'variant_id = "v-123"',
            )
        if not entries:
            self._require_single_project()
        resolve_base_url(self.region, self.base_url)
        choice("api_version", self.api_version, API_VERSIONS)
        choice("client_env", self.client_env, CLIENT_ENVS)
        checked_start_date(self.start_date)
        self._check_reading()
        self._check_transport()
        self.privacy_rules()
        if entries:
            check_entries(entries, self)
            self.projects = [dict(entry.values) for entry in entries]
            if self.project_id:
                logger.warning(
                    "Setting `project_id` (%s) is not loaded: `projects` is set and names the "
                    "projects to load; add it there as an entry to load it too",
                    self.project_id,
                )

    def _require_single_project(self) -> None:
        self.api_key = require(
            "api_key", self.api_key, 'api_key = "<key issued by PolyAI>" in .dlt/secrets.toml'
        )
        self.account_id = require("account_id", self.account_id, 'account_id = "acc-123"')
        self.project_id = require("project_id", self.project_id, 'project_id = "proj-456"')

    def _check_reading(self) -> None:
        try:
            page_limit = int(self.limit)
        except (TypeError, ValueError):
            page_limit = -1
        if not 1 <= page_limit <= MAX_LIMIT:
            raise ConfigurationError(
                "limit", f"must be between 1 and {MAX_LIMIT} ({self.limit!r})", "limit = 1000"
            )
        self.limit = page_limit
        self.lookback_minutes = _non_negative(
            "lookback_minutes", self.lookback_minutes, "lookback_minutes = 15"
        )
        self.max_pending_hours = _non_negative(
            "max_pending_hours", self.max_pending_hours, "max_pending_hours = 24"
        )
        self.window_hours = _non_negative("window_hours", self.window_hours or 0, "window_hours = 24") or None
        self.concurrency = _at_least_one("concurrency", self.concurrency, "concurrency = 4")
        per_load = self.max_conversations_per_load
        self.max_conversations_per_load = (
            None
            if per_load is None or per_load in (0, "0", "")
            else _at_least_one("max_conversations_per_load", per_load, "max_conversations_per_load = 50000")
        )

    def _check_transport(self) -> None:
        self.connect_timeout = _non_negative("connect_timeout", self.connect_timeout, "connect_timeout = 10")
        self.read_timeout = _non_negative("read_timeout", self.read_timeout, "read_timeout = 120")
        self.max_attempts = max(1, _whole("max_attempts", self.max_attempts, "max_attempts = 8"))
        self.backoff_factor = _non_negative("backoff_factor", self.backoff_factor, "backoff_factor = 1")
        self.max_retry_delay = _non_negative("max_retry_delay", self.max_retry_delay, "max_retry_delay = 60")
        self.max_request_seconds = _non_negative(
            "max_request_seconds", self.max_request_seconds, "max_request_seconds = 600"
        )
        self.retry_budget = _whole("retry_budget", self.retry_budget, "retry_budget = 200")

    def privacy_rules(self) -> PrivacyRules:
        return build_privacy_rules(
            self.phone_numbers, self.pii_salt, self.redact_transcripts, self.redact_state_keys
        )

    def project_settings(self, now: datetime) -> list[ProjectSettings]:
        """The projects to load, in order: the entries of `projects`, else the top-level one."""
        from .projects import ProjectSettings, entry_projects, parse_projects, state_key

        connector = self.connector_settings(now)
        entries = parse_projects(self.projects)
        if entries:
            return entry_projects(entries, self, connector)
        key = state_key(connector.project_id, self.region, connector.client_env)
        return [ProjectSettings(label=connector.project_id, state_key=key, connector=connector)]

    def connector_settings(self, now: datetime) -> ConnectorSettings:
        """The checked settings as the connector runs on them; `start_date` must not lie after `now`."""
        return ConnectorSettings(
            api_key=self.api_key,
            account_id=self.account_id,
            project_id=self.project_id,
            base_url=resolve_base_url(self.region, self.base_url),
            api_version=self.api_version,
            client_env=self.client_env,
            channels=parse_channels(self.channel),
            variant_id=self.variant_id or None,
            variant_name=self.variant_name or None,
            include_latency=bool(self.include_latency),
            include_context_state=bool(self.include_context_state),
            include_turn_metadata=bool(self.include_turn_metadata),
            start_date=parse_start_date(self.start_date, now),
            limit=self.limit,
            lookback=timedelta(minutes=self.lookback_minutes),
            max_pending_age=timedelta(hours=self.max_pending_hours),
            window_span=timedelta(hours=self.window_hours) if self.window_hours else None,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_attempts=self.max_attempts,
            backoff_factor=self.backoff_factor,
            max_retry_delay=self.max_retry_delay,
            max_request_seconds=self.max_request_seconds,
            retry_budget=self.retry_budget,
            concurrency=self.concurrency,
            max_conversations_per_load=self.max_conversations_per_load,
        )


TSourceFunction = TypeVar("TSourceFunction", bound=Callable[..., Any])


def with_setting_parameters(spec: type[BaseConfiguration]) -> Callable[[TSourceFunction], TSourceFunction]:
    """Gives a source function one keyword parameter per field of `spec`, with the field's default.

    dlt takes a source's call arguments by the names in its signature and hands them to the spec
    as explicit values: so `polyai_source(limit=50)` keeps working while the spec alone declares
    the settings. The function receives them again in its `**` parameter and reads the resolved
    spec instead.
    """
    defaults = spec()

    def decorate(function: TSourceFunction) -> TSourceFunction:
        signature = inspect.signature(function)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        settings = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name], annotation=hint)
            for name, hint in spec.get_resolvable_fields().items()
        ]
        function.__signature__ = signature.replace(parameters=[*own, *settings])  # type: ignore[attr-defined]
        return function

    return decorate
