"""The pipeline into the warehouses: PostgreSQL, BigQuery and Snowflake, several runs while the
simulator's clock moves, each ending exactly at the simulator's truth.

Without accounts, against stand-ins on this machine (tests/destination_doubles.py): a real
PostgreSQL server, BigQuery through `bqemulator`, Snowflake through `fakesnow`. With
credentials in dlt's standard variables (`DESTINATION__BIGQUERY__CREDENTIALS__*`,
`DESTINATION__SNOWFLAKE__CREDENTIALS__*`), the same scenario also runs against the real
BigQuery and Snowflake, in a dataset of its own that is dropped afterwards.

The connector code is the same in all of them: the destination's file format and JSON
handling come from pipelines/runner.py; only the stand-ins are adjusted, in their launchers.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import dlt
import pytest
from conftest import T0, Harness, make_harness
from destination_doubles import (
    BIGQUERY_PROJECT,
    DoubleUnavailable,
    bigquery_emulator,
    postgres_bin_dir,
    postgres_server,
    snowflake_emulator,
)
from test_end_to_end import check_run_against_truth
from truth import compare_tables
from warehouse_rows import column_types

from pipelines.runner import make_pipeline
from polyai_simulator import SimClock, SimConfig
from sources.polyai.shaping.records import conversations_table, parse_timestamp, rows_with_json_values

T = TypeVar("T")
# Fewer conversations and runs than the DuckDB suite: each emulated load costs seconds.
STEPS_MINUTES = (20, 45, 90, 240, 600)


def small_world() -> tuple[SimConfig, SimClock]:
    config = SimConfig(
        seed=23,
        n_conversations=60,
        start=T0,
        end=T0 + timedelta(hours=3),
        late_arrival_fraction=0.1,
        long_running_fraction=0.1,
        latency_object_fraction=0.3,
    )
    return config, SimClock(T0 + timedelta(hours=1))


def unavailable(reason: str) -> None:
    """On CI a missing stand-in is a failure (it is installed there); elsewhere a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


# --------------------------------------------------------------------------- warehouses


@dataclass
class Warehouse:
    """A place to load into: `destination()` gives a fresh dlt destination for one test."""

    name: str
    destination: Callable[[], Any]
    # Expected INFORMATION_SCHEMA types of a few columns; None where the stand-in misreports.
    types: dict[str, str] | None
    # Environment variables set for the test's duration only (the live tests must not see them).
    environment: dict[str, str] = field(default_factory=dict)
    # A real account: every test loads into a dataset of its own, dropped afterwards.
    live: bool = False


@contextlib.contextmanager
def stand_in(manager: contextlib.AbstractContextManager[T]) -> Iterator[T]:
    """Enters a stand-in's context; one that cannot start here skips (fails on CI)."""
    with contextlib.ExitStack() as stack:
        try:
            value = stack.enter_context(manager)
        except DoubleUnavailable as error:
            unavailable(str(error))
        yield value


@pytest.fixture(scope="module")
def postgres() -> Iterator[Warehouse]:
    try:
        bin_dir = postgres_bin_dir()
    except DoubleUnavailable as error:
        pytest.skip(str(error))  # the README's pip install cannot bring a server: a skip, on CI too
    with stand_in(postgres_server(bin_dir)) as url:
        yield Warehouse("postgres", lambda: dlt.destinations.postgres(credentials=url), POSTGRES_TYPES)


POSTGRES_TYPES = {
    "started_at": "TIMESTAMP WITH TIME ZONE",
    "in_progress": "BOOLEAN",
    "num_turns": "BIGINT",
    "metrics": "JSONB",
    "state": "JSONB",
}


@pytest.fixture(scope="module")
def bigquery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    with stand_in(bigquery_emulator(tmp_path_factory.mktemp("bqemulator"))) as endpoint:
        environment = {
            # google-cloud-bigquery sends every request to this host when set (scheme included).
            "BIGQUERY_EMULATOR_HOST": endpoint,
            # The emulator reads load files as they are, not gzip-compressed.
            "DATA_WRITER__DISABLE_COMPRESSION": "true",
        }
        # Its INFORMATION_SCHEMA reports JSON columns as STRING: the JSON check is on the values.
        yield Warehouse("bigquery", emulated_bigquery, None, environment)


def emulated_bigquery() -> Any:
    from dlt.common.configuration.specs.gcp_credentials import (
        GcpDefaultCredentials,
        GcpServiceAccountCredentials,
    )
    from google.auth.credentials import AnonymousCredentials

    # The emulator takes unauthenticated requests. dlt accepts a google-auth credentials object
    # as "default credentials"; the service-account spec's own parser would then look for a
    # key file, so the default-credentials step is called alone.
    credentials = GcpServiceAccountCredentials()
    GcpDefaultCredentials.parse_native_representation(credentials, AnonymousCredentials())
    credentials.project_id = BIGQUERY_PROJECT
    # bqemulator's DuckDB takes one ADD COLUMN per ALTER TABLE statement: with several (dlt's
    # default), the next merge silently left the conversations table empty.
    return dlt.destinations.bigquery(credentials=credentials, location="US", alter_add_multi_column=False)


