"""A run's figures while it goes, for a caller that shows progress: the source only counts.

The source updates one LiveCounters per run (RunProgress.live, set by iter_load_parts), over
every part of a backfill and every project: conversations and turns as the extraction thread
takes each page, windows as the worker threads finish them, requests and retries as each
project's client counts them. A caller samples it from any thread; nothing here prints.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from .planning import Window


class CountingClient(Protocol):
    """What the counters read of a project's client (http.client.PolyAIClient)."""

    @property
    def requests_made(self) -> int: ...

    @property
    def retries(self) -> int: ...


class FinishedWindows(Protocol):
    """A project's windows of one part (http.concurrent_windows.WindowQueue)."""

    def finished(self) -> frozenset[Window]: ...


@dataclass(frozen=True)
class LiveFigures:
    """One sample of a run's figures; `covered` is the share (0 to 1) of the run's span of
    `started_at` read so far, `reached` the `started_at` read up to (the earliest project's)."""

    conversations: int = 0
    turns: int = 0
    requests: int = 0
    retries: int = 0
    covered: float = 0.0
    reached: datetime | None = None


@dataclass
class _ProjectSpan:
    """One project's span of the run, fixed by its first part: from where it starts reading to
    that part's now. Later parts read up to a later now; beyond the span counts as its end."""

    start: datetime
    end: datetime
    reached: datetime
    # The current part's main windows (in time order) and where its workers mark them finished.
    windows: list[Window] = field(default_factory=list)
    queue: FinishedWindows | None = None

    def advance(self) -> None:
        """`reached` moves to the end of the finished windows that follow one another from the
        part's first one: a window finished after a gap covers nothing yet."""
        if self.queue is None or not self.windows:
            return
        finished = self.queue.finished()
        for window in self.windows:
            if window not in finished:
                break
            self.reached = max(self.reached, min(window.end, self.end))

    @property
    def read(self) -> timedelta:
        return max(self.reached - self.start, timedelta(0))


class LiveCounters:
    """A run's counts so far (see the module's doc); `sample` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conversations = 0
        self._turns = 0
        # Every client of the run: each part has its own, whose counts stay as they were.
        self._clients: list[CountingClient] = []
        self._spans: dict[str, _ProjectSpan] = {}

    def start_part(
        self, project: str, client: CountingClient, main_windows: list[Window], queue: FinishedWindows
    ) -> None:
        """A project's part of the run starts, with its client and the main windows it reads."""
        with self._lock:
            self._clients.append(client)
            span = self._spans.get(project)
            if span is not None:
                # What the last part read, before its windows are let go.
                span.advance()
            if not main_windows:
                if span is not None:
                    span.windows, span.queue = [], None
                return
            if span is None:
                start, end = main_windows[0].start, main_windows[-1].end
                span = self._spans[project] = _ProjectSpan(start, end, reached=start)
            span.windows, span.queue = list(main_windows), queue

    def took(self, conversations: int, turns: int) -> None:
        """The extraction thread took a page: its conversations new to the run, and their turns."""
        with self._lock:
            self._conversations += conversations
            self._turns += turns

    def sample(self) -> LiveFigures:
        with self._lock:
            for span in self._spans.values():
                span.advance()
            spans = list(self._spans.values())
            total = sum((span.end - span.start for span in spans), timedelta(0))
            read = sum((span.read for span in spans), timedelta(0))
            return LiveFigures(
                conversations=self._conversations,
                turns=self._turns,
                requests=sum(client.requests_made for client in self._clients),
                retries=sum(client.retries for client in self._clients),
                covered=min(1.0, read / total) if total else 0.0,
                reached=min((span.reached for span in spans), default=None),
            )
