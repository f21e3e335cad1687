"""The warehouses to load into, as fixtures (a pytest plugin, see tests/conftest.py).

Without accounts, stand-ins on this machine (tests/support/destination_doubles.py): a real
PostgreSQL server, BigQuery through `bqemulator`, Snowflake through `fakesnow`; with
credentials in dlt's standard variables, the real BigQuery and Snowflake as well.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import dlt
import pytest

from polyai_simulator import SimClock, SimConfig
from tests.support.destination_doubles import (
    BIGQUERY_PROJECT,
    DoubleUnavailable,
    bigquery_emulator,
    postgres_bin_dir,
    postgres_server,
    snowflake_emulator,
)
from tests.support.harness import T0, Harness, make_harness

T = TypeVar("T")


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
