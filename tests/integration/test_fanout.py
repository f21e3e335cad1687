"""Fan-out: one pipeline per project, loaded at the same time into one PostgreSQL dataset.

The fan-out DAG's task runs in two processes (two Airflow workers) against two simulators (two
projects, two keys, different seeds), started at one instant. Each project must end exactly at
its truth, in the one dataset, through its own pipeline and staging dataset.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from examples.polyai_projects import (
    ProjectsSettingError,
    pipeline_name,
    project_entries,
    project_entry,
    project_ids,
    staging_layout,
)
from tests.support.fanout import (
    Project,
    fanout_env,
    finish,
    project_problems,
    project_simulators,
    query,
    run_workers,
    start_worker,
)
from tests.support.warehouses import Warehouse


@pytest.fixture
def postgres_url(postgres: Warehouse) -> str:
    return str(postgres.destination().config_params["credentials"])


@pytest.fixture
def two_projects(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[Project], dict[str, str]]]:
    with project_simulators([41, 42]) as projects:
        env = fanout_env(projects, postgres_url, tmp_path / "dlt")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield projects, env


def fresh_dataset() -> str:
    return f"fanout_{uuid.uuid4().hex[:8]}"


def check_workers(results: list, projects: list[Project]) -> None:
    for result in results:
        assert result.returncode == 0, result.output[-3000:]
        for project in projects:
            assert project.simulator.config.api_key not in result.output


@pytest.mark.parametrize("round_", [1, 2])
def test_two_projects_loaded_at_once_each_end_at_their_truth(
    two_projects: tuple[list[Project], dict[str, str]], postgres_url: str, tmp_path: Path, round_: int
) -> None:
    projects, env = two_projects
    dataset = fresh_dataset()
    ids = [project.project_id for project in projects]
    check_workers(run_workers(ids, dataset, env), projects)
    for project in projects:
        assert project_problems(project, postgres_url, dataset, tmp_path / "first") == []
    # The next hour, on fresh workers: each pipeline's state comes back from the warehouse.
    env = {**env, "DLT_DATA_DIR": str(tmp_path / f"fresh_{round_}")}
    results = run_workers(ids, dataset, env)
    check_workers(results, projects)
    for result in results:
        assert "loaded 0 conversation rows" in result.output, result.output[-2000:]
    for project in projects:
        assert project_problems(project, postgres_url, dataset, tmp_path / "second") == []
    schemas = {row[0] for row in query(postgres_url, "SELECT schema_name FROM information_schema.schemata")}
    assert {f"{dataset}_staging_proj_a", f"{dataset}_staging_proj_b"} <= schemas
    assert f"{dataset}_staging" not in schemas
    names = query(postgres_url, f"SELECT DISTINCT pipeline_name FROM {dataset}._dlt_pipeline_state")
    assert sorted(name for (name,) in names) == ["polyai_proj_a", "polyai_proj_b"]


def test_the_projects_setting_from_json_and_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [
        {"project_id": "Proj-A.1", "api_key": "secret-a"},
        {"project_id": "proj-b", "region": "eu-west-1"},
    ]
    monkeypatch.setenv("SOURCES__POLYAI__PROJECTS", json.dumps(entries))
    assert project_entries() == entries
    assert project_ids() == ["Proj-A.1", "proj-b"]
    assert project_entry("proj-b") == entries[1]
    assert pipeline_name("Proj-A.1") == "polyai_proj_a_1"
    assert staging_layout("Proj-A.1") == "%s_staging_proj_a_1"
    for broken in ('[{"project_id": "a"}, {"project_id": "A"}]', "[{}]", "[]", '{"api_key": "secret-a"'):
        monkeypatch.setenv("SOURCES__POLYAI__PROJECTS", broken)
        with pytest.raises(ProjectsSettingError) as error:
            project_entries()
        assert "secret-a" not in str(error.value)
    monkeypatch.delenv("SOURCES__POLYAI__PROJECTS")
    with pytest.raises(ProjectsSettingError, match="is not set"):
        project_entries()


@pytest.mark.parametrize("retries", [0, 3])
def test_a_task_that_loses_the_race_for_the_dataset_loads_again(
    two_projects: tuple[list[Project], dict[str, str]], postgres_url: str, tmp_path: Path, retries: int
) -> None:
    """The race, made certain: another load is creating the dataset when the task creates it."""
    import psycopg2

    projects, env = two_projects
    dataset = fresh_dataset()
    other_load, observer = psycopg2.connect(postgres_url), psycopg2.connect(postgres_url)
    # pg_stat_activity is read once per transaction: the observer's each query is its own.
    observer.autocommit = True
    try:
        with other_load.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {dataset}")  # not committed yet: the task cannot see it
        worker = start_worker(projects[0].project_id, dataset, env, retries=retries)
        with observer.cursor() as cursor:
            wait_until_blocked(cursor, f"CREATE SCHEMA%{dataset}%")
        other_load.commit()
        result = finish(projects[0].project_id, worker)
    finally:
        other_load.close()
        observer.close()
    if retries == 0:
        assert result.returncode != 0 and "SchemaUpdate" in result.output, result.output[-2000:]
        return
    check_workers([result], projects)
    assert "a parallel load changed the schema first: loading again" in result.output
    assert project_problems(projects[0], postgres_url, dataset, tmp_path / "reader") == []


def wait_until_blocked(cursor: Any, statement: str, sessions: int = 1) -> None:
    """Until `sessions` sessions wait for a lock in `statement` (another session holds it)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            (statement,),
        )
        if cursor.fetchone()[0] >= sessions:
            return
        time.sleep(0.2)
    pytest.fail(f"no session waited on {statement}")


@pytest.mark.parametrize("staging", ["one per project", "shared"])
def test_merges_that_wait_for_each_other_stay_apart_with_a_staging_dataset_each(
    two_projects: tuple[list[Project], dict[str, str]], postgres_url: str, tmp_path: Path, staging: str
) -> None:
    """Both tasks stage their rows, then merge: made certain by holding the merge back."""
    import psycopg2

    projects, env = two_projects
    dataset = fresh_dataset()
    if staging == "shared":
        env = {**env, "POLYAI_FANOUT_SHARED_STAGING": "1"}
    # The tables first, so that the merge can be held back: another pipeline, the last hours.
    recent = (projects[0].simulator.config.end - timedelta(hours=3)).isoformat()
    first = {**env, "POLYAI_FANOUT_PIPELINE_SUFFIX": "_first", "SOURCES__POLYAI__START_DATE": recent}
    check_workers([finish("first", start_worker(projects[0].project_id, dataset, first))], projects)
    holder, observer = psycopg2.connect(postgres_url), psycopg2.connect(postgres_url)
    observer.autocommit = True
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {dataset}.conversations IN SHARE MODE")  # merges wait
        workers = []
        for waiting, project in enumerate(projects, start=1):
            workers.append((project.project_id, start_worker(project.project_id, dataset, env)))
            with observer.cursor() as cursor:
                wait_until_blocked(cursor, f"%{dataset}%conversations%", waiting)
        holder.commit()
        check_workers([finish(*worker) for worker in workers], projects)
    finally:
        holder.close()
        observer.close()
    problems = [project_problems(p, postgres_url, dataset, tmp_path / p.project_id) for p in projects]
    if staging == "shared":
        # Each task emptied the other's staged rows before its merge: rows lost and doubled.
        assert any(problems)
    else:
        assert problems == [[], []]
