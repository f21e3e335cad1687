"""Several projects in one pipeline: two simulators as two regions, one key refused for a run.

Both simulators draw from the same seed, so the two projects serve the same conversation ids:
the tables must keep them apart by project.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.runner import RunSummary, make_pipeline, run_load
from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
from sources.polyai import polyai_source
from sources.polyai.state import SourceState
from tests.support.harness import T0
from tests.support.truth import check_rows_against_truth

KEYS = {"proj-us": "key-us-7f3a9c", "proj-eu": "key-eu-51d0e2"}
REGIONS = {"proj-us": "us-1", "proj-eu": "euw-1"}
ACCOUNT = "acc-multi"


@dataclass
class Regions:
    clock: SimClock
    simulators: dict[str, Simulator]
    base_urls: dict[str, str]

    def entries(self) -> list[dict[str, Any]]:
        return [
            {
                "project_id": project,
                "api_key": KEYS[project],
                "region": REGIONS[project],
                "base_url": self.base_urls[project],
            }
            for project in self.simulators
        ]


@pytest.fixture
def regions() -> Iterator[Regions]:
    clock = SimClock(T0 + timedelta(hours=1))
    simulators = {
        project: Simulator(
            SimConfig(
                seed=11,
                n_conversations=200,
                start=T0,
                end=T0 + timedelta(hours=6),
                account_id=ACCOUNT,
                project_id=project,
                api_key=KEYS[project],
                late_arrival_fraction=0.1,
                long_running_fraction=0.05,
            ),
            clock,
        )
        for project in KEYS
    }
    servers = {project: SimulatorServer(simulator) for project, simulator in simulators.items()}
    base_urls = {project: server.start() for project, server in servers.items()}
    try:
        yield Regions(clock, simulators, base_urls)
    finally:
        for server in servers.values():
            server.stop()


def rows(database: Path, table: str, project: str, order_by: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        relation = connection.sql(
            f"SELECT * FROM polyai.{table} WHERE project_id = ? ORDER BY {order_by}", params=[project]
        )
        names = [column[0] for column in relation.description]
        return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


def check_project(database: Path, pipeline_state: dict[str, Any], regions: Regions, project: str) -> None:
    states = SourceState.projects_of_pipeline(pipeline_state)
    state = next(state for state in states.values() if state.label.endswith(f"({project})"))
    check_rows_against_truth(
        regions.simulators[project].truth(include_latency=True),
        rows(database, "conversations", project, "id"),
        rows(database, "turns", project, "conversation_id, turn_index"),
        state.pending,
    )


def project_cursor(pipeline_state: dict[str, Any], project: str) -> str | None:
    states = SourceState.projects_of_pipeline(pipeline_state)
    return next(state.cursor for state in states.values() if state.label.endswith(f"({project})"))


def test_two_regions_load_into_one_pipeline_and_a_refused_key_catches_up_on_the_next_run(
    tmp_path: Path, regions: Regions, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "projects.duckdb"
    pipeline = make_pipeline("test_projects", database_destination(database), pipelines_dir=str(tmp_path / "p"))
    make_source = functools.partial(
        polyai_source,
        projects=regions.entries(),
        account_id=ACCOUNT,
        start_date=T0.isoformat(),
        clock=regions.clock.now,
        backoff_factor=0.01,
        max_attempts=2,
    )
    outputs: list[str] = []

    def run() -> RunSummary:
        summary = run_load(pipeline, make_source)
        outputs.append(summary.render())
        return summary

    caplog.set_level(logging.INFO)
    first = run()
    assert not first.failures
    assert set(first.projects) == {"projects[0] (proj-us)", "projects[1] (proj-eu)"}
    for project in KEYS:
        check_project(database, pipeline.state, regions, project)
    # The two projects serve the same ids: each project's rows are its own.
    assert {c["id"] for c in regions.simulators["proj-us"].truth()} == {
        c["id"] for c in regions.simulators["proj-eu"].truth()
    }

    # The EU key is refused for one run: the US project loads, the EU one stays where it was.
    regions.clock.advance(timedelta(hours=2))
    regions.simulators["proj-eu"].config.api_key = "rotated-elsewhere"
    eu_cursor = project_cursor(pipeline.state, "proj-eu")
    refused = run()
    assert list(refused.failures) == ["projects[1] (proj-eu)"]
    failure = refused.failures["projects[1] (proj-eu)"]
    assert failure["status"] == 401 and failure["refused"], failure
    assert "FAILED" in refused.render() and "proj-eu" in refused.render()
    assert project_cursor(pipeline.state, "proj-eu") == eu_cursor
    check_project(database, pipeline.state, regions, "proj-us")

    # Restored: the next run catches the EU project up; both end exactly at their truths.
    regions.simulators["proj-eu"].config.api_key = KEYS["proj-eu"]
    regions.clock.advance(timedelta(hours=2))
    caught_up = run()
    assert not caught_up.failures
    regions.clock.advance(timedelta(hours=8))
    last = run()
    assert not last.failures and last.pending == 0
    for project in KEYS:
        check_project(database, pipeline.state, regions, project)
    texts = [*outputs, caplog.text]
    for key in KEYS.values():
        leaks = [f"output #{i}" for i, text in enumerate(texts) if key in text]
        leaks += [str(p) for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
        assert not leaks, f"the key of a project shows in {leaks}"


def database_destination(database: Path) -> Any:
    import dlt

    return dlt.destinations.duckdb(str(database))
