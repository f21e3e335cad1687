"""Dagster: the PolyAI tables as assets through dagster-dlt, then the dbt marts, every hour.

    pip install -e ".[dagster,test]"        # dagster + dagster-dlt; dbt-duckdb for the marts
    export SOURCES__POLYAI__API_KEY=... SOURCES__POLYAI__ACCOUNT_ID=... SOURCES__POLYAI__PROJECT_ID=...
    export DESTINATION__DUCKDB__CREDENTIALS=/data/polyai_conversations.duckdb   # absolute path
    dagster instance concurrency set polyai_load 1                              # one load at a time
    dagster dev -f examples/dagster/polyai_assets.py                            # repository root

Settings are the connector's own (`.dlt/` or `SOURCES__POLYAI__*`). State between runs:
dagster-dlt drops the pipeline's local folder before every run and dlt restores cursor and
pending set from the destination, so the DuckDB file must be a persistent, absolute path (runs
start in other folders); on BigQuery or Snowflake nothing else is needed.
"""

# No `from __future__ import annotations`: Dagster inspects the real type of `context`.
from collections.abc import Iterator
from typing import Any

import dlt as dlt_library
from dagster import (
    AssetExecutionContext,
    AssetSelection,
    Definitions,
    MaterializeResult,
    ScheduleDefinition,
    asset,
    define_asset_job,
)
from dagster_dlt import DagsterDltResource, dlt_assets
from dlt.extract.source import DltSource

from pipelines.dbt_runner import run_dbt
from sources.polyai import load_until_caught_up, polyai_source

# "bigquery" or "snowflake" work the same way, with dlt's credentials for them.
DESTINATION = "duckdb"
GROUP = "polyai"
HOURLY = "0 * * * *"

# The command's pipeline name and dataset: switching from cron to Dagster continues the same state.
polyai_pipeline = dlt_library.pipeline(
    pipeline_name="polyai_conversations", destination=DESTINATION, dataset_name="polyai"
)


def asset_naming_source() -> DltSource:
    """A source that only names the assets (dlt_polyai_conversations, dlt_polyai_turns).

    dagster-dlt reads the resource names when the code location loads, which may happen where no
    PolyAI secret is set (dagster dev, a UI-only deployment): placeholders keep loading free of
    secrets. Runs never use this object.
    """
    return polyai_source(api_key="names-only", account_id="names-only", project_id="names-only")


@dlt_assets(
    dlt_source=asset_naming_source(),
    dlt_pipeline=polyai_pipeline,
    name="polyai",
    group_name=GROUP,
    # Two loads at once would race on the pipeline state: limit the pool to one,
    # `dagster instance concurrency set polyai_load 1`.
    pool="polyai_load",
)
def polyai_tables(context: AssetExecutionContext, dlt: DagsterDltResource) -> Iterator[Any]:
    # A backfill beyond max_conversations_per_load is loaded in several committed parts, each
    # with a fresh source (settings from the run's config, clock now). The source picks the
    # file format and JSON handling for the destination itself. Dagster takes one
    # materialization per asset and run: the last part's is reported.
    parts = load_until_caught_up(
        polyai_pipeline,
        polyai_source,
        lambda source: list(dlt.run(context=context, dlt_source=source)),
    )
    yield from parts[-1]


@asset(deps=[polyai_tables], group_name=GROUP)
def polyai_dbt_marts(context: AssetExecutionContext) -> MaterializeResult:
    """The dbt project in dbt/, built in <dataset>_analytics of the same destination."""
    summary = run_dbt(polyai_pipeline)  # raises, failing the step, when a model or test fails
    context.log.info(summary.render())
    return MaterializeResult(
        metadata={
            "schema": summary.schema,
            "models": len(summary.models),
            "tests": len(summary.tests),
            "tests_warned": len(summary.tests_warned),
        }
    )


polyai_hourly = ScheduleDefinition(
    job=define_asset_job("polyai_hourly", selection=AssetSelection.groups(GROUP)),
    cron_schedule=HOURLY,
    execution_timezone="UTC",
)

defs = Definitions(
    assets=[polyai_tables, polyai_dbt_marts],
    resources={"dlt": DagsterDltResource()},
    schedules=[polyai_hourly],
)
