"""Importing the source changes nothing in the process: environment, logging, imports, allocators.

Someone else's process (an Airflow or Dagster worker) imports the source next to other code;
the command tunes its own process explicitly (pipelines/process_tuning.py, test_allocators.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from datetime import timedelta

import pytest

import sources.polyai
from sources.polyai.dlt_notices import NOTICE
from tests.support.harness import Harness
from tests.support.process_probes import MMAP_THRESHOLD_PROBE, fresh_interpreter

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

SNAPSHOT = """
import json, logging, os, sys

def snapshot():
    loggers = {name: logging.getLogger(name) for name in ("", "dlt", "sources", "sources.polyai")}
    return {
        "environ": dict(os.environ),
        "filters": {name: [repr(f) for f in logger.filters] for name, logger in loggers.items()},
        "handlers": {name: [repr(h) for h in logger.handlers] for name, logger in loggers.items()},
        "record_factory": logging.getLogRecordFactory() is logging.LogRecord,
        "meta_path": [getattr(finder, "__module__", "") for finder in sys.meta_path],
    }
"""


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}


def test_importing_the_source_leaves_the_process_as_it_was() -> None:
    seen = fresh_interpreter(
        SNAPSHOT + "before = snapshot()\n"
        "import sources.polyai\n"
        "after = snapshot()\n"
        "print(json.dumps({'before': before, 'after': after}))",
        environment(),
    )
    before, after = seen["before"], seen["after"]
    for aspect in ("environ", "filters", "handlers", "record_factory"):
        assert after[aspect] == before[aspect], aspect
    # Libraries may add their own finders (six does); this project's code adds none.
    added = [module for module in after["meta_path"] if module not in before["meta_path"]]
    assert not [module for module in added if module.startswith(("sources", "pipelines"))]


@pytest.mark.skipif(not GLIBC, reason="Arrow's pool and glibc's mmap threshold are only tuned with glibc")
def test_importing_the_source_leaves_the_allocators_as_they_were() -> None:
    probe = (
        MMAP_THRESHOLD_PROBE + "import json, os\n{imports}\nimport pyarrow as pa\n"
        "print(json.dumps([pa.default_memory_pool().backend_name, mmap_threshold_fixed(),"
        " 'ARROW_DEFAULT_MEMORY_POOL' in os.environ]))"
    )
    untouched = fresh_interpreter(probe.format(imports=""), environment())
    assert untouched[1:] == [False, False]
    assert fresh_interpreter(probe.format(imports="import sources.polyai"), environment()) == untouched


def test_dlt_notice_on_json_columns_is_dropped_only_while_the_source_hands_dlt_its_tables(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    dlt_logger = logging.getLogger("dlt")
    filters = list(dlt_logger.filters)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    dlt_logger.addHandler(handler)
    try:
        harness.run()
        assert dlt_logger.filters == filters
        # What dlt says about another resource's Arrow tables, outside the source, still shows.
        dlt_logger.warning("In resource: other, when merging arrow schema with dlt schema, ...")
        monkeypatch.setattr(sources.polyai, "json_hint_notice_dropped", contextlib.nullcontext)
        harness.clock.advance(timedelta(hours=1))
        harness.run()
    finally:
        dlt_logger.removeHandler(handler)
    notices = [record.getMessage() for record in records if NOTICE in record.getMessage()]
    assert notices[0] == "In resource: other, when merging arrow schema with dlt schema, ..."
    # Without the filter, dlt notices the `json` hints on the source's Arrow text columns.
    assert {notice.split(",")[0] for notice in notices[1:]} == {
        "In resource: conversations",
        "In resource: turns",
    }
