"""One pipeline run in its own process that SIGKILLs itself at a chosen point (crash tests).

    python tests/support/crash_worker.py BASE_URL DATABASE PIPELINES_DIR NOW_ISO KILL_AT

KILL_AT, one of:
- none; extract:N (after N pages); after_extract; after_normalize; during_load:SECONDS;
- second_load (two pages into a backfill's second load); random:SECONDS (after that long);
- before_extract_commit (the package written, not yet committed); before_normalize_commit;
  after_normalize_commit (committed, its extracted copy not yet deleted);
- after_job:TABLE.KIND (the first load job of that table and kind, e.g. `turns.parquet` for
  the staging copy, `turns.sql` for the merge, `_dlt_pipeline_state` for the state row:
  committed in the destination, before dlt records it done); after_job:TABLE.KIND#N, the Nth
  such job of the run (#2: the second part's, in a backfill of one file per table and part).
POLYAI_TEST_LOAD_OPTIONS: JSON of extra source options.
POLYAI_TEST_RESYNC: JSON {"from": ISO, "to": ISO}: the run is a resync of that range.
POLYAI_TEST_PLAIN_DLT=1: the run is dlt's own `dlt.pipeline(...).run(polyai_source())`, not
the command's runner (for KILL_AT none and after_job:...).
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import dlt  # noqa: E402
from dlt.common.destination.client import RunnableLoadJob  # noqa: E402
from dlt.common.storages.load_storage import LoadStorage  # noqa: E402
from dlt.extract.storage import ExtractStorage  # noqa: E402

from pipelines.runner import make_pipeline, run_load  # noqa: E402
from sources.polyai import ResyncRange, polyai_source  # noqa: E402
from sources.polyai.http import client as client_module  # noqa: E402


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


def kill_after_job(pattern: str) -> None:
    """Dies once the destination has run a load job whose file name matches `pattern`.

    Right after the job's own `run` returns: committed in the destination, and not yet
    recorded by dlt (neither its pending transition nor its move to completed_jobs), the
    instant at which dlt's at-least-once delivery runs the job again.
    """
    pattern, _, nth = pattern.partition("#")
    table, _, kind = pattern.partition(".")
    original = RunnableLoadJob.run_managed
    matched = {"count": 0}

    def run_managed(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = Path(self._file_path).name
        matches = name.startswith(f"{table}.") and (not kind or f".{kind}" in name)
        matched["count"] += matches
        if matches and matched["count"] == int(nth or 1):
            run = self.run

            def run_then_die() -> None:
                run()
                die()

            self.run = run_then_die
        original(self, *args, **kwargs)

    RunnableLoadJob.run_managed = run_managed  # type: ignore[method-assign]


def kill_before_commit(storage: Any) -> None:
    """Dies when `storage` is about to commit a package it has written in full."""

    def die_instead(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        die()

    storage.commit_new_load_package = die_instead


def kill_after_commit(storage: Any) -> None:
    """Dies right after `storage` committed a package, before dlt deletes what it came from."""
    original = storage.commit_new_load_package

    def commit_then_die(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        die()

    storage.commit_new_load_package = commit_then_die


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
    plain = os.environ.get("POLYAI_TEST_PLAIN_DLT") == "1"
    if plain:
        pipeline = dlt.pipeline(
            "crash",
            destination=dlt.destinations.duckdb(database),
            dataset_name="polyai",
            pipelines_dir=pipelines_dir,
        )
    else:
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
    resync = json.loads(os.environ.get("POLYAI_TEST_RESYNC", "null"))
    if resync:
        # One range for every part of this process's resync (one token).
        source = functools.partial(source, resync=ResyncRange.parse(resync["from"], resync["to"]))
    if kill_at.startswith("random:"):
        # A kill at a moment the test drew, wherever the run is then (it may have finished).
        threading.Timer(float(kill_at.split(":")[1]), die).start()
        kill_at = "none"
    if kill_at.startswith("after_job:"):
        kill_after_job(kill_at.split(":", 1)[1])
    elif kill_at == "before_extract_commit":
        kill_before_commit(ExtractStorage)
    elif kill_at == "before_normalize_commit":
        kill_before_commit(LoadStorage)
    elif kill_at == "after_normalize_commit":
        kill_after_commit(LoadStorage)
    if plain:
        pipeline.run(source())
        return
    if kill_at == "none" or kill_at.startswith(("after_job:", "before_", "after_normalize_commit")):
        run_load(pipeline, source)  # the real path: finishes a half-done load first
        return
    if kill_at == "second_load":
        run_load(pipeline, killed_in_second_load(source))
        return
    pipeline.extract(source())
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
