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
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

CURSOR: Final = "cursor"
# Each project's state is filed under its `ProjectSettings.state_key` in PROJECTS.
PROJECTS: Final = "projects"
# Set when a pipeline of an earlier version, which loaded one project, was upgraded: its turns
# rows were loaded without `project_id` (shaping.records.turn_scope reads them as this project's).
LEGACY_PROJECT_ID: Final = "legacy_project_id"
LEGACY_ACCOUNT_ID: Final = "legacy_account_id"
LABEL: Final = "label"
# The `start_date` the project's reading began at (ISO 8601 UTC).
READ_FROM: Final = "read_from"
PENDING: Final = "pending"
LAST_RUN: Final = "last_run"
# Per pending conversation, the runs whose re-pulls missed it (planning.next_misses).
REPULL_MISSES: Final = "repull_misses"
# A resync of a `started_at` range: how far it has read (resync.ResyncProgress), kept once done.
RESYNC: Final = "resync"
# The columns of the stored pending set (encode_pending).
PENDING_IDS: Final = "ids"
PENDING_FIRST: Final = "first_started_at_us"
PENDING_GAPS: Final = "gaps_us"
# The keys of one project's state, which earlier versions kept at the top of the source state.
LEGACY_KEYS: Final = (CURSOR, PENDING, LAST_RUN, REPULL_MISSES)
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
    # Attempts retried, and answers that were a 429, over the run's requests.
    retries: int = 0
    rate_limited: int = 0
    # The run's "now" (ISO 8601 UTC): when it ran, by the client's clock.
    ran_at: str | None = None
    conversations: int = 0
    turns: int = 0
    repull_windows: int = 0
    expired: int = 0
    hidden_transcripts: int = 0
    replaced_text: Mapping[str, int] = field(default_factory=dict)
    caught_up: bool = True
    # Why the project's last run failed ({"status", "error_code", "correlation_id", "message"},
    # redacted); None when it did not. A failed run leaves everything else as it was before.
    failure: Mapping[str, Any] | None = None

    @classmethod
    def read(cls, stored: Mapping[str, Any] | None) -> LastRun:
        stored = stored or {}
        return cls(
            requests=int(stored.get("requests", 0)),
            retries=int(stored.get("retries", 0)),
            rate_limited=int(stored.get("rate_limited", 0)),
            ran_at=str(stored["ran_at"]) if stored.get("ran_at") else None,
            conversations=int(stored.get("conversations", 0)),
            turns=int(stored.get("turns", 0)),
            repull_windows=int(stored.get("repull_windows", 0)),
            expired=int(stored.get("expired", 0)),
            hidden_transcripts=int(stored.get("hidden_transcripts", 0)),
            replaced_text=dict(stored.get("replaced_text") or {}),
            caught_up=bool(stored.get("caught_up", True)),
            failure=dict(stored["failure"]) if stored.get("failure") else None,
        )

    def stored(self) -> dict[str, Any]:
        stored: dict[str, Any] = {
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "ran_at": self.ran_at,
            "conversations": self.conversations,
            "turns": self.turns,
            "repull_windows": self.repull_windows,
            "expired": self.expired,
            "hidden_transcripts": self.hidden_transcripts,
            "replaced_text": dict(self.replaced_text),
            "caught_up": self.caught_up,
        }
        if self.failure:
            stored["failure"] = dict(self.failure)
        return stored


