"""dlt's notice that our JSON-text Arrow columns are typed `json` by our hints, dropped.

That difference is intended: dlt has no Arrow type for JSON, and a `json` column that received
`text` instead of the hint would conflict with the tables loaded so far. Left in, the notice
prints on every page of every run and hides warnings that matter.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

NOTICE = "when merging arrow schema"


class _JsonHintNotice(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (threading.get_ident() == self._thread and NOTICE in record.getMessage())


@contextlib.contextmanager
def json_hint_notice_dropped() -> Iterator[None]:
    """Around a transformer's `yield`: dlt compares the table with the hints while it waits there.

    A filter is the only way to drop the notice, on dlt's logger, which is the whole process's:
    so the filter is there only while this thread hands dlt one of the source's tables.
    """
    notice = _JsonHintNotice()
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.addFilter(notice)
    try:
        yield
    finally:
        dlt_logger.removeFilter(notice)
