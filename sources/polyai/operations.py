"""Running a pipeline safely on a shared machine: one run at a time per working folder, a clear
message for a DuckDB file someone holds open, a working folder that does not grow for ever, and
no destination that would load duplicates."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import dlt
from dlt.common.storages import FileStorage, LoadStorage, NormalizeStorage, PackageStorage
from filelock import FileLock, Timeout

from .run_history import forget_rows_of_loads

logger = logging.getLogger(__name__)

# Loaded packages kept in `load/loaded/` after a good load: dlt's `dlt pipeline ... load-package`
# shows the last one, and the last two let a merge be compared with the one before it.
KEEP_LOADED_PACKAGES = 2
# Rows of the pipeline's state kept in the destination's `_dlt_pipeline_state`: dlt adds one
# with every load that changed the state and reads only the newest, so the table would grow by
# a full copy of the state (and its pending set) per run, for ever.
KEEP_STATE_ROWS = 3
# DuckDB's message when another process holds the file: "Could not set lock on file "<path>":
# Conflicting lock is held in <program> (PID <n>) by user <u>."
DUCKDB_LOCK_HELD = re.compile(
    r"Could not set lock on file \"?(?P<file>[^\"]*?)\"?: "
    r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)"
)


class PipelineBusy(Exception):
    """Another run of the same pipeline (same working folder) is going on."""


class DestinationBusy(Exception):
    """The DuckDB file is held open by another process."""


class DestinationRefused(Exception):
    """A destination this connector would load duplicates into."""


def lock_path(pipeline: dlt.Pipeline) -> Path:
    # Beside the working folder, not inside it: dlt deletes and recreates that folder (dev mode,
    # `dlt pipeline drop`), which would delete a lock that a running process holds.
    return Path(pipeline.pipelines_dir) / f"{pipeline.pipeline_name}.lock"


@contextlib.contextmanager
def pipeline_lock(pipeline: dlt.Pipeline) -> Iterator[None]:
    """Holds the pipeline's lock for one run; a second run of it fails at once with PipelineBusy.

    Two runs of one pipeline share dlt's working folder: each would normalize or load the
    other's packages, and their state would race. The lock is an OS lock (flock), so a run that
    is killed releases it; the file holds the PID of the run that has it.
    """
    path = lock_path(pipeline)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise PipelineBusy(
            f"another run of pipeline {pipeline.pipeline_name} is going on (PID {holder_pid(path)}, "
            f"lock file {path}): this run stopped without touching anything. Let that run finish; "
            "if it is stuck, stop that process (a killed run releases the lock), then run again."
        ) from None
    try:
        # The lock file is truncated when taken: write the PID after, for the message above.
        with contextlib.suppress(OSError):  # the PID only serves that message
            path.write_text(f"{os.getpid()}\n", encoding="utf-8")
        yield
    finally:
        lock.release()


def holder_pid(path: Path) -> str:
    with contextlib.suppress(OSError):
        pid = path.read_text(encoding="utf-8").strip()
        if pid:
            return pid
    return "unknown"


def duckdb_lock_message(error: BaseException) -> str | None:
    """What to do about a DuckDB file another process holds, if that is what `error` is about."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        match = DUCKDB_LOCK_HELD.search(str(current))
        if match is not None:
            return (
                f"the DuckDB file {match['file']} is open in another process: {match['program']} "
                f"(PID {match['pid']}). DuckDB lets one process write to a file, and none while "
                "another has it open, even read-only. Close that session (or its connection), "
                "then run again; to read while loads run, open a copy of the file, or connect "
                "read-only only between runs."
            )
        current = current.__cause__ or current.__context__
    return None


def refuse_appending_destination(pipeline: dlt.Pipeline) -> None:
    """Fails at once for dlt's plain filesystem destination: it cannot merge, so dlt appends
    every conversation and turn loaded again (a re-pulled conversation, the lookback)."""
    destination = pipeline.destination
    if destination is None or not destination.destination_type.endswith(".filesystem"):
        return
    raise DestinationRefused(
        "destination filesystem: dlt's plain filesystem destination cannot merge, so every "
        "conversation loaded again (the lookback, the re-pulls of conversations in progress) "
        "would be appended as a duplicate. Files in a bucket need a table format that merges "
        '(dlt\'s table_format="delta" or "iceberg"), which this connector does not set up yet: '
        "load into duckdb, postgres, bigquery or snowflake."
    )


