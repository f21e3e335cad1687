"""How each pending conversation is re-pulled: pure functions, no I/O.

A conversation still in progress is re-pulled on later runs by a narrow window around its
`started_at` with the API's `in_progress=false` filter: it comes back once it has finished.
A window that does not return it is ambiguous (still in progress, or a server whose time
filter disagrees with the `started_at` it reports), so after a few misses the re-pull drops
the filter (the conversation comes back in progress or finished), then widens, and after the
widest window the run warns: a conversation is never left pending in silence.
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Mapping
from datetime import timedelta
from typing import Final

from .settings import REPULL_PADDING

# Finished-only re-pulls that may miss a conversation (it is still in progress) before one
# without the filter checks that the API returns it at all.
CHECK_AFTER_MISSES: Final = 2
# Then the window widens on each further miss, from this to WIDEST, on both sides.
WIDEN_FROM: Final = timedelta(minutes=15)
WIDEST: Final = timedelta(hours=8)
# The misses at which the re-pull window is WIDEST.
WIDEST_AFTER_MISSES: Final = CHECK_AFTER_MISSES + 1 + round(math.log2(WIDEST / WIDEN_FROM))


def repull_span(misses: int) -> tuple[timedelta, bool]:
    """(padding on each side of started_at, whether finished-only) after `misses` misses."""
    if misses < CHECK_AFTER_MISSES:
        return REPULL_PADDING, True
    if misses == CHECK_AFTER_MISSES:
        return REPULL_PADDING, False
    return min(WIDEN_FROM * 2 ** (misses - CHECK_AFTER_MISSES - 1), WIDEST), False


def newly_lost(misses: int) -> bool:
    """Whether the conversation has just missed its widest re-pull window too."""
    return misses == WIDEST_AFTER_MISSES + 1


def next_misses(targets: Iterable[str], seen: Container[str], misses: Mapping[str, int]) -> dict[str, int]:
    """The misses after a run: each targeted conversation the run did not see missed once more."""
    return {target: misses.get(target, 0) + 1 for target in targets if target not in seen}
