"""Paging progress: which repeated cursors are survived and which stall the load (the runs:
tests/integration/test_hostile_paging.py)."""

from __future__ import annotations

from sources.polyai.http.paging import MAX_STALLED_PAGES, PagingProgress


def test_two_stalled_pages_in_a_row_are_survived_and_the_fourth_fails() -> None:
    progress = PagingProgress()
    progress.asking(None)
    assert progress.stall(20, 20, "c1", None, 0) is None
    progress.asking("c1")
    for _ in range(2):
        assert progress.stall(0, 20, "c1", None, 0) is not None
        assert not progress.stuck
    assert progress.stall(20, 20, "c2", None, 0) is None
    assert progress.stalled == 0
    progress.asking("c2")
    for _ in range(MAX_STALLED_PAGES):
        progress.stall(0, 0, "fresh", None, 0)
        assert not progress.stuck
    assert progress.stall(0, 0, "fresher", None, 0) == "an empty page and a cursor to a next page"
    assert progress.stuck


def test_new_conversations_under_a_cursor_already_used_still_stall() -> None:
    progress = PagingProgress()
    progress.asking("c1")
    assert progress.stall(5, 5, "c1", None, 0) == "a cursor it had already been asked with"
    assert progress.stall(5, 5, None, 40, 40) == "next_offset 40, not past the offset asked (40)"
    assert progress.stalled == 2
