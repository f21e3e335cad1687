"""`resync` as a user runs it: a subprocess of the command, exactly as the README documents it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
from tests.support.command import run_cli, tables
from tests.support.harness import scheduled_env
from tests.support.truth import compare_tables


def has_turns_table(connection: duckdb.DuckDBPyConnection) -> bool:
    found = connection.sql(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'polyai' AND table_name = 'turns'"
    ).fetchone()
    return found is not None and found[0] == 1


def hollow_count(database: Path) -> int:
    """Conversations with turns at the API and none loaded (every one, before any turn is loaded)."""
    with duckdb.connect(str(database), read_only=True) as connection:
        no_turns = ""
        if has_turns_table(connection):
            no_turns = " AND NOT EXISTS (SELECT 1 FROM polyai.turns AS t WHERE t.conversation_id = c.id)"
        row = connection.sql(
            f"SELECT count(*) FROM polyai.conversations AS c WHERE num_turns > 0{no_turns}"
        ).fetchone()
    assert row is not None
    return int(row[0])


def written(cwd: Path, database: Path) -> tuple[object, ...]:
    """What a write would change: the DuckDB file's bytes, its rows, the working folder's state."""
    with duckdb.connect(str(database), read_only=True) as connection:
        names = connection.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'polyai' ORDER BY 1"
        ).fetchall()
        rows = {
            name: connection.sql(f"SELECT * FROM polyai.{name} ORDER BY ALL").fetchall() for (name,) in names
        }
    local = sorted(
        (str(path.relative_to(cwd)), hashlib.sha256(path.read_bytes()).hexdigest())
        for path in (cwd / "pipelines").rglob("state.json")
    )
    return hashlib.sha256(database.read_bytes()).hexdigest(), rows, local


@contextmanager
def ended_traffic() -> Iterator[tuple[Simulator, str]]:
    """On the real clock, traffic that ended an hour ago, every conversation finished."""
    clock = SimClock()
    now = clock.now()
    config = SimConfig(
        seed=41,
        n_conversations=150,
        start=now - timedelta(hours=8),
        end=now - timedelta(hours=1),
        long_running_fraction=0,
    )
    with SimulatorServer(Simulator(config, clock)) as server:
        yield server.simulator, server.base_url


def test_resync_dry_run_then_resync_restore_hidden_transcripts(tmp_path: Path) -> None:
    with ended_traffic() as (simulator, base_url):
        assert not any(c["in_progress"] for c in simulator.truth())
        database = tmp_path / "resync.duckdb"
        env = scheduled_env(simulator, base_url, database)
        simulator.config.transcripts_enabled = False
        assert run_cli(tmp_path, env=env).returncode == 0
        simulator.config.transcripts_enabled = True
        assert run_cli(tmp_path, env=env).returncode == 0
        hidden = hollow_count(database)
        assert hidden > 50
        start = simulator.config.start.isoformat()
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()

        before = written(tmp_path, database)
        dry = run_cli(tmp_path, "resync", "--from", start, "--to", later, "--dry-run", env=env)
        assert dry.returncode == 0, dry.stderr
        assert written(tmp_path, database) == before, "the dry run wrote something"
        assert "nothing was written" in dry.stdout and "is after now: read up to now" in dry.stdout
        assert f"changed: {hidden} (turns {hidden})" in dry.stdout, dry.stdout
        assert "new (not loaded yet): 0" in dry.stdout and "(would be kept): 0" in dry.stdout

        done = run_cli(tmp_path, "resync", "--from", start, "--to", later, env=env)
        assert done.returncode == 0, done.stderr
        conversations, turns = tables(database)
        problems = compare_tables(simulator.truth(), conversations, turns)
        assert not problems, "\n".join(problems[:20])
        visible = len(simulator.truth())
        assert f"done in 1 load(s): read {visible} conversations" in done.stdout, done.stdout
        assert (
            f"replaced {visible}, new (not loaded before) 0, no longer served by the API (kept) 0"
            in done.stdout
        )
        assert re.search(r"cursor unchanged: \S+", done.stdout)

        again = run_cli(tmp_path, "resync", "--from", start, "--to", later, "--dry-run", env=env)
        assert "changed: 0" in again.stdout and f"unchanged: {visible}" in again.stdout, again.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--from", "2026-13-01", "--to", "2026-12-02"],
            "--from is not an ISO 8601 date-time ('2026-13-01')",
        ),
        (["--from", "2026-11-03", "--to", "2026-11-02"], "must be before --to"),
        (["--from", "2026-11-03", "--to", "2026-11-03"], "must be before --to"),
        (["--from", "2999-01-01", "--to", "2999-01-02"], "is in the future"),
        (["--from", "2026-11-01", "--to", "2026-11-02", "--project", "proj-nope"], "no configured project"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path: Path, arguments: list[str], message: str) -> None:
    env = {
        "SOURCES__POLYAI__API_KEY": "sim-secret-key",
        "SOURCES__POLYAI__ACCOUNT_ID": "acc-demo",
        "SOURCES__POLYAI__PROJECT_ID": "proj-demo",
        "SOURCES__POLYAI__BASE_URL": "http://127.0.0.1:9",
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "none.duckdb"),
    }
    result = run_cli(tmp_path, "resync", *arguments, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: resync: "), result.stderr
    assert message in lines[0]
    assert not (tmp_path / "none.duckdb").exists()
