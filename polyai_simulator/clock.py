"""The simulator's clock: real time (the demo, the CLI) or a manual clock that tests move."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


def require_utc(moment: datetime, what: str = "datetime") -> datetime:
    """`moment` in UTC; a naive datetime is refused because its zone would be a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)


class SimClock:
    """`SimClock()` follows real time; `SimClock(start)` stands still until `set` or `advance`.

    Moving a real-time clock shifts it by an offset and it keeps ticking, so a demo can jump
    ahead without freezing time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._manual = start is not None
        self._now = require_utc(start, "start") if start is not None else None
        self._offset = timedelta(0)

    @property
    def is_manual(self) -> bool:
        return self._manual

    def now(self) -> datetime:
        with self._lock:
            if self._now is not None:
                return self._now
            return datetime.now(UTC) + self._offset

    def set(self, moment: datetime) -> None:
        moment = require_utc(moment, "moment")
        with self._lock:
            if self._manual:
                self._now = moment
            else:
                self._offset = moment - datetime.now(UTC)

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            if self._now is not None:
                self._now += delta
            else:
                self._offset += delta
