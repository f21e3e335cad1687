"""Hostile paging (SimConfig.paging_fault): pages served again, cursors and offsets that do not move.

Off by default. Each mode is a way a real server or a cache in front of it has been seen to
page wrongly; tests switch one on to prove a client neither loads a page twice nor loops.

- `repeat_page` / `repeat_page_twice`: a request with a cursor is first answered, once or
  twice, with the page that returned that cursor, cursor included (a stale cache); then with
  the right page.
- `same_cursor`: every page sends back the cursor it was asked with, so the client asks for
  the same page forever.
- `ignore_cursor`: the cursor is ignored: the first page again, with a cursor, every time.
- `empty_page_with_cursor`: the last page carries a cursor, and so does every empty page after
  it, each a fresh token (a server whose tokens carry a timestamp).
- `stuck_offset`: `next_offset` is the offset asked for, on every page, even past the end.
"""

from __future__ import annotations

import base64
import itertools
import threading
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:  # query imports the generator, which imports config, which imports this
    from .query import PageRequest, Query

PAGING_FAULTS = (
    "repeat_page",
    "repeat_page_twice",
    "same_cursor",
    "ignore_cursor",
    "empty_page_with_cursor",
    "stuck_offset",
)
REPEATS = {"repeat_page": 1, "repeat_page_twice": 2}


def fresh_cursor(last_id: str, query: Query, serial: int) -> str:
    """A cursor that resumes after `last_id` like any other, but is a new token every time."""
    raw = orjson.dumps({"after": last_id, "q": query.fingerprint(), "n": serial})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class PageRepeats:
    """Responses to serve again (`repeat_page*`), keyed by the position their cursor resumes at."""

    def __init__(self) -> None:
        self._again: dict[tuple[str, Query], tuple[bytes, list[str], int]] = {}
        self._lock = threading.Lock()
        self._serials = itertools.count(1)

    def next_serial(self) -> int:
        return next(self._serials)

    def served_again(self, mode: str | None, request: PageRequest) -> tuple[bytes, list[str]] | None:
        """The earlier response this request gets instead of its page, if the mode repeats it."""
        if mode not in REPEATS or request.after_id is None:
            return None
        key = (request.after_id, request.query)
        with self._lock:
            stored = self._again.get(key)
            if stored is None:
                return None
            body, ids, left = stored
            if left <= 1:
                del self._again[key]
            else:
                self._again[key] = (body, ids, left - 1)
        return body, ids

    def remember(
        self, mode: str | None, request: PageRequest, last_id: str | None, body: bytes, ids: list[str]
    ) -> None:
        """Keeps a response whose cursor resumes after `last_id`, to serve it again."""
        if mode in REPEATS and last_id is not None:
            with self._lock:
                self._again[(last_id, request.query)] = (body, ids, REPEATS[mode])
