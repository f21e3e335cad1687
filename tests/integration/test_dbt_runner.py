"""`--run-dbt`: the load, then the dbt project built by dlt's dbt runner in the same destination.

The CLI runs for real against the bundled simulator; the marts it builds are checked against the
tables the load wrote, in the pipeline's own DuckDB file and dataset.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import dlt
import duckdb
import pytest

from pipelines.dbt_runner import DBT_PROJECT_DIR, DbtFailed, run_dbt
from pipelines.runner import make_pipeline
from polyai_simulator import Simulator
from tests.support.command import run_cli
from tests.support.harness import Harness, finished_traffic, scheduled_env

pytest.importorskip("dbt.adapters.duckdb", reason="dbt-duckdb is not installed (test extra)")

MODELS = sorted((DBT_PROJECT_DIR / "models").rglob("*.sql"))
MARTS = {
    "fct_containment",
    "fct_daily_volume",
    "fct_duration_distribution",
    "fct_handoff_reasons",
    "fct_ood_silence_rates",
    "fct_turn_latency_percentiles",
}


def scalar(database: Path, sql: str) -> object:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.sql(sql).fetchall()[0][0]


def tables_in(database: Path, schema: str) -> set[str]:
    sql = f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'"
    with duckdb.connect(str(database), read_only=True) as connection:
        return {name for (name,) in connection.sql(sql).fetchall()}


def assert_marts_agree_with_sources(database: Path, dataset: str, analytics: str) -> None:
    assert tables_in(database, analytics) >= MARTS
    conversations = scalar(database, f"SELECT count(*) FROM {dataset}.conversations")
    assert conversations > 0
    assert scalar(database, f"SELECT sum(conversations) FROM {analytics}.fct_daily_volume") == conversations
    finished = scalar(database, f"SELECT count(*) FROM {dataset}.conversations WHERE NOT in_progress")
    assert (
        scalar(database, f"SELECT sum(finished_conversations) FROM {analytics}.fct_daily_volume") == finished
    )
    handoffs = scalar(
        database, f"SELECT count(*) FROM {dataset}.conversations WHERE handoff AND NOT in_progress"
    )
    assert (
        scalar(database, f"SELECT sum(handed_off_conversations) FROM {analytics}.fct_containment") == handoffs
    )
    turns = scalar(database, f"SELECT count(*) FROM {dataset}.turns")
    assert scalar(database, f"SELECT sum(turns) FROM {analytics}.fct_ood_silence_rates") == turns


@pytest.fixture
def finished_simulator() -> Iterator[tuple[Simulator, str]]:
    with finished_traffic(seed=5, n_conversations=200, hours=30) as served:
        yield served


def test_demo_with_run_dbt_builds_marts_that_agree_with_the_load(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--demo", "--demo-conversations", "400", "--run-dbt")
    assert result.returncode == 0, result.stderr
    assert f"dbt models in polyai_analytics: {len(MODELS)} built, 0 failed" in result.stdout
    assert re.search(r"^dbt tests: [1-9]\d* passed, \d+ warned, 0 failed$", result.stdout, re.MULTILINE)
    assert_marts_agree_with_sources(tmp_path / "polyai_demo.duckdb", "polyai", "polyai_analytics")
    # dbt's artifacts stay in the pipeline's working folder, not in the shared dbt/target
    assert (tmp_path / "pipelines" / "polyai_demo" / "dbt" / "target" / "run_results.json").exists()


def test_scheduled_run_builds_in_its_own_file_and_dataset(
    tmp_path: Path, finished_simulator: tuple[Simulator, str]
) -> None:
    simulator, base_url = finished_simulator
    # A relative path: dbt runs inside dbt/, so it must be given the file the load wrote.
    env = scheduled_env(simulator, base_url, "scheduled.duckdb")
    result = run_cli(tmp_path, "--dataset-name", "polyai_eu", "--run-dbt", env=env)
    assert result.returncode == 0, result.stderr
    assert f"dbt models in polyai_eu_analytics: {len(MODELS)} built, 0 failed" in result.stdout
    database = tmp_path / "scheduled.duckdb"
    assert_marts_agree_with_sources(database, "polyai_eu", "polyai_eu_analytics")
    assert not (DBT_PROJECT_DIR / "scheduled.duckdb").exists()
    assert tables_in(database, "polyai_analytics") == set()


def test_a_failing_dbt_test_exits_3_and_names_the_test(
    tmp_path: Path, finished_simulator: tuple[Simulator, str]
) -> None:
    simulator, base_url = finished_simulator
    env = scheduled_env(simulator, base_url, str(tmp_path / "broken.duckdb"))
    assert run_cli(tmp_path, env=env).returncode == 0
    # A duplicate the next incremental run does not touch (it is older than the lookback).
    with duckdb.connect(str(tmp_path / "broken.duckdb")) as connection:
        connection.sql(
            "INSERT INTO polyai.conversations SELECT * FROM polyai.conversations ORDER BY started_at LIMIT 1"
        )
    result = run_cli(tmp_path, "--run-dbt", env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "error: dbt test failed after a successful load" in result.stderr
    assert "fail: source_unique_combination_of_columns_polyai_conversations" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failing_model_names_the_model(tmp_path: Path, harness: Harness) -> None:
    harness.run()
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    (project / "models" / "marts" / "fct_broken.sql").write_text(
        "select no_such_column from {{ ref('stg_polyai__turns') }}"
    )
    with pytest.raises(DbtFailed) as failure:
        run_dbt(harness.pipeline, project)
    message = str(failure.value)
    assert "dbt run failed after a successful load" in message
    assert "error: fct_broken" in message
    assert "no_such_column" in message


def test_a_dataset_without_the_tables_stops_before_any_model(tmp_path: Path, harness: Harness) -> None:
    harness.run()
    elsewhere = make_pipeline(
        "test_elsewhere", dlt.destinations.duckdb(str(harness.database)), "not_loaded", str(tmp_path / "p2")
    )
    with pytest.raises(DbtFailed, match="stopped before any model or test ran"):
        run_dbt(elsewhere)
    assert tables_in(harness.database, "not_loaded_analytics") == set()
