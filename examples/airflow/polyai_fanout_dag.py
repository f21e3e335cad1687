"""Airflow: every PolyAI project of the `projects` setting loaded by its own task, every hour.

For hundreds of projects or long backfills (README, "Many projects: one pipeline or fan-out";
docs/fan-out.md). Copy this file and examples/polyai_projects.py into the DAGs folder and
install the connector where the tasks run. The projects come from `sources.polyai.projects`
(`[[sources.polyai.projects]]` in the workers' .dlt/secrets.toml, or SOURCES__POLYAI__PROJECTS
as a JSON list); each entry's settings are the source's own, the others shared by all projects.

One mapped task per project (dynamic task mapping), each with its own pipeline (own state and
lock) and its own staging dataset, all merging into one dataset. The Airflow pool `polyai_api`
caps how many run at once, and with that the API's and the warehouse's concurrency:

    airflow pools set polyai_api 4 "PolyAI loads at once"

Only project ids pass through XCom; each task reads its entry, key included, where it runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.python import PythonOperator

# A warehouse that takes parallel writers: "bigquery" and "snowflake" work the same way, with
# dlt's credentials for them. Not DuckDB: a DuckDB file takes one writer at a time.
DESTINATION = "postgres"
DATASET = "polyai"
POOL = "polyai_api"
HOURLY = "0 * * * *"
# Tasks that reach a new dataset, or a new column, together race to create it: PostgreSQL fails
# all but one (docs/fan-out.md), and dlt raises SchemaUpdateError, which is safe to retry.
SCHEMA_RACE_RETRIES = 3


def list_projects() -> list[dict[str, str]]:
    """The mapped tasks' arguments: one `{"project_id": ...}` per entry, never a key."""
    from polyai_projects import project_ids

    return [{"project_id": project_id} for project_id in project_ids()]


def load_project(project_id: str) -> None:
    """One incremental run of one project, into the shared dataset."""
    import dlt
    from polyai_projects import pipeline_name, project_source, retry_schema_race, staging_layout

    from pipelines.runner import make_pipeline, run_load

    factory = getattr(dlt.destinations, DESTINATION)
    destination = factory(staging_dataset_name_layout=staging_layout(project_id))
    pipeline = make_pipeline(pipeline_name(project_id), destination, DATASET)
    make_source = project_source(project_id)
    summary = retry_schema_race(lambda: run_load(pipeline, make_source), SCHEMA_RACE_RETRIES)
    print(f"{project_id}: {summary.render()}")


with DAG(
    dag_id="polyai_conversations_fanout",
    schedule=HOURLY,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    # A project's next run must not overlap its previous one: they would race on its state.
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["polyai", "dlt"],
) as dag:
    projects = PythonOperator(task_id="list_projects", python_callable=list_projects)
    loads = PythonOperator.partial(task_id="load_project", python_callable=load_project, pool=POOL).expand(
        op_kwargs=projects.output
    )
