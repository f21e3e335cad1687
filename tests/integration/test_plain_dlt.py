"""The source through dlt's public API alone, as a user's own script runs it: no runner.

`dlt.pipeline(...).run(polyai_source())` on DuckDB, PostgreSQL and both emulators must write
the same exact tables as the command (file format and JSON handling chosen by the source), and
a backfill beyond one part must either be loaded by `load_until_caught_up` or say so loudly.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest

from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
from sources.polyai import load_until_caught_up, polyai_source
from tests.support.harness import T0
from tests.support.truth import compare_tables
from tests.support.warehouse_rows import column_types, read_rows
from tests.support.warehouses import Warehouse

# What the command's runner chose before the source did (and fakesnow cannot tell a VARIANT
# loaded from Parquet text apart: the file format is checked itself).
FILE_FORMATS = {"duckdb": "parquet", "postgres": "insert_values", "bigquery": "jsonl", "snowflake": "jsonl"}
JSON_TYPES = {
    "duckdb": "json",
    "postgres": "jsonb",
    "bigquery": None,  # the emulator reports JSON as STRING: the values are checked instead
    "snowflake": "variant",
}


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> Warehouse:
    database = str(tmp_path / "plain.duckdb")
    return Warehouse("duckdb", lambda: dlt.destinations.duckdb(database), None)


@pytest.fixture(params=["duckdb_warehouse", "postgres", "bigquery", "snowflake"])
def any_warehouse(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    chosen: Warehouse = request.getfixturevalue(request.param)
    for name, value in chosen.environment.items():
        monkeypatch.setenv(name, value)
    return chosen


@pytest.fixture
def simulator() -> Iterator[tuple[Simulator, str]]:
    config = SimConfig(
        seed=31,
        n_conversations=80,
        start=T0,
        end=T0 + timedelta(hours=3),
        late_arrival_fraction=0.1,
        long_running_fraction=0.1,
        latency_object_fraction=0.3,
    )
    with SimulatorServer(Simulator(config, SimClock(T0 + timedelta(hours=1)))) as server:
        yield server.simulator, server.base_url


def source_options(simulator: Simulator, base_url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "api_key": simulator.config.api_key,
        "account_id": simulator.config.account_id,
        "project_id": simulator.config.project_id,
        "base_url": base_url,
        "start_date": simulator.config.start.isoformat(),
        "clock": simulator.clock.now,
        "include_latency": True,
        "limit": 9,
        "backoff_factor": 0.01,
        **overrides,
    }


def plain_pipeline(tmp_path: Path, warehouse: Warehouse, name: str) -> dlt.Pipeline:
    # Not the command's make_pipeline: no DuckDB limits, nothing but dlt.
    return dlt.pipeline(
        pipeline_name=f"plain_{name}",
        destination=warehouse.destination(),
        dataset_name=f"plain_{name}",
        pipelines_dir=str(tmp_path / "pipelines"),
    )


def assert_at_the_truth(pipeline: dlt.Pipeline, simulator: Simulator) -> None:
    truth = simulator.truth(include_latency=True)
    conversations = read_rows(pipeline, "conversations", "id")
    turns = read_rows(pipeline, "turns", "conversation_id, turn_index")
    assert len(conversations) == len(truth) > 40
    assert any(turn.get("latency_detail") for turn in turns), "no JSON latency in the scenario"
    problems = compare_tables(truth, conversations, turns)
    assert not problems, "\n".join(problems[:20])


def data_file_formats(load_info: Any) -> set[str]:
    """The file formats of the load jobs that carried conversations and turns."""
    return {
        job.job_file_info.file_format
        for package in load_info.load_packages
        for job in package.jobs["completed_jobs"]
        if job.job_file_info.table_name in ("conversations", "turns")
        and job.job_file_info.file_format != "sql"
    }


def test_plain_dlt_runs_end_exactly_at_the_truth(
    tmp_path: Path, any_warehouse: Warehouse, simulator: tuple[Simulator, str]
) -> None:
    sim, base_url = simulator
    pipeline = plain_pipeline(tmp_path, any_warehouse, any_warehouse.name)
    for minutes in (45, 120, 600):
        load_info = pipeline.run(polyai_source(**source_options(sim, base_url)))
        assert data_file_formats(load_info) == {FILE_FORMATS[any_warehouse.name]}
        sim.clock.advance(timedelta(minutes=minutes))
    # Everything finished and read again: merged on the keys, nothing doubled.
    pipeline.run(polyai_source(**source_options(sim, base_url, lookback_minutes=24 * 60)))
    assert_at_the_truth(pipeline, sim)
    expected_json = JSON_TYPES[any_warehouse.name]
    if expected_json is not None:
        types = {name: kind.lower() for name, kind in column_types(pipeline, "conversations").items()}
        assert types["metrics"] == expected_json, types
        assert types["state"] == expected_json, types


def test_a_plain_run_that_stops_at_max_conversations_per_load_says_so_and_the_helper_finishes(
    tmp_path: Path, simulator: tuple[Simulator, str], caplog: pytest.LogCaptureFixture
) -> None:
    sim, base_url = simulator
    sim.clock.advance(timedelta(hours=12))
    warehouse = Warehouse("duckdb", lambda: dlt.destinations.duckdb(str(tmp_path / "parts.duckdb")), None)
    pipeline = plain_pipeline(tmp_path, warehouse, "parts")
    small = source_options(sim, base_url, max_conversations_per_load=20, window_hours=0.25, concurrency=1)
    with caplog.at_level(logging.WARNING):
        pipeline.run(polyai_source(**small))
    warnings = [r.getMessage() for r in caplog.records if "max_conversations_per_load" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert "load_until_caught_up" in warnings[0]
    assert len(read_rows(pipeline, "conversations", "id")) < len(sim.truth())

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        parts = load_until_caught_up(pipeline, functools.partial(polyai_source, **small))
    assert len(parts) > 1
    assert not [r for r in caplog.records if "max_conversations_per_load" in r.getMessage()]
    assert_at_the_truth(pipeline, sim)


def test_load_until_caught_up_reads_its_settings_from_dlt_config(
    tmp_path: Path, simulator: tuple[Simulator, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper with no source given: `polyai_source()` with settings from the environment."""
    sim, base_url = simulator
    sim.clock.advance(timedelta(hours=12))
    for name, value in source_options(sim, base_url).items():
        if name != "clock":
            monkeypatch.setenv(f"SOURCES__POLYAI__{name.upper()}", str(value))
    # The simulator's clock stands in the past: the real clock reads up to now, which is later.
    monkeypatch.setenv("SOURCES__POLYAI__MAX_CONVERSATIONS_PER_LOAD", "30")
    monkeypatch.setenv("SOURCES__POLYAI__WINDOW_HOURS", "0.5")
    assert "SOURCES__POLYAI__API_KEY" in os.environ
    warehouse = Warehouse("duckdb", lambda: dlt.destinations.duckdb(str(tmp_path / "env.duckdb")), None)
    pipeline = plain_pipeline(tmp_path, warehouse, "env")
    parts = load_until_caught_up(pipeline)
    assert len(parts) > 1
    assert_at_the_truth(pipeline, sim)