@pytest.fixture(scope="module")
def snowflake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    with stand_in(snowflake_emulator(tmp_path_factory.mktemp("fakesnow"))) as (host, port):
        credentials = {
            "database": "POLYAI_TEST",
            "username": "fake",
            "password": "snow",
            "host": "fakesnow",
            "query": {"host": host, "port": str(port), "protocol": "http", "account": "fakesnow"},
        }

        def destination() -> Any:
            # fakesnow's server runs one statement per request.
            return dlt.destinations.snowflake(credentials=credentials, supports_multiple_statements=False)

        yield Warehouse("snowflake", destination, FAKESNOW_TYPES)


SNOWFLAKE_TYPES = {
    "started_at": "TIMESTAMP_LTZ",
    "in_progress": "BOOLEAN",
    "num_turns": "NUMBER",
    "metrics": "VARIANT",
    "state": "VARIANT",
}
# fakesnow reports dlt's TIMESTAMP_LTZ columns as TIMESTAMP_TZ (DuckDB's TIMESTAMPTZ).
FAKESNOW_TYPES = {**SNOWFLAKE_TYPES, "started_at": "TIMESTAMP_TZ"}
BIGQUERY_TYPES = {
    "started_at": "TIMESTAMP",
    "in_progress": "BOOL",
    "num_turns": "INT64",
    "metrics": "JSON",
    "state": "JSON",
}


def live_warehouse(name: str, types: dict[str, str]) -> Warehouse:
    """The real warehouse when dlt's credential variables for it are set, else a skip."""
    prefix = f"DESTINATION__{name.upper()}__CREDENTIALS"
    if not any(variable.startswith(prefix) for variable in os.environ):
        pytest.skip(
            f"no {name} account: set {prefix}__* (dlt's standard variables) to run this test "
            f"against the real {name}"
        )
    return Warehouse(name, getattr(dlt.destinations, name), types, live=True)


@pytest.fixture
def live_bigquery() -> Warehouse:
    return live_warehouse("bigquery", BIGQUERY_TYPES)


@pytest.fixture
def live_snowflake() -> Warehouse:
    return live_warehouse("snowflake", SNOWFLAKE_TYPES)