def prune_working_folder(pipeline: dlt.Pipeline, keep: int = KEEP_LOADED_PACKAGES) -> None:
    """After a good load: deletes what dlt will never read again.

    - loaded packages but the last `keep` (`load/loaded/<load id>`): dlt only reads them to show
      them (`dlt pipeline ... load-package`); the destination and the state hold what was loaded.
    - extract folders of extracts that failed or were killed (`normalize/<random id>/`): each
      extract writes into a folder of its own and moves the finished package to
      `normalize/extracted/`, which a rerun finishes; an unfinished folder is never used again.
    Packages extracted or normalized but not loaded stay: the next run loads them.
    """
    working_dir = Path(pipeline.working_dir)
    loaded_dir = working_dir / "load" / LoadStorage.LOADED_FOLDER
    if loaded_dir.is_dir():
        loaded = PackageStorage(FileStorage(str(loaded_dir)), "loaded")
        for load_id in sorted(loaded.list_packages(), key=float)[:-keep] if keep else loaded.list_packages():
            loaded.delete_package(load_id)
    normalize_dir = working_dir / "normalize"
    if normalize_dir.is_dir():
        for folder in normalize_dir.iterdir():
            if folder.is_dir() and folder.name != NormalizeStorage.EXTRACTED_FOLDER:
                logger.info("deleting %s, left by an extract that did not finish", folder)
                shutil.rmtree(folder, ignore_errors=True)


def drop_extracts_already_normalized(pipeline: dlt.Pipeline) -> list[str]:
    """Deletes extracted packages whose normalized (or loaded) package exists already.

    A run killed after dlt's normalize step committed a package (`load/normalized/<id>`) and
    before it deleted the extracted copy leaves both: every later run normalizes that copy
    again and fails for ever on the package that exists ("Directory not empty"). The committed
    package is complete (a rename), so the copy, and the half-written `load/new/<id>` that the
    failed runs left, go.
    """
    working_dir = Path(pipeline.working_dir)
    extracted_dir = working_dir / "normalize" / NormalizeStorage.EXTRACTED_FOLDER
    if not extracted_dir.is_dir():
        return []
    committed: set[str] = set()
    for folder in (LoadStorage.NORMALIZED_FOLDER, LoadStorage.LOADED_FOLDER):
        packages = working_dir / "load" / folder
        if packages.is_dir():
            committed |= {package.name for package in packages.iterdir() if package.is_dir()}
    stale = sorted(package.name for package in extracted_dir.iterdir() if package.name in committed)
    for load_id in stale:
        shutil.rmtree(extracted_dir / load_id)
        shutil.rmtree(working_dir / "load" / LoadStorage.NEW_PACKAGES_FOLDER / load_id, ignore_errors=True)
    if stale:
        logger.warning(
            "a run was killed right after normalizing package %s: its extracted copy is deleted "
            "and the normalized package is loaded",
            ", ".join(stale),
        )
    return stale


def folder_size(path: str | Path) -> int:
    """Bytes in the files under `path`."""
    return sum(file.stat().st_size for file in Path(path).rglob("*") if file.is_file())


def abort_started_loads(pipeline: dlt.Pipeline) -> list[str]:
    """Packages whose load had begun are aborted, their state rolled back, not resumed.

    dlt's load jobs are at-least-once: a process killed after the destination committed a
    staging copy, and before dlt recorded it, copies the same file again when the package is
    resumed, and the merges (told that the source sends each row once) would insert those rows
    twice. An aborted package leaves the pipeline's state where it was before that package, so
    this run reads the same range again into a fresh package: it costs the reading of one part,
    and the merges replace whatever the aborted package had already merged; its rows of the run
    history are deleted (the new package has its own). Packages whose load
    had not begun are finished as dlt does.
    """
    started = [
        load_id for load_id in pipeline.list_normalized_load_packages() if load_began(pipeline, load_id)
    ]
    if not started:
        return []
    logger.warning(
        "a load was interrupted in the middle (package %s): it is aborted and its range read again, "
        "so that no row it had already copied lands twice",
        ", ".join(started),
    )
    pipeline.abort_packages()
    forget_rows_of_loads(pipeline, started)
    return started


def load_began(pipeline: dlt.Pipeline, load_id: str) -> bool:
    """Whether any load job of the package ran (or may have run) in the destination."""
    info = pipeline.get_load_package_info(load_id)
    jobs = info.jobs
    return bool(
        info.has_pending_transitions
        or jobs.get("started_jobs")
        or jobs.get("completed_jobs")
        or jobs.get("failed_jobs")
        or any(job.job_file_info.retry_count > 0 for job in jobs.get("new_jobs", []))
    )


def prune_state_history(pipeline: dlt.Pipeline, keep: int = KEEP_STATE_ROWS) -> None:
    """Deletes this pipeline's rows of `_dlt_pipeline_state` but the newest `keep`.

    dlt restores the state from the newest row of a completed load, written in the same load
    as the data it describes; an older row is never read again. Rows are told apart by the
    state version, which only grows along a pipeline's history, so the newest row (the local
    state's version) is never deleted. Another pipeline's rows in the same dataset are kept.
    A destination without SQL, or a delete it refuses, leaves the rows as they are.
    """
    version = pipeline.state.get("_state_version")
    if not isinstance(version, int) or version <= keep:
        return
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(pipeline.default_schema.state_table_name)
            client.execute_sql(
                f"DELETE FROM {table} WHERE pipeline_name = %s AND version <= %s",
                pipeline.pipeline_name,
                version - keep,
            )
    except Exception as error:
        # Housekeeping: the load is committed whatever happens here.
        logger.warning("could not prune old rows of the pipeline state table: %s", error)
