"""`status` and `reset` as a user runs them: before the first run, after runs, from a fresh folder."""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

from tests.support.command import run_cli
from tests.support.harness import finished_traffic, scheduled_env


def status_json(cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    result = run_cli(cwd, "status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def only_project(document: dict[str, Any]) -> dict[str, Any]:
    projects = document["projects"]
    assert len(projects) == 1, projects
    project: dict[str, Any] = projects[0]
    return project


def table_counts(database: Path) -> tuple[int, int]:
    with duckdb.connect(str(database), read_only=True) as connection:
        conversations = connection.sql("SELECT count(*) FROM polyai.conversations").fetchone()
        turns = connection.sql("SELECT count(*) FROM polyai.turns").fetchone()
    assert conversations is not None and turns is not None
    return int(conversations[0]), int(turns[0])


def test_status_before_and_after_runs_and_from_a_fresh_folder(tmp_path: Path) -> None:
    with finished_traffic(seed=11, n_conversations=120, hours=6) as (simulator, base_url):
        database = tmp_path / "status.duckdb"
        env = scheduled_env(simulator, base_url, database)

        before = only_project(status_json(tmp_path, env))
        assert before["verdict"] == "never run"
        assert before["cursor"] is None and before["last_run"]["outcome"] is None
        assert before["project_id"] == simulator.config.project_id

        run = run_cli(tmp_path, env=env)
        assert run.returncode == 0, run.stderr
        conversations, turns = table_counts(database)
        after = only_project(status_json(tmp_path, env))
        assert after["verdict"] == "ok"
        assert after["cursor"] is not None and 0 <= after["lag_seconds"] < 600
        assert after["rows"] == {"conversations": conversations, "turns": turns}
        assert after["last_run"]["outcome"] == "ok"
        assert after["last_run"]["conversations"] == conversations == len(simulator.truth())
        assert after["last_run"]["requests"] >= 1

        # A worker whose working folder is gone reads the state back from the destination.
        shutil.rmtree(tmp_path / "pipelines")
        restored = only_project(status_json(tmp_path, env))
        assert restored["cursor"] == after["cursor"]
        assert restored["rows"] == after["rows"]

        late = run_cli(tmp_path, "status", "--late-after", "0", env=env)
        assert late.returncode == 0, late.stderr
        assert ": late" in late.stdout and "cursor:" in late.stdout
        assert simulator.config.api_key not in late.stdout + late.stderr


def test_status_after_a_failed_run_names_the_failure(tmp_path: Path) -> None:
    with finished_traffic(seed=12, n_conversations=60, hours=4) as (simulator, base_url):
        env = scheduled_env(simulator, base_url, tmp_path / "failed.duckdb")
        assert run_cli(tmp_path, env=env).returncode == 0
        refused = run_cli(tmp_path, env={**env, "SOURCES__POLYAI__API_KEY": "not-the-key"})
        assert refused.returncode == 2, refused.stdout + refused.stderr
        project = only_project(status_json(tmp_path, env))
        assert project["last_run"]["outcome"] == "failed"
        assert project["last_run"]["failure"]["status"] in (401, 403)
        assert project["cursor"] is not None


def test_status_with_wrong_settings_exits_2(tmp_path: Path) -> None:
    with finished_traffic(seed=13, n_conversations=10, hours=2) as (simulator, base_url):
        env = {
            **scheduled_env(simulator, base_url, tmp_path / "x.duckdb"),
            "SOURCES__POLYAI__CLIENT_ENV": "prod",
        }
        result = run_cli(tmp_path, "status", env=env)
        assert result.returncode == 2
        assert "client_env" in result.stderr and "Traceback" not in result.stderr


def test_reset_refuses_without_yes_then_the_next_run_reads_again_without_duplicates(tmp_path: Path) -> None:
    with finished_traffic(seed=14, n_conversations=90, hours=5) as (simulator, base_url):
        database = tmp_path / "reset.duckdb"
        env = scheduled_env(simulator, base_url, database)
        assert run_cli(tmp_path, env=env).returncode == 0
        loaded = table_counts(database)
        cursor = only_project(status_json(tmp_path, env))["cursor"]

        refused = run_cli(tmp_path, "reset", env=env)
        assert refused.returncode == 2
        assert "--yes" in refused.stderr and "start_date" in refused.stderr
        assert only_project(status_json(tmp_path, env))["cursor"] == cursor

        done = run_cli(tmp_path, "reset", "--yes", env=env)
        assert done.returncode == 0, done.stderr
        # Committed to the destination: a fresh working folder sees the reset too.
        shutil.rmtree(tmp_path / "pipelines")
        assert only_project(status_json(tmp_path, env))["cursor"] is None

        again = run_cli(tmp_path, env=env)
        assert again.returncode == 0, again.stderr
        assert f"loaded {loaded[0]} conversation rows" in again.stdout
        assert table_counts(database) == loaded
        assert only_project(status_json(tmp_path, env))["cursor"] is not None


def test_reset_of_an_unknown_project_changes_nothing(tmp_path: Path) -> None:
    with finished_traffic(seed=15, n_conversations=30, hours=3) as (simulator, base_url):
        env = scheduled_env(simulator, base_url, tmp_path / "unknown.duckdb")
        assert run_cli(tmp_path, env=env).returncode == 0
        cursor = only_project(status_json(tmp_path, env))["cursor"]
        result = run_cli(tmp_path, "reset", "--project", "proj-nope", "--yes", env=env)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "nothing to reset" in result.stderr and "Traceback" not in result.stderr
        assert only_project(status_json(tmp_path, env))["cursor"] == cursor


def test_an_earlier_start_date_after_the_first_run_warns_once_and_names_resync_and_reset(
    tmp_path: Path,
) -> None:
    with finished_traffic(seed=16, n_conversations=40, hours=6) as (simulator, base_url):
        env = scheduled_env(simulator, base_url, tmp_path / "start.duckdb")
        later_start = simulator.config.start + timedelta(hours=3)
        first = run_cli(tmp_path, env={**env, "SOURCES__POLYAI__START_DATE": later_start.isoformat()})
        assert first.returncode == 0, first.stderr
        assert "start_date" not in first.stderr
        earlier = run_cli(tmp_path, env=env)
        assert earlier.returncode == 0, earlier.stderr
        assert "earlier than where this project's reading began" in earlier.stderr
        assert "reset --yes" in earlier.stderr
        again = run_cli(tmp_path, env=env)
        assert again.returncode == 0 and "start_date" not in again.stderr
        # The resync it names reads the earlier range: every conversation is then loaded.
        named = re.search(
            r"`python pipelines/polyai_pipeline.py (resync --from \S+ --to \S+)`", earlier.stderr
        )
        assert named is not None, earlier.stderr
        assert table_counts(tmp_path / "start.duckdb")[0] < len(simulator.truth())
        resync = run_cli(tmp_path, *named.group(1).split(), env=env)
        assert resync.returncode == 0, resync.stderr
        assert table_counts(tmp_path / "start.duckdb")[0] == len(simulator.truth())
