"""One pipeline run in its own process that SIGKILLs itself at a chosen point (crash tests).

    python tests/crash_worker.py BASE_URL DATABASE PIPELINES_DIR NOW_ISO KILL_AT

KILL_AT: none | extract:N (after N pages) | after_extract | after_normalize | during_load:SECONDS
| second_load (two pages into a backfill's second load). POLYAI_TEST_LOAD_OPTIONS: JSON of
extra source options.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dlt  # noqa: E402

from pipelines.runner import FILE_FORMATS, make_pipeline, run_load  # noqa: E402
from sources.polyai import client as client_module  # noqa: E402
from sources.polyai import polyai_source  # noqa: E402


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after_pages(count: int) -> None:
    original = client_module.PolyAIClient.iter_pages
    seen = {"pages": 0}

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        for page in original(self, *args, **kwargs):
            seen["pages"] += 1
            if seen["pages"] > count:
                die()
            yield page

    client_module.PolyAIClient.iter_pages = counting  # type: ignore[method-assign]


def killed_in_second_load(make_source: Callable[[], Any]) -> Callable[[], Any]:
    """A source factory whose second source dies after two pages: the first load is committed."""
    calls = {"count": 0}

    def make() -> Any:
        calls["count"] += 1
        if calls["count"] == 2:
            kill_after_pages(2)
        return make_source()

    return make


def main(base_url: str, database: str, pipelines_dir: str, now_iso: str, kill_at: str) -> None:
    now = datetime.fromisoformat(now_iso)
    if kill_at.startswith("extract:"):
        kill_after_pages(int(kill_at.split(":")[1]))
    pipeline = make_pipeline("crash", dlt.destinations.duckdb(database), "polyai", pipelines_dir)
    # Extra source options from the test, e.g. loads of a few conversations.
    load_options = json.loads(os.environ.get("POLYAI_TEST_LOAD_OPTIONS", "{}"))
    source = functools.partial(
        polyai_source,
        **load_options,
        api_key="sim-secret-key",
        account_id="acc-demo",
        project_id="proj-demo",
        base_url=base_url,
        start_date="2026-11-02T08:00:00+00:00",
        limit=5,
        concurrency=2,
        clock=lambda: now,
    )
    if kill_at == "none":
        run_load(pipeline, source)  # the real path: finishes a half-done load first
        return
    if kill_at == "second_load":
        run_load(pipeline, killed_in_second_load(source))
        return
    pipeline.extract(source(), loader_file_format=FILE_FORMATS["duckdb"])
    if kill_at == "after_extract":
        die()
    pipeline.normalize()
    if kill_at == "after_normalize":
        die()
    if kill_at.startswith("during_load:"):
        threading.Timer(float(kill_at.split(":")[1]), die).start()
    pipeline.load()


if __name__ == "__main__":
    main(*sys.argv[1:6])
