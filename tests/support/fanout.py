"""Several PolyAI projects, each behind its own simulator, loaded by parallel workers into one
PostgreSQL dataset (tests/integration/test_fanout.py, scripts/fanout_timing.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import dlt

from pipelines.runner import make_pipeline
from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
from tests.support.truth import compare_tables
from tests.support.warehouse_rows import read_rows

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "acc-fanout"


@dataclass
class Project:
    simulator: Simulator
    base_url: str

    @property
    def project_id(self) -> str:
        return self.simulator.config.project_id

    def entry(self) -> dict[str, str]:
        """Its entry of the `projects` setting: its own id, key and endpoint."""
        config = self.simulator.config
        return {"project_id": config.project_id, "api_key": config.api_key, "base_url": self.base_url}


@contextmanager
def project_simulators(seeds: list[int], n_conversations: int = 150) -> Iterator[list[Project]]:
    """One simulator per seed, each its own project and key; traffic that ended an hour ago."""
    clock = SimClock()
    now = clock.now()
    with ExitStack() as stack:
        projects = []
        for index, seed in enumerate(seeds):
            config = SimConfig(
                seed=seed,
                n_conversations=n_conversations,
                start=now - timedelta(hours=20),
                end=now - timedelta(hours=1),
                account_id=ACCOUNT,
                project_id=f"proj-{chr(ord('a') + index)}",
                api_key=f"fanout-key-{seed}-{os.urandom(4).hex()}",
                # Conversations still going on the real clock would change while a test reads them.
                long_running_fraction=0.0,
            )
            server = stack.enter_context(SimulatorServer(Simulator(config, clock)))
            projects.append(Project(server.simulator, server.base_url))
        yield projects


def fanout_env(projects: list[Project], postgres_url: str, data_dir: Path) -> dict[str, str]:
    """What the workers read: the `projects` list as JSON, shared settings, the warehouse."""
    return {
        "SOURCES__POLYAI__PROJECTS": json.dumps([project.entry() for project in projects]),
        "SOURCES__POLYAI__ACCOUNT_ID": ACCOUNT,
        "SOURCES__POLYAI__START_DATE": min(p.simulator.config.start for p in projects).isoformat(),
        "DESTINATION__POSTGRES__CREDENTIALS": postgres_url,
        "DLT_DATA_DIR": str(data_dir),
    }


@dataclass
class WorkerResult:
    project_id: str
    returncode: int
    output: str
    finished_at: float


def run_workers(
    project_ids: list[str],
    dataset: str,
    env: dict[str, str],
    retries: int | None = None,
    parallel: bool = True,
) -> list[WorkerResult]:
    """The fan-out DAG's `load_project` for each project, in processes started at one instant."""
    if not parallel:
        return [run_workers([one], dataset, env, retries)[0] for one in project_ids]
    start_at = time.time() + 4.0  # every worker has imported dlt by then
    started = [(one, start_worker(one, dataset, env, start_at, retries)) for one in project_ids]
    return [finish(project_id, process) for project_id, process in started]


def start_worker(
    project_id: str, dataset: str, env: dict[str, str], start_at: float = 0.0, retries: int | None = None
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.support.fanout_worker", project_id, str(start_at)]
    if retries is not None:
        command.append(str(retries))
    environment = {**os.environ, **env, "POLYAI_FANOUT_DATASET": dataset}
    return subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(project_id: str, process: subprocess.Popen[str]) -> WorkerResult:
    output, _ = process.communicate(timeout=300)
    return WorkerResult(project_id, process.returncode, output, time.time())


def project_problems(project: Project, postgres_url: str, dataset: str, tmp_path: Path) -> list[str]:
    """Differences between one project's truth and its rows in the shared dataset."""
    from examples.polyai_projects import pipeline_name

    pipeline = make_pipeline(
        f"{pipeline_name(project.project_id)}",
        dlt.destinations.postgres(credentials=postgres_url),
        dataset,
        str(tmp_path / f"reader_{project.project_id}"),
    )
    pipeline.sync_destination()  # schema and state from the warehouse, as a fresh worker
    conversations = [
        row for row in read_rows(pipeline, "conversations", "id") if row["project_id"] == project.project_id
    ]
    ids = {row["id"] for row in conversations}
    turns = read_rows(pipeline, "turns", "conversation_id, turn_index")
    turns = [row for row in turns if row["conversation_id"] in ids]
    return compare_tables(project.simulator.truth(), conversations, turns)


def query(postgres_url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg2

    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()
