"""Fetching many time windows at once: worker threads, with bounded reading and decoding.

The client (client.py) pages through one window; this module runs several windows side by
side, of one project or of several (each with its own client), and hands their pages to the
caller's thread in arrival order.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import requests

from ..config import ConfigurationError
from ..planning import Window
from ..shaping.typed_pages import is_typed
from .client import InvalidResponseError, Page, PolyAIAPIError, PolyAIClient

_DONE = object()
# Bytes of response bodies read and decoded ahead of the caller (a body stays in its socket
# until it fits: transport.read_within_budget): about one page of 1000 conversations.
# Decoding holds the GIL, so more would cost memory and gain
# no parallelism; a larger page is still decoded when nothing else is. Small pages are many
# per budget, so that a worker does not wait for the caller before its next request: with small
# pages behind a slow API, one page at a time made the workers wait on the caller's per-page work.
DECODE_AHEAD_BYTES = 6 * 1024 * 1024
# Conversations handed to the caller at once. Shaping a page into Arrow builds intermediate
# lists and strings several times the size of the decoded page; slicing bounds them to a
# slice, and each slice's conversations are freed as soon as the caller is done with them.
# Typed pages (typed_pages) are shaped whole: their records are compact, their JSON values
# are views of the page's body, and every item handed to dlt costs dlt work of its own.
PAGE_SLICE = 250


def in_slices(page: Page, size: int) -> Iterator[Page]:
    """`page` as consecutive pages of at most `size` conversations, in order, holding none it gave."""
    remaining = page.conversations[::-1]
    page.conversations = []
    while remaining:
        chunk = [remaining.pop() for _ in range(min(size, len(remaining)))]
        yield Page(chunk, page.window, project=page.project)
        del chunk


class FetchLimit:
    """Conversations fetched by a load, across its projects, against its limit (None: no limit)."""

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit
        self._fetched = 0
        self._lock = threading.Lock()

    def add(self, conversations: int) -> None:
        with self._lock:
            self._fetched += conversations

    @property
    def reached(self) -> bool:
        return bool(self._limit) and self._fetched >= (self._limit or 0)


class WindowQueue:
    """One project's windows, handed out in order, until `limit` conversations have been fetched.

    The windows left are for the next load. The first `always` windows are handed out
    whatever happens (the re-pulls and one main window: every load makes progress), so the
    windows handed out are always a prefix of the list, and a load that stops early knows
    where the next one starts. The projects of one load share one FetchLimit.
    """

    def __init__(self, windows: list[Window], always: int, limit: int | FetchLimit | None = None) -> None:
        self._windows = windows
        self._always = always
        self._limit = limit if isinstance(limit, FetchLimit) else FetchLimit(limit)
        self._lock = threading.Lock()
        self.handed_out = 0
        self._finished: set[Window] = set()

    def __len__(self) -> int:
        return len(self._windows)

    def fetched(self, conversations: int) -> None:
        """Counts what a worker fetched; past `limit`, only the first `always` windows are left."""
        self._limit.add(conversations)

    def take(self) -> Window | None:
        with self._lock:
            position = self.handed_out
            if position >= len(self._windows) or (self._limit.reached and position >= self._always):
                return None
            self.handed_out += 1
            return self._windows[position]

    def done(self, window: Window) -> None:
        """Every page of `window` has been fetched and taken (for the run's live figures)."""
        with self._lock:
            self._finished.add(window)

    def finished(self) -> frozenset[Window]:
        with self._lock:
            return frozenset(self._finished)


# What a project's API can answer that ends that project's run but not the others':
# a refusal, a failure past the retries, an answer that is not the API's.
PROJECT_FAILURES = (PolyAIAPIError, InvalidResponseError, ConfigurationError, requests.RequestException)


@dataclass
class ProjectFetch:
    """One project's part of a run: its client (its key, host and pacing), windows and decoder."""

    client: PolyAIClient
    windows: WindowQueue
    decoder: msgspec.json.Decoder[Any] | None = None


@dataclass
class ProjectFailed:
    """A project's fetch failed (PROJECT_FAILURES): its windows are no longer handed out."""

    project: int
    error: Exception


@dataclass
class RunQueue:
    """The windows of all projects of a run, one project's after the other's in turn."""

    projects: Sequence[ProjectFetch]
    _failed: set[int] = field(default_factory=set)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return sum(len(project.windows) for project in self.projects)

    def take(self) -> tuple[int, Window] | None:
        with self._lock:
            count = len(self.projects)
            for step in range(count):
                index = (self._next + step) % count
                window = None if index in self._failed else self.projects[index].windows.take()
                if window is not None:
                    self._next = index + 1
                    return index, window
            return None

    def fail(self, index: int) -> None:
        with self._lock:
            self._failed.add(index)


@dataclass
class _WindowDone:
    """A worker put every page of `window` on the queue: once the caller has taken them, the
    window counts as read (WindowQueue.done, for the run's live figures)."""

    project: int
    window: Window


class _Stopped(Exception):
    """The consumer went away; a worker waiting for room to decode gives up quietly."""


class DecodeBudget:
    """A budget of body bytes read and decoded at once, whose waiters give up when the run stops.

    A body is let in when it fits in what is left, or when nothing is decoded at all, so a
    body larger than the whole budget still goes through, alone.
    """

    def __init__(self, budget: int, stop: threading.Event) -> None:
        self._budget = budget
        self._in_use = 0
        self._changed = threading.Condition()
        self._stop = stop

    def acquire(self, size: int) -> None:
        with self._changed:
            while self._in_use and self._in_use + size > self._budget:
                if self._stop.is_set():
                    raise _Stopped
                self._changed.wait(timeout=0.1)
            self._in_use += size

    def release(self, size: int) -> None:
        with self._changed:
            self._in_use -= size
            self._changed.notify_all()


def iter_projects_concurrently(runs: RunQueue, concurrency: int) -> Iterator[Page | ProjectFailed]:
    """Pages of the queue's windows, fetched by up to `concurrency` threads, yielded as they arrive.

    Each page names its project (`Page.project`, an index into `runs.projects`). A project
    whose fetch fails (PROJECT_FAILURES) is reported once, as ProjectFailed, and the other
    projects go on; its pages fetched before are still yielded. Any other error is raised.

    Even with one connection the next page is fetched while the caller shapes the current one.
    Requests and downloads run in parallel; decoding waits for room in DECODE_AHEAD_BYTES, so
    memory stays flat whatever the size of the run or the concurrency. The caller's thread
    does everything else (state, shaping).
    """
    if not runs:
        return
    stop = threading.Event()
    budget = DecodeBudget(DECODE_AHEAD_BYTES, stop)
    pages: queue.Queue[Any] = queue.Queue()
    fetch = functools.partial(fetch_windows, runs, budget, pages, stop)
    workers = [threading.Thread(target=fetch, daemon=True) for _ in range(min(concurrency, len(runs)))]
    # One request goes first and the others follow its answer: a wrong key or setting costs
    # one refused request, not one per connection.
    workers[0].start()
    waiting = workers[1:]
    running = len(workers)
    try:
        while running:
            item = pages.get()
            if waiting and not isinstance(item, BaseException):
                for worker in waiting:
                    worker.start()
                waiting = []
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            elif isinstance(item, ProjectFailed):
                yield item
            elif isinstance(item, _WindowDone):
                # The caller has taken the window's pages: it resumed this generator for more.
                runs.projects[item.project].windows.done(item.window)
            else:
                typed, body_bytes = is_typed(item.conversations), item.body_bytes
                yield from in_slices(item, len(item.conversations) if typed else PAGE_SLICE)
                # Dropped before waiting for the next page, so that only the pages within the
                # budget and the one the caller still looks at are alive.
                del item
                budget.release(body_bytes)
    finally:
        stop.set()
        for worker in workers:
            if worker.ident is not None:
                worker.join(timeout=5)


def fetch_windows(
    runs: RunQueue, budget: DecodeBudget, pages: queue.Queue[Any], stop: threading.Event
) -> None:
    """One worker: the pages of the windows it takes from the queue, put on `pages`, then _DONE."""
    try:
        while not stop.is_set():
            task = runs.take()
            if task is None:
                return
            index, window = task
            try:
                fetch_window(runs.projects[index], index, window, budget, pages, stop)
            except PROJECT_FAILURES as error:
                runs.fail(index)
                pages.put(ProjectFailed(index, error))
    except _Stopped:
        return
    except BaseException as error:
        pages.put(error)
    finally:
        pages.put(_DONE)


def fetch_window(
    project: ProjectFetch,
    index: int,
    window: Window,
    budget: DecodeBudget,
    pages: queue.Queue[Any],
    stop: threading.Event,
) -> None:
    for page in project.client.iter_pages(window, budget, project.decoder):
        page.project = index
        project.windows.fetched(len(page.conversations))
        pages.put(page)
        # Not kept while the next page is fetched: the consumer owns it now.
        del page
        if stop.is_set():
            return
    pages.put(_WindowDone(index, window))
