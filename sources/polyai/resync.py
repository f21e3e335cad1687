"""Reading a `started_at` range again (resync): the range, where it stands, its windows. Pure, no I/O.

A resync reads `[start, end)` of each project again, in time order and in parts like a
backfill (`max_conversations_per_load`), and replaces every conversation it reads, with all of
its turns (the merges). It never moves the cursor and makes no re-pull: the next run does
those. Its progress (`ResyncProgress`) is kept in the project's state and committed with each
part, so a resync killed or failed part-way goes on from its last committed part when it is
run again with the same range; a different range replaces an unfinished one.

`ResyncRange.token` tells the parts of one resync apart from a later resync of the same range:
a resync that has ended is started again by the next one, but not by its own later parts
(another project of the same resync may still be reading).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .config import ConfigurationError
from .planning import Window, slice_span, split_window, taper
from .settings import SLICES_PER_WORKER

SETTING: Final = "resync"


class ResyncRangeError(ConfigurationError):
    """The range asked cannot be read: the message names the bound and why."""

    def __init__(self, message: str) -> None:
        self.setting = SETTING
        self.problem = message
        self.example = "resync --from 2026-11-02T00:00:00Z --to 2026-11-09T00:00:00Z"
        ValueError.__init__(self, f"resync: {message}")


def parse_bound(text: str, option: str) -> datetime:
    """An ISO 8601 date or date-time (UTC unless it names an offset), as `--from`/`--to` take it."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ResyncRangeError(
            f"{option} is not an ISO 8601 date-time ({text!r}); for example 2026-11-02T00:00:00Z"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _new_token() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ResyncRange:
    """`started_at` in `[start, end)` read again; `projects`: state keys (None: every project).

    An `end` after now is read up to now. Pass it to `polyai_source(resync=...)`, and load the
    source part after part (`load_until_caught_up`, or `resync.load_resync`).
    """

    start: datetime
    end: datetime
    projects: tuple[str, ...] | None = None
    token: str = field(default_factory=_new_token)

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise ResyncRangeError(f"the range's {name} must be timezone-aware ({value!r})")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.start >= self.end:
            raise ResyncRangeError(
                f"--from ({iso(self.start)}) must be before --to ({iso(self.end)}): the range is empty"
            )
        if self.projects is not None:
            object.__setattr__(self, "projects", tuple(self.projects))

    @classmethod
    def parse(cls, start: str, end: str, projects: Sequence[str] | None = None) -> ResyncRange:
        """The range of the command's `--from` and `--to`."""
        return cls(
            parse_bound(start, "--from"), parse_bound(end, "--to"), tuple(projects) if projects else None
        )

    def again(self) -> ResyncRange:
        """The same range as a resync of its own (a new token)."""
        return dataclasses.replace(self, token=_new_token())

    def check(self, now: datetime) -> None:
        """A range that starts after now has nothing to read: refused rather than silently empty."""
        if self.start >= now:
            raise ResyncRangeError(f"--from ({iso(self.start)}) is in the future (now {iso(now)})")

    def end_at(self, now: datetime) -> datetime:
        """Where reading stops: `end`, or now when `end` lies after it."""
        return min(self.end, now)

    def selects(self, state_key: str) -> bool:
        return self.projects is None or state_key in self.projects


@dataclass(frozen=True)
class ResyncProgress:
    """A project's resync as its state keeps it: the range, how far it was read, what it did."""

    start: str
    # The end asked (ISO 8601 UTC); reading stops at now when it lies after it.
    end: str
    read_to: str
    token: str
    done: bool = False
    parts: int = 0
    conversations: int = 0
    turns: int = 0
    # Read and not in the warehouse's rows of the range before; in the warehouse, not read.
    new: int = 0
    not_served: int = 0
    requests: int = 0
    hidden_transcripts: int = 0
    # Set when this resync picked up one left unfinished: where that one stood.
    continued_from: str | None = None
    # Set when this resync replaced an unfinished one of another range: that one, described.
    replaced: str | None = None
    failure: Mapping[str, Any] | None = None

    @classmethod
    def read(cls, stored: Mapping[str, Any] | None) -> ResyncProgress | None:
        if not stored:
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in stored.items() if name in names})

    def stored(self) -> dict[str, Any]:
        stored = dataclasses.asdict(self)
        return {name: value for name, value in stored.items() if value is not None}

    def describe(self) -> str:
        return f"[{self.start}, {self.end}) read up to {self.read_to}"

    def after_part(self, read_to: datetime, done: bool, counts: Mapping[str, int]) -> ResyncProgress:
        """This progress once a part has read up to `read_to`; `counts` are added up."""
        added = {name: getattr(self, name) + value for name, value in counts.items()}
        return dataclasses.replace(
            self, read_to=iso(read_to), done=done, parts=self.parts + 1, failure=None, **added
        )


def resume(stored: ResyncProgress | None, resync: ResyncRange) -> ResyncProgress:
    """Where `resync` starts for a project whose state holds `stored`.

    - a later part of the same resync (same token): where its last part left it;
    - the same range, left unfinished (a kill, a failure): goes on from where it stood;
    - anything else: from the range's start; an unfinished resync of another range is replaced.
    """
    start, end = iso(resync.start), iso(resync.end)
    if stored is not None and stored.token == resync.token:
        return stored
    if stored is not None and not stored.done and (stored.start, stored.end) == (start, end):
        return dataclasses.replace(stored, token=resync.token, continued_from=stored.read_to)
    replaced = stored.describe() if stored is not None and not stored.done else None
    return ResyncProgress(start=start, end=end, read_to=start, token=resync.token, replaced=replaced)


def resync_windows(
    read_to: datetime,
    end: datetime,
    concurrency: int,
    window_span: timedelta | None = None,
    per_worker: int = SLICES_PER_WORKER,
) -> list[Window]:
    """The windows left to read, in time order, cut as a run cuts its main window."""
    if read_to >= end:
        return []
    if window_span is not None:
        return split_window(read_to, end, window_span)
    span = slice_span(read_to, end, concurrency, per_worker)
    return taper(split_window(read_to, end, span), concurrency)


def read_after(windows: Sequence[Window], handed_out: int, end: datetime) -> tuple[datetime, bool]:
    """How far a part has read once the first `handed_out` windows are read, and whether it is done.

    Windows are handed out in time order (concurrent_windows.WindowQueue): what a part read is
    a prefix of them, and the next part starts where that prefix ends.
    """
    if handed_out >= len(windows):
        return end, True
    if handed_out <= 0:
        raise ValueError("a part reads at least one window before it may stop")
    return windows[handed_out - 1].end, False
