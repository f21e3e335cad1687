"""The scheduling examples in examples/: they run what the README documents, with real settings.

The Dagster assets are materialized against the simulator. Airflow is too heavy to install in CI
(about 70 more packages), so the DAG is checked with `ast`, and its task functions are cut out of
the file and run against the simulator; the full import runs when Airflow is installed.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pytest
import yaml
from dlt.destinations import bigquery, snowflake
from dlt.destinations import duckdb as duckdb_destination

from pipelines.polyai_pipeline import parse_args
from polyai_simulator import Simulator
from sources.polyai import polyai_source
from tests.support.fanout import fanout_env, project_simulators
from tests.support.fanout_worker import FANOUT_DAG, fanout_tasks
from tests.support.harness import finished_traffic, scheduled_env

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
WORKFLOW = EXAMPLES / "github_actions" / "polyai_load.yml"
DAG_FILE = EXAMPLES / "airflow" / "polyai_dag.py"
DAGSTER_FILE = EXAMPLES / "dagster" / "polyai_assets.py"
CLI = "python pipelines/polyai_pipeline.py"
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?(,\d+(-\d+)?)*)(/\d+)?$")
MODELS = sorted((ROOT / "dbt" / "models").rglob("*.sql"))
DESTINATION_SPECS = {"bigquery": bigquery, "snowflake": snowflake, "duckdb": duckdb_destination}


# --- GitHub Actions --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean true.
    return workflow.get("on") or workflow[True]


def pipeline_command(workflow: dict[Any, Any]) -> str:
    steps = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    commands = [line for run in steps for line in run.splitlines() if "polyai_pipeline.py" in line]
    assert len(commands) == 1, commands
    return commands[0].strip()


def job_env(workflow: dict[Any, Any]) -> dict[str, str]:
    (job,) = workflow["jobs"].values()
    return job["env"]


def credentials_spec(spec: Any) -> Any:
    kind = spec.get_resolvable_fields()["credentials"]
    # Some destinations declare a union of credential classes: the first is the documented one.
    return kind.__args__[0] if hasattr(kind, "__args__") else kind


def test_workflow_runs_on_a_valid_cron_schedule_one_run_at_a_time(workflow: dict[Any, Any]) -> None:
    schedules = triggers(workflow)["schedule"]
    assert schedules, "no cron schedule"
    for entry in schedules:
        fields = entry["cron"].split()
        assert len(fields) == 5 and all(CRON_FIELD.match(field) for field in fields), entry
    assert "workflow_dispatch" in triggers(workflow)
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert ".github/workflows/" in WORKFLOW.read_text()


def test_workflow_runs_the_documented_command_with_real_options(workflow: dict[Any, Any]) -> None:
    command = pipeline_command(workflow)
    script_and_args = shlex.split(command.split("python", 1)[1])
    assert f"python {script_and_args[0]}" == CLI
    assert CLI in (ROOT / "README.md").read_text()
    try:
        args = parse_args(script_and_args[1:])
    except SystemExit as error:
        pytest.fail(f"the workflow passes an option the CLI does not have: {command} ({error})")
    install = next(s["run"] for s in workflow["jobs"]["load"]["steps"] if "pip install" in s.get("run", ""))
    if args.run_dbt:
        assert f"dbt-{args.destination}" in install, "--run-dbt needs the destination's dbt adapter"


def test_workflow_env_names_are_real_settings_and_secrets_come_from_github(
    workflow: dict[Any, Any],
) -> None:
    env = job_env(workflow)
    destination = parse_args(shlex.split(pipeline_command(workflow).split("python", 1)[1])[1:]).destination
    source_settings = set(inspect.signature(polyai_source).parameters)
    spec = DESTINATION_SPECS[destination]().spec
    destination_settings = set(spec.get_resolvable_fields())
    credential_settings = set(credentials_spec(spec).get_resolvable_fields())
    for name in env:
        parts = name.lower().split("__")
        if parts[:2] == ["sources", "polyai"]:
            assert parts[2] in source_settings, name
        elif parts[:3] == ["destination", destination, "credentials"]:
            assert parts[3] in credential_settings, name
        else:
            assert parts[:2] == ["destination", destination] and parts[2] in destination_settings, name
    for secret in (
        "SOURCES__POLYAI__API_KEY",
        f"DESTINATION__{destination.upper()}__CREDENTIALS__PRIVATE_KEY",
    ):
        assert re.fullmatch(r"\$\{\{ secrets\.\w+ \}\}", env[secret]), secret
    assert {"SOURCES__POLYAI__ACCOUNT_ID", "SOURCES__POLYAI__PROJECT_ID"} <= set(env)


# --- Airflow ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dag_tree() -> ast.Module:
    return ast.parse(DAG_FILE.read_text(), filename=str(DAG_FILE))


def constants(tree: ast.Module) -> dict[str, Any]:
    return {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }


def call_keywords(tree: ast.Module, callee: str) -> list[dict[str, ast.expr]]:
    return [
        {keyword.arg: keyword.value for keyword in node.keywords if keyword.arg}
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == callee
    ]


def literal(value: ast.expr, names: dict[str, Any]) -> Any:
    return names[value.id] if isinstance(value, ast.Name) else ast.literal_eval(value)


def test_dag_runs_hourly_one_run_at_a_time_without_catchup(dag_tree: ast.Module) -> None:
    (dag,) = call_keywords(dag_tree, "DAG")
    names = constants(dag_tree)
    fields = literal(dag["schedule"], names).split()
    assert len(fields) == 5 and all(CRON_FIELD.match(field) for field in fields)
    assert literal(dag["catchup"], names) is False
    assert literal(dag["max_active_runs"], names) == 1


def test_dag_tasks_call_the_connector_load_then_dbt(dag_tree: ast.Module) -> None:
    functions = {node.name: node for node in dag_tree.body if isinstance(node, ast.FunctionDef)}
    callables = [op["python_callable"].id for op in call_keywords(dag_tree, "PythonOperator")]
    assert callables == ["load_polyai", "build_dbt_marts"]
    used = {
        "load_polyai": {
            "pipelines.runner": {"make_pipeline", "run_load"},
            "sources.polyai": {"polyai_source"},
        },
        "build_dbt_marts": {"pipelines.dbt_runner": {"run_dbt"}, "pipelines.runner": {"make_pipeline"}},
    }
    for name, modules in used.items():
        imported = {
            (node.module, alias.name)
            for node in ast.walk(functions[name])
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        for module, names in modules.items():
            for attribute in names:
                assert (module, attribute) in imported, (name, module, attribute)
                assert hasattr(importlib.import_module(module), attribute), (module, attribute)
    chains = [
        node for node in ast.walk(dag_tree) if isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift)
    ]
    assert [(chain.left.id, chain.right.id) for chain in chains] == [("load", "marts")]


def dag_task_functions(tree: ast.Module) -> ModuleType:
    """The DAG file without Airflow: its constants and task functions, run as a module."""
    kept = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.Assign, ast.ImportFrom))]
    dropped = [node for node in tree.body if node not in kept]
    # Only the docstring, the Airflow import and the DAG block may be left out.
    assert [type(node) for node in dropped] == [ast.Expr, ast.Try, ast.With]
    module = ModuleType("polyai_dag_tasks")
    exec(compile(ast.Module(body=kept, type_ignores=[]), str(DAG_FILE), "exec"), module.__dict__)
    return module


@pytest.fixture
def simulator_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Simulator, Path]]:
    """A finished day of traffic behind the simulator, and the connector's env settings for it."""
    with finished_traffic(seed=9, n_conversations=200, hours=30) as (simulator, base_url):
        yield simulator, set_connector_env(simulator, base_url, tmp_path, monkeypatch)


