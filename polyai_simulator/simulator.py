"""The simulated project: configuration, clock, conversations, queries and request statistics."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from .clock import SimClock
from .faults import Faults
from .generator import PlannedConversation, plan_conversation
from .views import ViewOptions, render


def _default_start() -> datetime:
    return datetime.now(UTC) - timedelta(days=3)


def _default_end() -> datetime:
    return datetime.now(UTC)


@dataclass
class SimConfig:
    seed: int = 1
    n_conversations: int = 500
    start: datetime = field(default_factory=_default_start)
    end: datetime = field(default_factory=_default_end)
    account_id: str = "acc-demo"
    project_id: str = "proj-demo"
    api_key: str = "sim-secret-key"
    transcripts_enabled: bool = True
    late_arrival_fraction: float = 0.05
    long_running_fraction: float = 0.02
    latency_object_fraction: float = 0.0
    v2_cursor: bool = True
    max_limit: int = 1000


@dataclass
class Stats:
    requests: int = 0
    conversations_served: int = 0
    request_log: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Query:
    start: datetime | None = None
    end: datetime | None = None
    client_env: str = "live"
    channels: tuple[str, ...] = ()
    variant_id: str | None = None
    variant_name: str | None = None
    in_progress: bool | None = None


class Simulator:
    def __init__(self, config: SimConfig, clock: SimClock | None = None) -> None:
        self.config = config
        self.clock = clock or SimClock()
        self.faults = Faults()
        self.stats = Stats()
        # Called after every answered request: tests move the clock while a client pages.
        self.after_request: Callable[[], None] | None = None
        self._lock = threading.Lock()
        span = config.end - config.start
        planned = [
            plan_conversation(
                config.seed,
                index,
                config.start,
                span,
                config.late_arrival_fraction,
                config.long_running_fraction,
                config.latency_object_fraction,
            )
            for index in range(config.n_conversations)
        ]
        planned.sort(key=lambda c: (c.started_at, c.id))
        self.conversations: list[PlannedConversation] = planned
        self._started = [c.started_at for c in planned]
        self._by_id = {c.id: c for c in planned}
        self._cache: dict[tuple[str, ViewOptions], bytes] = {}

    def now(self) -> datetime:
        return self.clock.now()

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = Stats()

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.stats.requests += 1
            self.stats.conversations_served += entry.get("returned", 0)
            self.stats.request_log.append(entry)
        if self.after_request is not None:
            self.after_request()

    def select(self, query: Query, now: datetime) -> list[PlannedConversation]:
        """Visible conversations matching the filters, in started_at order."""
        low = 0 if query.start is None else bisect.bisect_left(self._started, query.start)
        high = len(self._started) if query.end is None else bisect.bisect_left(self._started, query.end)
        selected = []
        for conversation in self.conversations[low:high]:
            if conversation.visible_at > now or conversation.environment != query.client_env:
                continue
            if query.channels and conversation.channel not in query.channels:
                continue
            if query.variant_id and conversation.variant_id != query.variant_id:
                continue
            if query.variant_name and conversation.variant_name != query.variant_name:
                continue
            if query.in_progress is not None and (now < conversation.ends_at) != query.in_progress:
                continue
            selected.append(conversation)
        return selected

    def view(self, conversation: PlannedConversation, now: datetime, options: ViewOptions) -> dict[str, Any]:
        record = render(conversation, now, options)
        record["account_id"] = self.config.account_id
        record["project_id"] = self.config.project_id
        return record

    def view_bytes(self, conversation: PlannedConversation, now: datetime, options: ViewOptions) -> bytes:
        """Serialized view; a finished conversation never changes, so its bytes are cached."""
        if now < conversation.ends_at:
            return orjson.dumps(self.view(conversation, now, options))
        key = (conversation.id, options)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = orjson.dumps(self.view(conversation, now, options))
        return cached

    def warm_cache(self, version: str = "v3") -> None:
        """Serialize every finished conversation now (benchmarks: no contender pays for it)."""
        now = self.now()
        for conversation in self.conversations:
            self.view_bytes(conversation, now, self.options(version))

    def options(self, version: str = "v3", **flags: bool) -> ViewOptions:
        return ViewOptions(version=version, transcripts_enabled=self.config.transcripts_enabled, **flags)

    def truth(
        self, version: str = "v3", include_latency: bool = False, client_env: str = "live"
    ) -> list[dict[str, Any]]:
        """Every visible conversation as the API shows it now with no other filter, by started_at."""
        now = self.now()
        options = self.options(version, include_latency=include_latency)
        return [self.view(c, now, options) for c in self.select(Query(client_env=client_env), now)]

    def conversation(self, conversation_id: str, version: str = "v3", include_latency: bool = False) -> dict:
        return self.view(
            self._by_id[conversation_id], self.now(), self.options(version, include_latency=include_latency)
        )
