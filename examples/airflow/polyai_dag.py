"""Airflow: the PolyAI load every hour, then the dbt marts.

Copy this file into the DAGs folder and install the connector where the tasks run
(`pip install -e /path/to/this/repository` plus, for the dbt task, `dbt-duckdb` or the
warehouse's adapter). Settings are the connector's own, as environment variables of the workers
(SOURCES__POLYAI__API_KEY, __ACCOUNT_ID, __PROJECT_ID, ...) or a `.dlt/` folder in their
working directory.

State between runs: dlt keeps cursor and pending set in the destination and restores them when
a worker has no local copy, so nothing else is needed for BigQuery or Snowflake. For DuckDB, set
DESTINATION__DUCKDB__CREDENTIALS to an absolute path on a volume every worker sees.

A plain PythonOperator rather than dlt's PipelineTasksGroup: the source must be built when the
task runs (its settings and clock are read then), not each time the scheduler parses this file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.python import PythonOperator

# "bigquery" or "snowflake" work the same way, with dlt's credentials for them.
DESTINATION = "duckdb"
HOURLY = "0 * * * *"


# The connector is imported inside the tasks: the scheduler parses this file every few
# seconds, and dlt with pyarrow would make each parse slow.


def load_polyai() -> None:
    """One incremental run, exactly what `python pipelines/polyai_pipeline.py` does."""
    from pipelines.runner import DEFAULT_DATASET, DEFAULT_PIPELINE_NAME, make_pipeline, run_load
    from sources.polyai import polyai_source

    pipeline = make_pipeline(DEFAULT_PIPELINE_NAME, DESTINATION, DEFAULT_DATASET)
    print(run_load(pipeline, polyai_source).render())


def build_dbt_marts() -> None:
    """The dbt project in dbt/ on the same destination and dataset (what --run-dbt does)."""
    from pipelines.dbt_runner import run_dbt
    from pipelines.runner import DEFAULT_DATASET, DEFAULT_PIPELINE_NAME, make_pipeline

    pipeline = make_pipeline(DEFAULT_PIPELINE_NAME, DESTINATION, DEFAULT_DATASET)
    print(run_dbt(pipeline).render())


with DAG(
    dag_id="polyai_conversations",
    schedule=HOURLY,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    # Each run reads everything since the previous cursor: one run catches up, no backfill runs.
    catchup=False,
    # Two loads at once would race on the pipeline's state (and lock a DuckDB file).
    max_active_runs=1,
    # A failed load is safe to repeat: dlt finishes or discards it, nothing is doubled.
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["polyai", "dlt"],
) as dag:
    load = PythonOperator(task_id="load_polyai", python_callable=load_polyai)
    marts = PythonOperator(task_id="build_dbt_marts", python_callable=build_dbt_marts)
    load >> marts
