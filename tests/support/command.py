"""The command as a user runs it, and the DuckDB file it leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "pipelines" / "polyai_pipeline.py"
CRASH_WORKER = ROOT / "tests" / "support" / "crash_worker.py"


def cli_environment(cwd: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its settings, with `env` and a data folder in `cwd`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    environment.update(env or {})
    environment["DLT_DATA_DIR"] = str(cwd / "dlt_data")
    return environment


def cli_command(cwd: Path, *args: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--pipelines-dir", str(cwd / "pipelines"), *args]


def run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(cwd, *args),
        cwd=cwd,
        env=cli_environment(cwd, env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def tables(database: Path) -> tuple[list[dict], list[dict]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        result = []
        for sql in (
            "SELECT * FROM polyai.conversations ORDER BY id",
            "SELECT * FROM polyai.turns ORDER BY conversation_id, turn_index",
        ):
            relation = connection.sql(sql)
            result.append([dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()])
    return result[0], result[1]


def run_crash_worker(base_url: str, tmp_path: Path, now: datetime, kill_at: str, env: dict[str, str]) -> int:
    """tests/support/crash_worker.py in a process of its own, killed at `kill_at` ("none": not).

    Its exit code: 0, or -SIGKILL once killed; any other failure fails the test with its stderr.
    """
    result = subprocess.run(
        [
            sys.executable,
            str(CRASH_WORKER),
            base_url,
            str(tmp_path / "crash.duckdb"),
            str(tmp_path / "pipelines"),
            now.isoformat(),
            kill_at,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    if kill_at == "none" or result.returncode not in (0, -signal.SIGKILL):
        assert result.returncode == 0, result.stderr[-3000:]
    return result.returncode