class SourceState:
    """A typed view of the source's state (`dlt.current.source_state()` or the pipeline's).

    The pending set is decoded once; `save_pending` writes it back in its stored form.
    """

    def __init__(self, state: MutableMapping[str, Any]) -> None:
        self._state = state
        self.pending: dict[str, str] = decode_pending(state.get(PENDING))

    @classmethod
    def of_pipeline(cls, pipeline_state: Mapping[str, Any], source_name: str = "polyai") -> SourceState:
        """The view of a pipeline's only project (`pipeline.state`), read only; empty if none or several."""
        projects = cls.projects_of_pipeline(pipeline_state, source_name)
        return next(iter(projects.values())) if len(projects) == 1 else cls({})

    @classmethod
    def projects_of_pipeline(
        cls, pipeline_state: Mapping[str, Any], source_name: str = "polyai"
    ) -> dict[str, SourceState]:
        """Each project's view (by state key) of a pipeline's state, read only.

        A state of an earlier version, one project's kept at the top, reads as one project
        under the key "" until the next run files it under its key (`project_states`).
        """
        source = dict(pipeline_state.get("sources", {}).get(source_name, {}))
        projects = {key: cls(dict(state)) for key, state in (source.get(PROJECTS) or {}).items()}
        if any(key in source for key in LEGACY_KEYS):
            projects.setdefault("", cls(source))
        return projects

    @property
    def label(self) -> str:
        """How the project was named in messages when it last ran."""
        return str(self._state.get(LABEL, ""))

    @label.setter
    def label(self, value: str) -> None:
        self._state[LABEL] = value

    @property
    def cursor(self) -> str | None:
        """How far `started_at` has been read (ISO 8601 UTC), None before the first load."""
        cursor = self._state.get(CURSOR)
        return None if cursor is None else str(cursor)

    @cursor.setter
    def cursor(self, value: str) -> None:
        self._state[CURSOR] = value

    @property
    def read_from(self) -> str | None:
        """The `start_date` the project's first run read from; None before it (or from earlier versions)."""
        value = self._state.get(READ_FROM)
        return None if value is None else str(value)

    @read_from.setter
    def read_from(self, value: str) -> None:
        self._state[READ_FROM] = value

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

    @property
    def resync(self) -> dict[str, Any] | None:
        value = self._state.get(RESYNC)
        return dict(value) if value else None

    @resync.setter
    def resync(self, value: Mapping[str, Any]) -> None:
        self._state[RESYNC] = dict(value)

    def save_pending(self) -> None:
        self._state[PENDING] = encode_pending(self.pending)


@dataclass(frozen=True)
class LegacyOwner:
    """The project that inherits the state of an earlier version, which loaded one project."""

    state_key: str
    project_id: str
    account_id: str


def has_legacy_state(source_state: Mapping[str, Any]) -> bool:
    return any(key in source_state for key in LEGACY_KEYS)


def project_states(
    source_state: MutableMapping[str, Any], keys: Sequence[str], legacy_owner: LegacyOwner | None
) -> dict[str, MutableMapping[str, Any]]:
    """Each project's part of the source state, by state key, made where missing.

    A state of an earlier version (one project's, at the top) is moved, once, to `legacy_owner`
    (the project the top-level settings name), and that project is remembered
    (LEGACY_PROJECT_ID, LEGACY_ACCOUNT_ID) until its turns rows have their `project_id`.
    """
    projects = source_state.setdefault(PROJECTS, {})
    legacy = {key: source_state[key] for key in LEGACY_KEYS if key in source_state}
    if legacy and legacy_owner is not None and not projects.get(legacy_owner.state_key):
        projects[legacy_owner.state_key] = legacy
        source_state[LEGACY_PROJECT_ID] = legacy_owner.project_id
        source_state[LEGACY_ACCOUNT_ID] = legacy_owner.account_id
        for key in legacy:
            del source_state[key]
    return {key: projects.setdefault(key, {}) for key in keys}


def legacy_project_id(source_state: Mapping[str, Any]) -> str | None:
    """The project whose turns an earlier version loaded without `project_id`, if any."""
    value = source_state.get(LEGACY_PROJECT_ID)
    return None if value is None else str(value)


# What `reset` forgets: where reading stands. The label and the last run's report stay.
PROGRESS_KEYS: Final = (CURSOR, PENDING, REPULL_MISSES, READ_FROM, RESYNC)


def forget_progress(project_state: MutableMapping[str, Any]) -> None:
    """The project's next run starts again at `start_date`, as if it had never run."""
    for key in PROGRESS_KEYS:
        project_state.pop(key, None)