@pytest.fixture(params=["postgres", "bigquery", "snowflake", "live_bigquery", "live_snowflake"])
def warehouse(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    chosen: Warehouse = request.getfixturevalue(request.param)
    for name, value in chosen.environment.items():
        monkeypatch.setenv(name, value)
    return chosen


# --------------------------------------------------------------------------- the scenarios


def destination_harness(tmp_path: Path, warehouse: Warehouse, dataset_name: str) -> Iterator[Harness]:
    if warehouse.live:
        dataset_name = f"{dataset_name}_{uuid.uuid4().hex[:8]}"
    config, clock = small_world()
    for harness in make_harness(
        tmp_path,
        config,
        clock,
        name=warehouse.name,
        destination=warehouse.destination(),
        dataset_name=dataset_name,
        include_latency=True,
        limit=7,
        backoff_factor=0.01,
    ):
        try:
            yield harness
        finally:
            if warehouse.live:
                drop_datasets(harness.pipeline)


def drop_datasets(pipeline: dlt.Pipeline) -> None:
    """The test's dataset and the staging dataset dlt's merge made beside it."""
    with pipeline.sql_client() as client:
        with client.with_staging_dataset():
            if client.has_dataset():
                client.drop_dataset()
        if client.has_dataset():
            client.drop_dataset()


def runs_while_the_clock_moves_end_exactly_at_the_truth(harness: Harness) -> None:
    """Each run consistent with the truth; the last, after a full re-read, equal to it."""
    pending_seen = 0
    for minutes in STEPS_MINUTES:
        summary = harness.run()
        pending_seen = max(pending_seen, summary.pending)
        check_run_against_truth(harness)
        harness.clock.advance(timedelta(minutes=minutes))
    assert pending_seen > 0, "the scenario never had a conversation in progress at a run"

    # Everything is read again: merged on the keys, nothing may be doubled.
    harness.run(lookback_minutes=24 * 60)
    truth = harness.simulator.truth(include_latency=True)
    assert all(not c["in_progress"] for c in truth), "the scenario should end with everything finished"
    conversations = harness.rows("conversations", "id")
    turns = harness.rows("turns", "conversation_id, turn_index")
    assert len(conversations) == len(truth) > 40
    assert len(turns) == sum(len(c["turns"]) for c in truth)
    assert any(turn.get("latency_detail") for turn in turns), "no JSON latency in the scenario"
    problems = compare_tables(truth, conversations, turns)
    assert not problems, "\n".join(problems[:20])
    assert harness.pending == {}


def check_column_types(harness: Harness, expected: dict[str, str]) -> None:
    actual = column_types(harness.pipeline, "conversations")
    assert {name: actual.get(name) for name in expected} == expected


def test_runs_into_the_warehouse_end_exactly_at_the_truth(tmp_path: Path, warehouse: Warehouse) -> None:
    for harness in destination_harness(tmp_path, warehouse, "polyai_e2e"):
        runs_while_the_clock_moves_end_exactly_at_the_truth(harness)
        if warehouse.types is not None:
            check_column_types(harness, warehouse.types)


def drop_last_turn_and_add_fields(view: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """The API's view of conversations after a change: one turn fewer, a new field, a misfit."""

    def changed(conversation: Any, now: Any, options: Any) -> dict[str, Any]:
        record = view(conversation, now, options)
        if len(record["turns"]) >= 2:
            record["turns"] = record["turns"][:-1]
            record["num_turns"] = len(record["turns"])
        record["sentiment_score"] = 0.75
        record["total_duration"] = 12.5  # a float where the API documents an integer
        return record

    return changed


def test_a_conversation_loaded_again_replaces_its_row_and_all_its_turns(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    for harness in destination_harness(tmp_path, warehouse, "polyai_replace"):
        harness.clock.advance(timedelta(hours=14))  # everything finished
        harness.run()
        turns_before = len(harness.rows("turns", "conversation_id, turn_index"))
        harness.simulator.view = drop_last_turn_and_add_fields(harness.simulator.view)  # type: ignore[method-assign]
        harness.simulator._cache.clear()
        harness.clock.advance(timedelta(minutes=1))
        summary = harness.run(lookback_minutes=24 * 60)

        assert summary.new_columns == [
            "conversations.sentiment_score",
            "conversations.total_duration__v_json",
        ]
        truth = harness.simulator.truth(include_latency=True)
        for conversation in truth:
            # A value that does not fit its column goes, as exact JSON, to the variant column.
            conversation["total_duration__v_json"] = json.dumps(conversation.pop("total_duration"))
        conversations = harness.rows("conversations", "id")
        turns = harness.rows("turns", "conversation_id, turn_index")
        assert len(turns) < turns_before, "no conversation had a turn fewer"
        assert {row["total_duration"] for row in conversations} == {None}
        problems = compare_tables(truth, conversations, turns)
        assert not problems, "\n".join(problems[:20])


def test_a_fresh_working_folder_resumes_from_the_state_kept_in_the_warehouse(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """A new CI runner or container: dlt restores cursor and pending set from the dataset."""
    for harness in destination_harness(tmp_path, warehouse, "polyai_restore"):
        first = harness.run()
        assert first.pending > 0
        cursor = harness.source_state["cursor"]
        harness.pipeline = make_pipeline(
            harness.pipeline.pipeline_name,
            warehouse.destination(),
            harness.pipeline.dataset_name,
            str(tmp_path / "fresh_working_folder"),
        )
        harness.clock.advance(timedelta(hours=14))
        harness.simulator.reset_stats()
        harness.run()
        # Not a second backfill from start_date: the main window starts at the restored cursor.
        main_windows = [
            entry
            for entry in harness.simulator.stats.request_log
            if entry["params"].get("in_progress") is None
        ]
        starts = [parse_timestamp(param_value(entry, "start_time")) for entry in main_windows]
        assert starts and min(starts) > harness.simulator.config.start, (starts, cursor)
        problems = compare_tables(
            harness.simulator.truth(include_latency=True),
            harness.rows("conversations", "id"),
            harness.rows("turns", "conversation_id, turn_index"),
        )
        assert not problems, "\n".join(problems[:20])
        assert harness.pending == {}


def param_value(entry: dict[str, Any], name: str) -> Any:
    value = entry["params"].get(name)
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def test_rows_for_warehouses_carry_json_as_objects_and_json_scalars_as_text() -> None:
    """What BigQuery and Snowflake receive instead of Arrow: objects dlt writes as nested JSON."""
    page = [
        {
            "id": "c1",
            "started_at": "2026-11-02T08:00:00Z",
            "metrics": {"REASON": ["a", "b"]},
            "state": None,
            "context": {"n": 2**70},  # a new field, beyond 64 bits
            "total_duration": 12.5,  # a misfit: its variant column holds the JSON number
        }
    ]
    table, new_columns = conversations_table(page)
    assert new_columns == {"context": "json", "total_duration__v_json": "json"}
    [row] = rows_with_json_values(table)
    assert row["metrics"] == {"REASON": ["a", "b"]}
    assert row["state"] is None
    assert row["context"] == {"n": 2**70}
    # dlt's normalizer parses text into a `json` column; a bare 12.5 would get a column of its own.
    assert row["total_duration__v_json"] == "12.5"
    assert row["total_duration"] is None
    assert row["started_at"] == datetime(2026, 11, 2, 8, tzinfo=UTC)
