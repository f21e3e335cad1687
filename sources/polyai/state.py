"""The source's state in dlt's pipeline state: how it is stored, and a typed view to read it.

dlt keeps the state in the pipeline's working folder and, with every load that changed it, as
one more row of `_dlt_pipeline_state` in the destination. The pending set is by far its
largest part (one entry per conversation still in progress), so it is stored in columns: the
ids, sorted by `started_at`, and the microseconds between consecutive `started_at` (exact:
a re-pull window is a few milliseconds wide around it). The ids themselves are opaque and
cannot be shortened; everything else per entry is a few digits.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

CURSOR: Final = "cursor"
PENDING: Final = "pending"
LAST_RUN: Final = "last_run"
# Per pending conversation, the runs whose re-pulls missed it (planning.next_misses).
REPULL_MISSES: Final = "repull_misses"
# The columns of the stored pending set (encode_pending).
PENDING_IDS: Final = "ids"
PENDING_FIRST: Final = "first_started_at_us"
PENDING_GAPS: Final = "gaps_us"
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND: Final = timedelta(microseconds=1)


def encode_pending(pending: Mapping[str, str]) -> dict[str, Any]:
    """The pending set (id -> ISO `started_at`) in its stored form; `{}` when empty."""
    if not pending:
        return {}
    by_start = sorted(
        ((datetime.fromisoformat(started) - EPOCH) // MICROSECOND, conversation_id)
        for conversation_id, started in pending.items()
    )
    starts = [start for start, _ in by_start]
    return {
        PENDING_IDS: [conversation_id for _, conversation_id in by_start],
        PENDING_FIRST: starts[0],
        PENDING_GAPS: [later - earlier for earlier, later in itertools.pairwise(starts)],
    }


def decode_pending(stored: Mapping[str, Any] | None) -> dict[str, str]:
    """The pending set (id -> ISO `started_at`, UTC) from its stored form.

    Also reads the form of earlier versions, a mapping of id to ISO `started_at`, so a
    pipeline upgrades in place on its next run.
    """
    if not stored:
        return {}
    ids = stored.get(PENDING_IDS)
    if not isinstance(ids, list):
        return {str(conversation_id): str(started) for conversation_id, started in stored.items()}
    start = int(stored[PENDING_FIRST])
    starts = [start]
    for gap in stored[PENDING_GAPS]:
        start += int(gap)
        starts.append(start)
    if len(starts) != len(ids):
        raise ValueError(f"the stored pending set is damaged: {len(ids)} ids, {len(starts)} start times")
    return {
        conversation_id: (EPOCH + start * MICROSECOND).isoformat()
        for conversation_id, start in zip(ids, starts, strict=True)
    }


@dataclass(frozen=True)
class LastRun:
    """What the last load of the source did (the run summary reads it)."""

    requests: int = 0
    repull_windows: int = 0
    expired: int = 0
    hidden_transcripts: int = 0
    replaced_text: Mapping[str, int] = field(default_factory=dict)
    caught_up: bool = True

    @classmethod
    def read(cls, stored: Mapping[str, Any] | None) -> LastRun:
        stored = stored or {}
        return cls(
            requests=int(stored.get("requests", 0)),
            repull_windows=int(stored.get("repull_windows", 0)),
            expired=int(stored.get("expired", 0)),
            hidden_transcripts=int(stored.get("hidden_transcripts", 0)),
            replaced_text=dict(stored.get("replaced_text") or {}),
            caught_up=bool(stored.get("caught_up", True)),
        )

    def stored(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "repull_windows": self.repull_windows,
            "expired": self.expired,
            "hidden_transcripts": self.hidden_transcripts,
            "replaced_text": dict(self.replaced_text),
            "caught_up": self.caught_up,
        }


class SourceState:
    """A typed view of the source's state (`dlt.current.source_state()` or the pipeline's).

    The pending set is decoded once; `save_pending` writes it back in its stored form.
    """

    def __init__(self, state: MutableMapping[str, Any]) -> None:
        self._state = state
        self.pending: dict[str, str] = decode_pending(state.get(PENDING))

    @classmethod
    def of_pipeline(cls, pipeline_state: Mapping[str, Any], source_name: str = "polyai") -> SourceState:
        """The view of a pipeline's state (`pipeline.state`), read only."""
        return cls(dict(pipeline_state.get("sources", {}).get(source_name, {})))

    @property
    def cursor(self) -> str | None:
        """How far `started_at` has been read (ISO 8601 UTC), None before the first load."""
        cursor = self._state.get(CURSOR)
        return None if cursor is None else str(cursor)

    @cursor.setter
    def cursor(self, value: str) -> None:
        self._state[CURSOR] = value

    @property
    def repull_misses(self) -> dict[str, int]:
        return dict(self._state.get(REPULL_MISSES) or {})

    @repull_misses.setter
    def repull_misses(self, misses: Mapping[str, int]) -> None:
        if misses:
            self._state[REPULL_MISSES] = dict(misses)
        else:
            self._state.pop(REPULL_MISSES, None)

    @property
    def last_run(self) -> LastRun:
        return LastRun.read(self._state.get(LAST_RUN))

    @last_run.setter
    def last_run(self, value: LastRun) -> None:
        self._state[LAST_RUN] = value.stored()

    def save_pending(self) -> None:
        self._state[PENDING] = encode_pending(self.pending)
