"""The simulator's clock: real time, or a manual clock that tests move."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class SimClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now if self._now is not None else datetime.now(UTC)

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now = (self._now if self._now is not None else datetime.now(UTC)) + delta
