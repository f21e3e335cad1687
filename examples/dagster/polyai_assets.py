"""Dagster: the PolyAI tables as assets through dagster-dlt, then the dbt marts, every hour.

    pip install -e ".[dagster,test]"        # dagster + dagster-dlt; dbt-duckdb for the marts
    export SOURCES__POLYAI__API_KEY=... SOURCES__POLYAI__ACCOUNT_ID=... SOURCES__POLYAI__PROJECT_ID=...
    export DESTINATION__DUCKDB__CREDENTIALS=/data/polyai_conversations.duckdb   # absolute path
    dagster instance concurrency set polyai_load 1                              # one load at a time
    dagster dev -f examples/dagster/polyai_assets.py                            # repository root

With `[[sources.polyai.projects]]` (or SOURCES__POLYAI__PROJECTS) set, the tables are partitioned
by project: each partition loads one project with its own pipeline and staging dataset into the
one dataset, and `polyai_load` caps how many projects load at once (one on DuckDB; N on a
warehouse). A project's runs must not overlap: limit runs per partition in dagster.yaml
(run_coordinator tag_concurrency_limits, key `dagster/partition`, applyLimitPerUniqueValue).

Settings are the connector's own (`.dlt/` or `SOURCES__POLYAI__*`). State between runs:
dagster-dlt drops the pipeline's local folder before every run and dlt restores cursor and
pending set from the destination, so the DuckDB file must be a persistent, absolute path (runs
start in other folders); on BigQuery or Snowflake nothing else is needed.
"""

# No `from __future__ import annotations`: Dagster inspects the real type of `context`.
from collections.abc import Callable, Iterator
from typing import Any

import dlt as dlt_library
from dagster import (
    AssetExecutionContext,
    AssetSelection,
    Definitions,
    MaterializeResult,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    StaticPartitionsDefinition,
    asset,
    define_asset_job,
    schedule,
)
from dagster_dlt import DagsterDltResource, dlt_assets
from dlt.extract.source import DltSource

from examples.polyai_projects import (
    pipeline_name,
    project_ids,
    project_source,
    projects_configured,
    retry_schema_race,
    staging_layout,
)
from pipelines.dbt_runner import run_dbt
from sources.polyai import load_until_caught_up, polyai_source

# "bigquery" or "snowflake" work the same way, with dlt's credentials for them.
DESTINATION = "duckdb"
DATASET = "polyai"
GROUP = "polyai"
HOURLY = "0 * * * *"

# The command's pipeline name and dataset: switching from cron to Dagster continues the same state.
polyai_pipeline = dlt_library.pipeline(
    pipeline_name="polyai_conversations", destination=DESTINATION, dataset_name=DATASET
)


def project_partitions() -> StaticPartitionsDefinition | None:
    """One partition per entry of `sources.polyai.projects` (ids only); None without the setting.

    Read when the code location loads: a project added to the setting appears after a reload.
    """
    return StaticPartitionsDefinition(project_ids()) if projects_configured() else None


PROJECTS = project_partitions()


def project_pipeline(project_id: str) -> dlt_library.Pipeline:
    """One project's own pipeline (state, lock) and staging dataset, merging into DATASET."""
    factory = getattr(dlt_library.destinations, DESTINATION)
    return dlt_library.pipeline(
        pipeline_name=pipeline_name(project_id),
        destination=factory(staging_dataset_name_layout=staging_layout(project_id)),
        dataset_name=DATASET,
    )


def asset_naming_source() -> DltSource:
    """A source that only names the assets (dlt_polyai_conversations, dlt_polyai_turns, and
    dlt_polyai__polyai_runs for the run history).

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
    partitions_def=PROJECTS,
    # One project: two loads at once would race on the pipeline state, so the pool takes one,
    # `dagster instance concurrency set polyai_load 1`. With partitions it caps how many
    # projects load at once (one on DuckDB: a file takes one writer).
    pool="polyai_load",
)
def polyai_tables(context: AssetExecutionContext, dlt: DagsterDltResource) -> Iterator[Any]:
    # A backfill beyond max_conversations_per_load is loaded in several committed parts, each
    # with a fresh source (settings from the run's config, clock now). The source picks the
    # file format and JSON handling for the destination itself. Dagster takes one
    # materialization per asset and run: the last part's is reported.
    pipeline, make_source = polyai_pipeline, polyai_source
    if context.has_partition_key:
        pipeline = project_pipeline(context.partition_key)
        make_source = project_source(context.partition_key)
    parts = retry_schema_race(lambda: load_parts(dlt, context, pipeline, make_source))
    yield from parts[-1]


def load_parts(
    dlt: DagsterDltResource,
    context: AssetExecutionContext,
    pipeline: dlt_library.Pipeline,
    make_source: Callable[[], DltSource],
) -> list[Any]:
    return load_until_caught_up(
        pipeline,
        make_source,
        lambda source: list(dlt.run(context=context, dlt_source=source, dlt_pipeline=pipeline)),
    )


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


polyai_job = define_asset_job("polyai_hourly", selection=AssetSelection.groups(GROUP))
polyai_hourly = ScheduleDefinition(job=polyai_job, cron_schedule=HOURLY, execution_timezone="UTC")


# With partitions: every hour one run per project (the pool caps how many run at once), and
# the marts once, half an hour later, rather than once per project.
projects_job = define_asset_job("polyai_projects_hourly", selection=AssetSelection.assets(polyai_tables))
marts_job = define_asset_job("polyai_marts_hourly", selection=AssetSelection.assets(polyai_dbt_marts))
polyai_marts_hourly = ScheduleDefinition(job=marts_job, cron_schedule="30 * * * *", execution_timezone="UTC")


@schedule(job=projects_job, cron_schedule=HOURLY, execution_timezone="UTC")
def polyai_projects_hourly(context: ScheduleEvaluationContext) -> Iterator[RunRequest]:
    assert PROJECTS is not None
    hour = context.scheduled_execution_time.strftime("%Y-%m-%dT%H")
    for project_id in PROJECTS.get_partition_keys():
        yield RunRequest(run_key=f"{project_id}@{hour}", partition_key=project_id)


defs = Definitions(
    assets=[polyai_tables, polyai_dbt_marts],
    resources={"dlt": DagsterDltResource()},
    schedules=[polyai_hourly] if PROJECTS is None else [polyai_projects_hourly, polyai_marts_hourly],
)