def set_connector_env(
    simulator: Simulator, base_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The connector's settings for the simulator as environment variables; the DuckDB file."""
    database = tmp_path / "scheduled.duckdb"
    for name, value in {
        **scheduled_env(simulator, base_url, database),
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
    }.items():
        monkeypatch.setenv(name, value)
    return database


def count(database: Path, sql: str) -> int:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.sql(sql).fetchall()[0][0]


def test_dag_tasks_load_keep_state_on_a_fresh_worker_and_build_the_marts(
    dag_tree: ast.Module,
    simulator_settings: tuple[Simulator, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    simulator, database = simulator_settings
    tasks = dag_task_functions(dag_tree)
    tasks.load_polyai()
    truth = len(simulator.truth())
    assert f"loaded {truth} conversation rows" in capsys.readouterr().out
    # A new worker: no local pipeline folder. dlt restores the cursor from the DuckDB file.
    shutil.rmtree(tmp_path / "dlt")
    tasks.load_polyai()
    assert "loaded 0 conversation rows" in capsys.readouterr().out
    assert count(database, "SELECT count(*) FROM polyai.conversations") == truth
    tasks.build_dbt_marts()
    assert count(database, "SELECT sum(conversations) FROM polyai_analytics.fct_daily_volume") == truth


def test_dag_imports_in_airflow() -> None:
    pytest.importorskip("airflow", reason="Airflow is not installed (too heavy for CI)")
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    dag = bag.dags["polyai_conversations"]
    assert [task.task_id for task in dag.tasks] == ["load_polyai", "build_dbt_marts"]
    assert dag.max_active_runs == 1


# --- Dagster ---------------------------------------------------------------------------------


# dagster 1.13 still reads pydantic's deprecated __fields__
QUIET_DAGSTER = pytest.mark.filterwarnings("ignore:The `__fields__` attribute is deprecated")


def import_dagster_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("polyai_assets", DAGSTER_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@QUIET_DAGSTER
def test_dagster_definitions_load_without_polyai_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("dagster_dlt", reason="pip install -e '.[dagster]'")
    for name in ("SOURCES__POLYAI__API_KEY", "SOURCES__POLYAI__ACCOUNT_ID", "SOURCES__POLYAI__PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    module = import_dagster_example()
    keys = {key.to_user_string() for key in module.defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"dlt_polyai_conversations", "dlt_polyai_turns", "polyai_dbt_marts"} <= keys
    # one load at a time: the op is in a concurrency pool
    assert module.polyai_tables.op.pool == "polyai_load"
    (schedule,) = module.defs.schedules
    fields = schedule.cron_schedule.split()
    assert len(fields) == 5 and all(CRON_FIELD.match(field) for field in fields)


@QUIET_DAGSTER
def test_dagster_assets_materialize_keep_state_and_build_the_marts(
    simulator_settings: tuple[Simulator, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("dagster_dlt", reason="pip install -e '.[dagster]'")
    from dagster import materialize
    from dagster_dlt import DagsterDltResource

    simulator, database = simulator_settings
    # The backfill takes several loads within the one materialization.
    monkeypatch.setenv("SOURCES__POLYAI__MAX_CONVERSATIONS_PER_LOAD", "30")
    # Small pages: 4 windows per connection (planning.slices_per_worker), so that the first
    # load stops with windows left whatever the order in which the connections start.
    monkeypatch.setenv("SOURCES__POLYAI__LIMIT", "50")
    module = import_dagster_example()
    assets = [module.polyai_tables, module.polyai_dbt_marts]
    resources = {"dlt": DagsterDltResource()}
    result = materialize(assets, resources=resources)
    assert result.success
    (marts,) = result.asset_materializations_for_node("polyai_dbt_marts")
    assert marts.metadata["models"].value == len(MODELS)
    assert marts.metadata["schema"].value == "polyai_analytics"
    truth = len(simulator.truth())
    assert count(database, "SELECT count(*) FROM polyai.conversations") == truth
    assert count(database, "SELECT sum(conversations) FROM polyai_analytics.fct_daily_volume") == truth
    assert count(database, "SELECT count(*) FROM polyai._dlt_loads WHERE status = 0") >= 2
    # dagster-dlt wipes the local pipeline folder before each run: the cursor must come back
    # from the DuckDB file, so the second run reads nothing again.
    assert materialize([module.polyai_tables], resources=resources).success
    assert module.polyai_pipeline.last_trace.last_normalize_info.row_counts.get("conversations", 0) == 0
    assert count(database, "SELECT count(*) FROM polyai.conversations") == truth


@QUIET_DAGSTER
def test_dagster_partitions_load_each_project_into_one_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the `projects` setting: one partition per project, each its own pipeline."""
    pytest.importorskip("dagster_dlt", reason="pip install -e '.[dagster]'")
    from dagster import materialize
    from dagster_dlt import DagsterDltResource

    with project_simulators([51, 52], n_conversations=60) as projects:
        database = tmp_path / "projects.duckdb"
        env = fanout_env(projects, "unused", tmp_path / "dlt")
        env.pop("DESTINATION__POSTGRES__CREDENTIALS")
        for name, value in {**env, "DESTINATION__DUCKDB__CREDENTIALS": str(database)}.items():
            monkeypatch.setenv(name, value)
        module = import_dagster_example()
        assert module.PROJECTS.get_partition_keys() == ["proj-a", "proj-b"]
        assert module.polyai_tables.op.pool == "polyai_load"
        resources = {"dlt": DagsterDltResource()}
        for project in projects:
            key = project.project_id
            assert materialize([module.polyai_tables], resources=resources, partition_key=key).success
        for project in projects:
            truth = len(project.simulator.truth())
            sql = f"SELECT count(*) FROM polyai.conversations WHERE project_id = '{project.project_id}'"
            assert truth > 0 and count(database, sql) == truth
        pipelines = count(database, "SELECT count(DISTINCT pipeline_name) FROM polyai._dlt_pipeline_state")
        assert pipelines == 2
        staging = "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'polyai_staging_%'"
        assert count(database, staging) == 2


def test_fanout_dag_maps_one_pooled_task_per_project_from_ids_only(monkeypatch: pytest.MonkeyPatch) -> None:
    tree = ast.parse(FANOUT_DAG.read_text(), filename=str(FANOUT_DAG))
    names = constants(tree)
    (dag,) = call_keywords(tree, "DAG")
    assert literal(dag["max_active_runs"], names) == 1 and literal(dag["catchup"], names) is False
    (partial,) = [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "PythonOperator.partial"
    ]  # fmt: skip
    keywords = {keyword.arg: keyword.value for keyword in partial.keywords}
    assert literal(keywords["pool"], names) == "polyai_api"
    assert keywords["python_callable"].id == "load_project"
    (expand,) = [node for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "expand"]
    assert ast.unparse(expand.value) == ast.unparse(partial)
    entries = [{"project_id": "proj-a", "api_key": "key-a"}, {"project_id": "proj-b", "api_key": "key-b"}]
    monkeypatch.setenv("SOURCES__POLYAI__PROJECTS", json.dumps(entries))
    # What goes through XCom to the mapped tasks: the ids, never a key.
    assert fanout_tasks().list_projects() == [{"project_id": "proj-a"}, {"project_id": "proj-b"}]


def test_fanout_dag_imports_in_airflow() -> None:
    pytest.importorskip("airflow", reason="Airflow is not installed (too heavy for CI)")
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(FANOUT_DAG))
    assert bag.import_errors == {}
    dag = bag.dags["polyai_conversations_fanout"]
    assert {task.task_id for task in dag.tasks} == {"list_projects", "load_project"}
