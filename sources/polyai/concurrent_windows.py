"""Fetching many time windows at once: worker threads, bounded decoding, memory handed back.

The client (client.py) pages through one window; this module runs several windows side by
side and hands their pages to the caller's thread in arrival order.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import platform
import queue
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pyarrow as pa

from .client import Page, PolyAIClient
from .typed_pages import is_typed
from .windows import Window

_DONE = object()
# Decoded pages alive at once besides the one the caller is working through: decoding holds
# the GIL, so a second ready page would cost memory (~18 MB per 1000 conversations) and gain
# no parallelism.
DECODED_PAGES = 1
# Conversations handed to the caller at once. Shaping a page into Arrow builds intermediate
# lists and strings about three times the size of the decoded page; slicing bounds them to a
# slice, and each slice's conversations are freed as soon as the caller is done with them.
# Typed pages (typed_pages) are shaped whole: their records are compact, their JSON values
# are views of the page's body, and every item handed to dlt costs ~10 ms of its own work.
PAGE_SLICE = 250


def in_slices(page: Page, size: int) -> Iterator[Page]:
    """`page` as consecutive pages of at most `size` conversations, in order, holding none it gave."""
    remaining = page.conversations[::-1]
    page.conversations = []
    while remaining:
        chunk = [remaining.pop() for _ in range(min(size, len(remaining)))]
        yield Page(chunk, page.window)
        del chunk


class WindowQueue:
    """The run's windows, handed out in order; closing it keeps the rest for the next load.

    The first `always` windows are handed out whatever happens (the re-pulls and one main
    window: every load makes progress), so the windows handed out are always a prefix of the
    list, and a load that stops early knows where the next one starts.
    """

    def __init__(self, windows: list[Window], always: int) -> None:
        self._windows = windows
        self._always = always
        self._lock = threading.Lock()
        self._closed = False
        self.handed_out = 0

    def __len__(self) -> int:
        return len(self._windows)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def take(self) -> Window | None:
        with self._lock:
            position = self.handed_out
            if position >= len(self._windows) or (self._closed and position >= self._always):
                return None
            self.handed_out += 1
            return self._windows[position]


class _Stopped(Exception):
    """The consumer went away; a worker waiting for a slot gives up quietly."""


class PageSlots:
    """A semaphore whose waiters give up when the run stops."""

    def __init__(self, slots: int, stop: threading.Event) -> None:
        self._semaphore = threading.Semaphore(slots)
        self._stop = stop

    def acquire(self) -> None:
        while not self._semaphore.acquire(timeout=0.1):
            if self._stop.is_set():
                raise _Stopped

    def release(self) -> None:
        self._semaphore.release()


# glibc's M_MMAP_THRESHOLD parameter, and the size from which buffers get their own mapping.
_M_MMAP_THRESHOLD = -3
LARGE_BUFFER_BYTES = 1024 * 1024


@functools.cache
def return_large_buffers_to_os() -> bool:
    """Make glibc give every buffer of 1 MB or more its own mapping, unmapped when freed.

    Raw page bodies are ~5 MB each. glibc raises its mmap threshold after the first such
    buffer is freed, so later ones come from the worker threads' heaps, which keep the memory
    after it is freed. At 100k conversations with 4 connections a fixed threshold took the
    extraction's peak RSS from ~350 to ~305 MB, and what the process keeps for the load step
    from ~345 to ~265 MB; the cost is one mmap per large buffer. Elsewhere than glibc this
    does nothing.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES))
    except (OSError, AttributeError):
        return False


def release_freed_memory() -> None:
    """Give the memory freed by the extraction back to the OS before the load step needs it.

    Arrow's allocator and glibc's heaps keep freed memory for reuse; the load step (DuckDB,
    in this process) would add its own on top. At 100k conversations this took what the
    process holds after extracting from ~272 to ~232 MB.
    """
    pa.default_memory_pool().release_unused()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def iter_windows_concurrently(
    client: PolyAIClient,
    windows: WindowQueue,
    concurrency: int,
    decoder: msgspec.json.Decoder | None = None,
) -> Iterator[Page]:
    """Pages of the queue's windows, fetched by up to `concurrency` threads, yielded as they arrive.

    Even with one connection the next page is fetched while the caller shapes the current one.
    Requests and downloads run in parallel; decoding waits for one of DECODED_PAGES slots, so
    memory stays flat whatever the size of the run or the concurrency. The caller's thread
    does everything else (state, shaping).
    """
    if not windows:
        return
    return_large_buffers_to_os()
    stop = threading.Event()
    slots = PageSlots(DECODED_PAGES, stop)
    pages: queue.Queue[Any] = queue.Queue()

    def work() -> None:
        try:
            while not stop.is_set():
                window = windows.take()
                if window is None:
                    return
                for page in client.iter_pages(window, slots, decoder):
                    pages.put(page)
                    # Not kept while the next page is fetched: the consumer owns it now.
                    del page
                    if stop.is_set():
                        return
        except _Stopped:
            return
        except BaseException as error:
            pages.put(error)
        finally:
            pages.put(_DONE)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(min(concurrency, len(windows)))]
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
            else:
                typed = is_typed(item.conversations)
                yield from in_slices(item, len(item.conversations) if typed else PAGE_SLICE)
                # Dropped before waiting for the next page, so that only the pages holding a
                # slot and the one the caller still looks at are alive.
                del item
                slots.release()
    finally:
        stop.set()
        for worker in workers:
            if worker.ident is not None:
                worker.join(timeout=5)
