"""The simulated project: its conversations over time, the pages the API serves, and statistics."""

from __future__ import annotations

import bisect
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from .clock import SimClock
from .config import SimConfig
from .faults import Faults
from .generator import Entry, GenParams, build_index, iso, plan, to_us
from .odd_text import add_odd_text, deserialize, serialize
from .paging_faults import PageRepeats, fresh_cursor
from .query import PageRequest, Query, encode_cursor, uses_cursor
from .views import ViewOptions, render

V1_DESCRIPTIONS: dict[str, Any] = {
    "conversations": {
        "id": "Unique ID for this conversation.",
        "started_at": "Time when the conversation began, in ISO8601 format.",
        "in_progress": "If true, the call is still in progress and its properties may change.",
        "num_turns": "Number of turns in the conversation.",
        "metrics": "Mapping of metric name -> value(s).",
        "state": "Mapping of keys -> values written to the dialogue state.",
        "turns": "Ordered list of turns in the conversation.",
    }
}
_SELECTION_CACHE_SIZE = 64


@dataclass
class Stats:
    requests: int = 0
    conversations_served: int = 0
    request_log: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Selection:
    entries: tuple[Entry, ...]
    ids: tuple[str, ...]  # the entries' ids, for cursor lookups when ordered by id


class Simulator:
    """Data, clock, faults and statistics of one simulated project.

    `view(conversation, now, options)` is the one place a conversation becomes a dict; tests
    may wrap it (then clear `_cache`) to simulate the API adding or changing fields.
    """

    def __init__(self, config: SimConfig, clock: SimClock | None = None) -> None:
        self.config = config
        self.clock = clock if clock is not None else SimClock()
        self.faults = Faults()
        self.stats = Stats()
        # Called after every answered request, before the response is sent: tests move the
        # clock there to make conversations arrive while a client is paging.
        self.after_request: Callable[[], None] | None = None
        self._params = GenParams.from_config(config)
        self.conversations: list[Entry] = build_index(config)  # by (started_at, id)
        self._started = [entry.started_us for entry in self.conversations]
        self._by_id = {entry.id: entry for entry in self.conversations}
        # A result set changes only when a conversation becomes visible or finishes: the
        # number of such events up to `now` identifies it, so pages can share one selection.
        self._events = sorted(
            [entry.visible_us for entry in self.conversations] + [e.ends_us for e in self.conversations]
        )
        self._cache: dict[tuple[str, ViewOptions], bytes] = {}
        self._selections: dict[tuple[Query, int, bool, int], _Selection] = {}
        self._lock = threading.Lock()
        self._repeats = PageRepeats()
        # Conversations the API no longer serves (withdraw): PolyAI deletes them after the
        # contract's retention period.
        self.withdrawn: frozenset[str] = frozenset()

    # --- time and statistics ---------------------------------------------------------------

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

    # --- conversations ---------------------------------------------------------------------

    def entry(self, conversation_id: str) -> Entry:
        """The index row of a conversation (KeyError if there is none)."""
        return self._by_id[conversation_id]

    def options(self, version: str = "v3", **flags: bool) -> ViewOptions:
        return ViewOptions(
            version="v1" if version == "v1" else "v3",
            transcripts_enabled=self.config.transcripts_enabled,
            **flags,
        )

    def view(self, conversation: Entry, now: datetime, options: ViewOptions) -> dict[str, Any]:
        record = render(
            plan(self._params, conversation.index),
            to_us(now),
            options,
            self.config.account_id,
            self.config.project_id,
        )
        if self.config.odd_text and conversation.index % self.config.odd_text_every == 0:
            record = add_odd_text(record, self.config.odd_text)
        return record

    def view_bytes(self, conversation: Entry, now: datetime, options: ViewOptions) -> bytes:
        """The serialized view; a finished conversation never changes, so its bytes are cached."""
        if conversation.echo_of is not None:
            view = self.view(conversation, now, options)
            view["started_at"] = iso(conversation.started_us)
            return serialize(view)
        if to_us(now) < conversation.ends_us:
            return serialize(self.view(conversation, now, options))
        key = (conversation.id, options)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = serialize(self.view(conversation, now, options))
        return cached

    def warm_cache(self, version: str = "v3", **flags: bool) -> None:
        """Serialize every finished conversation now, so no benchmark contender pays for it."""
        now = self.now()
        options = self.options(version, **flags)
        for conversation in self.conversations:
            self.view_bytes(conversation, now, options)

    def conversation(
        self,
        conversation_id: str,
        version: str = "v3",
        include_latency: bool = False,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """One conversation as rendered now (or `at`), whether or not it is visible yet."""
        moment = self.now() if at is None else at
        options = self.options(version, include_latency=include_latency)
        return deserialize(self.view_bytes(self.entry(conversation_id), moment, options))  # type: ignore[no-any-return]

    def truth(
        self, version: str = "v3", include_latency: bool = False, client_env: str = "live"
    ) -> list[dict[str, Any]]:
        """Every visible conversation as the API shows it now with no other filter, by started_at.

        Fresh dicts every call (decoded from the served bytes): callers may mutate them.
        """
        now = self.now()
        options = self.options(version, include_latency=include_latency)
        selection = self.select(Query(client_env=client_env), now)
        return [deserialize(self.view_bytes(entry, now, options)) for entry in selection]

    def withdraw(self, conversation_ids: Sequence[str]) -> None:
        """The API stops serving these conversations, as PolyAI does past its retention period."""
        with self._lock:
            self.withdrawn = self.withdrawn | frozenset(conversation_ids)
            self._selections.clear()

    # --- result sets and pages -------------------------------------------------------------

    def select(self, query: Query, now: datetime, by_id: bool = False) -> Sequence[Entry]:
        """Visible conversations matching the filters, by (started_at, id) or by id."""
        return self._selection(query, to_us(now), by_id).entries

    def _selection(self, query: Query, now_us: int, by_id: bool) -> _Selection:
        # The withdrawn set only grows: its size tells its versions apart.
        key = (query, bisect.bisect_right(self._events, now_us), by_id, len(self.withdrawn))
        with self._lock:
            cached = self._selections.get(key)
        if cached is not None:
            return cached
        offset_us = round(self.config.filter_offset_seconds * 1_000_000)
        selected = self._filtered(query, now_us, self._in_bounds(query, offset_us))
        if self.config.echo_fraction:
            shift_us = round(self.config.echo_shift_seconds * 1_000_000)
            echoes = [entry for entry in self._in_bounds(query, offset_us + shift_us) if self._echoed(entry)]
            selected += [
                replace(entry, started_us=entry.started_us + shift_us, echo_of=entry.started_us)
                for entry in self._filtered(query, now_us, echoes)
            ]
        if self.withdrawn:
            selected = [entry for entry in selected if entry.id not in self.withdrawn]
        if by_id:
            selected.sort(key=lambda entry: entry.id)
        selection = _Selection(tuple(selected), tuple(entry.id for entry in selected))
        with self._lock:
            if len(self._selections) >= _SELECTION_CACHE_SIZE:
                del self._selections[next(iter(self._selections))]
            self._selections[key] = selection
        return selection

    def _in_bounds(self, query: Query, offset_us: int) -> Sequence[Entry]:
        """Entries whose started_at plus `offset_us` falls in the query's time range (and slack)."""
        slack_us = round(self.config.bound_slack_seconds * 1_000_000)
        start_us = None if query.start_us is None else query.start_us - offset_us
        end_us = None if query.end_us is None else query.end_us - offset_us
        low = 0 if start_us is None else bisect.bisect_left(self._started, start_us - slack_us)
        if end_us is None:
            high = len(self._started)
        elif slack_us:
            high = bisect.bisect_right(self._started, end_us + slack_us)
        else:
            high = bisect.bisect_left(self._started, end_us)
        return self.conversations[low:high]

    @staticmethod
    def _filtered(query: Query, now_us: int, entries: Sequence[Entry]) -> list[Entry]:
        channels = set(query.channels)
        return [
            entry
            for entry in entries
            if entry.visible_us <= now_us
            and entry.environment == query.client_env
            and (not channels or entry.channel in channels)
            and (query.variant_id is None or entry.variant_id == query.variant_id)
            and (query.variant_name is None or entry.variant_name == query.variant_name)
            and (query.in_progress is None or (now_us < entry.ends_us) == query.in_progress)
        ]

    def _echoed(self, entry: Entry) -> bool:
        """Whether `entry` is one of the `echo_fraction` served twice (stable per id)."""
        return zlib.crc32(entry.id.encode()) % 10_000 < self.config.echo_fraction * 10_000

    def page(self, request: PageRequest) -> tuple[bytes, list[str]]:
        """The response body for one page, and the ids on it.

        v1: ascending started_at, offset paging. v2/v3: id order (a stable keyset that is
        deliberately not chronological); a cursor resumes after the last id served, so pages
        neither skip nor repeat while conversations arrive, whereas an offset is a position in
        the result set as it is at request time and drifts. `config.paging_fault` makes the
        paging hostile (paging_faults).
        """
        mode = self.config.paging_fault
        again = self._repeats.served_again(mode, request)
        if again is not None:
            return again
        now = self.now()
        version = request.version
        keyset = version != "v1"
        with_cursor = uses_cursor(version, self.config.v2_cursor)
        selection = self._selection(request.query, to_us(now), keyset)
        after_id = None if mode == "ignore_cursor" else request.after_id
        position = request.offset
        if with_cursor and after_id is not None:
            position = bisect.bisect_right(selection.ids, after_id)
        page = selection.entries[position : position + request.limit]
        more = position + request.limit < len(selection.entries)
        next_offset = position + request.limit if more else None
        if mode == "stuck_offset":
            next_offset = request.offset
        options = self.options(
            version,
            include_latency=request.include_latency,
            include_context_state=request.include_context_state,
            include_turn_metadata=request.include_turn_metadata,
        )
        parts = [
            b'{"conversations":[',
            b",".join([self.view_bytes(entry, now, options) for entry in page]),
            b"]",
        ]
        if version == "v1":
            parts.append(b',"descriptions":' + orjson.dumps(V1_DESCRIPTIONS))
        if next_offset is not None:
            parts.append(b',"next_offset":%d' % next_offset)
        cursor = self._cursor(request, page, more) if with_cursor else None
        if with_cursor:
            parts.append(b',"cursor":' + orjson.dumps(cursor))
        parts.append(b"}")
        body, ids = b"".join(parts), [entry.id for entry in page]
        self._repeats.remember(mode, request, page[-1].id if cursor and page else None, body, ids)
        return body, ids

    def _cursor(self, request: PageRequest, page: Sequence[Entry], more: bool) -> str | None:
        """The cursor a page sends: after its last id while there are more, as `paging_fault` says."""
        mode = self.config.paging_fault
        if mode == "same_cursor" and request.after_id is not None:
            return encode_cursor(request.after_id, request.query)
        if mode == "empty_page_with_cursor" and not more:
            last_id = page[-1].id if page else request.after_id or ""
            return fresh_cursor(last_id, request.query, self._repeats.next_serial())
        return encode_cursor(page[-1].id, request.query) if more else None
