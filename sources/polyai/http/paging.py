"""Whether one window's paging moves on: pure logic, no I/O.

A server that never ends a window (a cursor sent back as it was asked, a cursor ignored,
empty pages that always carry a cursor, a `next_offset` that does not move) would keep a run
paging forever, adding its repeated pages to the load each time: the retry budget, the
request time limit and max_conversations_per_load all count something else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A page stalls when it brings no conversation not already read in its window, or points
# back to where the window has been (a cursor already asked with, a next_offset not past the
# offset asked). A cache or a retried request may serve a page again once or twice (the
# simulator's repeat_page_twice is loaded exactly); a server that does not page does it on
# every page. The fourth stalled page in a row fails the window: three wasted requests,
# never a loop.
MAX_STALLED_PAGES = 3


@dataclass
class PagingProgress:
    """The positions one window has asked for, and how many pages in a row have stalled."""

    cursors_asked: set[str] = field(default_factory=set)
    stalled: int = 0

    def asking(self, cursor: str | None) -> None:
        if cursor:
            self.cursors_asked.add(cursor)

    def stall(
        self, new: int, received: int, cursor: str | None, next_offset: int | None, offset: int
    ) -> str | None:
        """What was wrong with a page that has a next one, if it stalled; counts it.

        `new` of the `received` conversations were not read before in the window; `offset`
        is the offset the page was asked for.
        """
        problems = []
        if new == 0:
            problems.append("an empty page" if received == 0 else "only conversations already read")
        if cursor and cursor in self.cursors_asked:
            problems.append("a cursor it had already been asked with")
        elif not cursor and next_offset is not None and next_offset <= offset:
            problems.append(f"next_offset {next_offset}, not past the offset asked ({offset})")
        elif new == 0:
            problems.append("a cursor to a next page" if cursor else f"next_offset {next_offset}")
        if not problems:
            self.stalled = 0
            return None
        self.stalled += 1
        return " and ".join(problems)

    @property
    def stuck(self) -> bool:
        return self.stalled > MAX_STALLED_PAGES
