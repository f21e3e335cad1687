"""The simulator on localhost and pipelines into throw-away DuckDB files (or, for
tests/integration/test_destinations.py, into any dlt destination)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb

from pipelines.runner import DEFAULT_DATASET, RunSummary, make_pipeline, run_load
from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
from sources.polyai import polyai_source
from sources.polyai.state import SourceState
from tests.support.warehouse_rows import read_rows

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@dataclass
class Harness:
    """One simulator, one pipeline, one destination: run loads while the clock moves.

    `database` is the DuckDB file, read directly; None for other destinations, read through
    dlt's SQL client.
    """

    simulator: Simulator
    clock: SimClock
    base_url: str
    pipeline: dlt.Pipeline
    database: Path | None
    source_options: dict[str, Any]

    def run(self, **overrides: Any) -> RunSummary:
        return run_load(self.pipeline, functools.partial(polyai_source, **self.options(**overrides)))

    def options(self, **overrides: Any) -> dict[str, Any]:
        """The source's settings for this simulator, clock and the harness's own options."""
        return {
            "api_key": self.simulator.config.api_key,
            "account_id": self.simulator.config.account_id,
            "project_id": self.simulator.config.project_id,
            "base_url": self.base_url,
            "start_date": self.simulator.config.start.isoformat(),
            "clock": self.clock.now,
            "backoff_factor": 0.01,
            **self.source_options,
            **overrides,
        }

    def rows(self, table: str, order_by: str) -> list[dict[str, Any]]:
        """Rows as the destination returns them; JSON columns as the JSON text they hold."""
        if self.database is None:
            return read_rows(self.pipeline, table, order_by)
        with duckdb.connect(str(self.database), read_only=True) as connection:
            dataset = self.pipeline.dataset_name
            relation = connection.sql(f"SELECT * FROM {dataset}.{table} ORDER BY {order_by}")
            names = relation.columns
            return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]

    def column_types(self, table: str) -> dict[str, str]:
        assert self.database is not None, "DuckDB only; see warehouse_rows.column_types"
        with duckdb.connect(str(self.database), read_only=True) as connection:
            described = connection.sql(f"DESCRIBE {self.pipeline.dataset_name}.{table}").fetchall()
            return {name: kind for name, kind, *_ in described}

    @property
    def source_state(self) -> dict[str, Any]:
        """The state of the harness's one project."""
        projects = self.pipeline.state.get("sources", {}).get("polyai", {}).get("projects", {})
        assert len(projects) <= 1, f"the harness loads one project, the state has {sorted(projects)}"
        return dict(next(iter(projects.values()), {}))

    @property
    def pending(self) -> dict[str, str]:
        """The pending set as the source reads it (id -> started_at), decoded from the state."""
        return SourceState.of_pipeline(self.pipeline.state).pending


def make_harness(
    tmp_path: Path,
    config: SimConfig,
    clock: SimClock,
    name: str = "e2e",
    destination: Any = None,
    dataset_name: str = DEFAULT_DATASET,
    **source_options: Any,
) -> Iterator[Harness]:
    """A harness into `destination` (a dlt destination), by default a new DuckDB file."""
    simulator = Simulator(config, clock)
    server = SimulatorServer(simulator)
    base_url = server.start()
    database = None
    if destination is None:
        database = tmp_path / f"{name}.duckdb"
        destination = dlt.destinations.duckdb(str(database))
    pipeline = make_pipeline(f"test_{name}", destination, dataset_name, str(tmp_path / "pipelines"))
    try:
        yield Harness(simulator, clock, base_url, pipeline, database, source_options)
    finally:
        server.stop()


def scheduled_env(simulator: Simulator, base_url: str, database: str | Path) -> dict[str, str]:
    """The settings a scheduled run reads from its environment, for this simulator and database."""
    return {
        "SOURCES__POLYAI__API_KEY": simulator.config.api_key,
        "SOURCES__POLYAI__ACCOUNT_ID": simulator.config.account_id,
        "SOURCES__POLYAI__PROJECT_ID": simulator.config.project_id,
        "SOURCES__POLYAI__BASE_URL": base_url,
        "SOURCES__POLYAI__START_DATE": simulator.config.start.isoformat(),
        "DESTINATION__DUCKDB__CREDENTIALS": str(database),
    }


@contextmanager
def finished_traffic(seed: int, n_conversations: int, hours: float) -> Iterator[tuple[Simulator, str]]:
    """A simulator on the real clock whose traffic ended an hour ago, served on 127.0.0.1.

    Nothing becomes visible while a test runs, so a run's counts can be checked against it
    without a race with the clock.
    """
    clock = SimClock()
    now = clock.now()
    config = SimConfig(
        seed=seed,
        n_conversations=n_conversations,
        start=now - timedelta(hours=hours),
        end=now - timedelta(hours=1),
    )
    with SimulatorServer(Simulator(config, clock)) as server:
        yield server.simulator, server.base_url
