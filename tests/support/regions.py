"""Two simulators as two regions of one account, sharing a clock and a seed (a pytest plugin).

The same seed makes the two projects serve the same conversation ids: the tables must keep
them apart by project.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
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

    def source_options(self, **overrides: Any) -> dict[str, Any]:
        """polyai_source's settings for both projects on the shared clock, with `overrides`."""
        return {
            "projects": self.entries(),
            "account_id": ACCOUNT,
            "start_date": T0.isoformat(),
            "clock": self.clock.now,
            "backoff_factor": 0.01,
            **overrides,
        }


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
