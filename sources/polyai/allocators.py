"""What the extraction asks of the process's allocators once it is done: nothing, unless asked to.

Handing freed memory back to the OS acts on the whole process, so the source does not decide
it: a process that runs only the connector opts in (pipelines/process_tuning.py), and the
source then calls that back after each extraction, before dlt's load step.
"""

from __future__ import annotations

from collections.abc import Callable

_after_extraction: list[Callable[[], None]] = []


def after_extraction(callback: Callable[[], None]) -> None:
    """Has `callback` called each time the source has read all of its pages (once is enough)."""
    if callback not in _after_extraction:
        _after_extraction.append(callback)


def extraction_done() -> None:
    for callback in _after_extraction:
        callback()
