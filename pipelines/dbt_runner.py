"""Build the dbt project in dbt/ on the data a load just wrote, through dlt's dbt runner.

The models are built in `<dataset>_analytics` (or POLYAI_DBT_SCHEMA) of the pipeline's own
destination, and read the tables of the pipeline's dataset: the runner cannot point dbt at
another file or schema than the one the load wrote.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration.specs import ConnectionStringCredentials
from dlt.common.runners import Venv
from dlt.helpers.dbt.exceptions import DBTNodeResult, DBTProcessingError
from dlt.helpers.dbt.runner import DBTPackageRunner

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt"
PROJECT_PROFILE = "polyai"
MODEL_OK = {"success"}
TEST_OK = {"pass"}
TEST_WARN = {"warn"}
# dbt adapter packages whose name differs from dlt's destination name
DBT_ADAPTERS = {"motherduck": "duckdb", "mssql": "sqlserver"}
# dlt reports the project's on-run-start hook among the nodes of every command
HOOK_MARKERS = ("-on-run-start-", "-on-run-end-")


class DbtFailed(Exception):
    """dbt failed after a successful load: the data is in, the models or their tests are not."""


@dataclass
class DbtSummary:
    schema: str
    models: list[DBTNodeResult] = field(default_factory=list)
    tests: list[DBTNodeResult] = field(default_factory=list)

    @property
    def models_failed(self) -> list[DBTNodeResult]:
        return [node for node in self.models if node.status not in MODEL_OK]

    @property
    def tests_failed(self) -> list[DBTNodeResult]:
        return [node for node in self.tests if node.status not in TEST_OK | TEST_WARN]

    @property
    def tests_warned(self) -> list[DBTNodeResult]:
        return [node for node in self.tests if node.status in TEST_WARN]

    def render(self) -> str:
        models_ok = len(self.models) - len(self.models_failed)
        tests_ok = len(self.tests) - len(self.tests_failed) - len(self.tests_warned)
        lines = [
            f"dbt models in {self.schema}: {models_ok} built, {len(self.models_failed)} failed",
            f"dbt tests: {tests_ok} passed, {len(self.tests_warned)} warned, {len(self.tests_failed)} failed",
        ]
        noteworthy = self.models_failed + self.tests_failed + self.tests_warned
        lines += [f"  {describe(node)}" for node in noteworthy]
        return "\n".join(lines)


def describe(node: DBTNodeResult) -> str:
    message = " ".join(str(node.message or "").split())
    return f"{node.status}: {node.model_name}" + (f": {message}" if message else "")


def run_dbt(pipeline: dlt.Pipeline, project_dir: Path = DBT_PROJECT_DIR) -> DbtSummary:
    """`dbt run` then `dbt test` on the pipeline's dataset; raises DbtFailed naming what failed."""
    runner = make_runner(pipeline, project_dir)
    dataset = pipeline.dataset_name
    schema = analytics_schema(dataset)
    # The project reads its sources from var polyai_schema; an empty polyai_database means
    # "the target's database", which for both profiles is where the load wrote.
    package_vars = {"polyai_schema": dataset, "polyai_database": ""}
    summary = DbtSummary(schema)
    with project_profile_environment(runner, schema):
        try:
            summary.models = run_step(runner.run, ["--fail-fast"], package_vars, schema)
            summary.tests = run_step(runner.test, [], package_vars, schema)
        except DBTProcessingError as error:
            nodes = without_hooks(error.run_results)
            if error.command == "test":
                summary.tests = nodes
            else:
                summary.models = nodes
            raise DbtFailed(failure_message(error, summary)) from error
    return summary


def require_dbt(destination_type: str) -> None:
    """Fail before dbt starts: inside dlt's child process a missing dbt is a pickled traceback."""
    adapter = DBT_ADAPTERS.get(destination_type, destination_type)
    try:
        found = importlib.util.find_spec(f"dbt.adapters.{adapter}") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise DbtFailed(
            f"--run-dbt needs dbt-core and dbt-{adapter} in this Python environment: "
            f"{sys.executable} -m pip install 'dbt-core>=1.11,<1.12' dbt-{adapter}"
        )


def analytics_schema(dataset: str) -> str:
    return os.environ.get("POLYAI_DBT_SCHEMA") or f"{dataset}_analytics"


def make_runner(pipeline: dlt.Pipeline, project_dir: Path) -> DBTPackageRunner:
    require_dbt(destination_type(pipeline))
    runner = dlt.dbt.package(pipeline, str(project_dir), venv=current_python())
    if uses_project_profile(runner):
        # dlt's generated DuckDB profile installs the httpfs and iceberg extensions (a download,
        # so it fails offline) and leaves the session time zone to the machine; the project's
        # own profile has neither problem. Warehouses keep dlt's profile: it reuses the
        # pipeline's credentials instead of asking for them again as POLYAI_* variables.
        runner.config.package_profiles_dir = str(project_dir)
        runner.config.package_profile_name = PROJECT_PROFILE
    return runner


def destination_type(pipeline: dlt.Pipeline) -> str:
    return pipeline.destination.destination_type.split(".")[-1] if pipeline.destination else "duckdb"


def uses_project_profile(runner: DBTPackageRunner) -> bool:
    return runner.credentials.destination_type == "duckdb"


def current_python() -> Venv:
    """This interpreter, where dbt-duckdb is installed.

    Venv.restore_current() relies on VIRTUAL_ENV, which `.venv/bin/python` does not set; without
    it dlt would start whatever `python` is first on PATH, where dbt (or dlt) may be missing.
    """
    context = types.SimpleNamespace(bin_path=os.path.dirname(sys.executable), env_exe=sys.executable)
    return Venv(context, current=True)


@contextmanager
def project_profile_environment(runner: DBTPackageRunner, schema: str) -> Iterator[None]:
    """Point dbt/profiles.yml at the pipeline's DuckDB file; dbt runs in a child process."""
    settings: dict[str, str] = {}
    if uses_project_profile(runner):
        credentials = runner.credentials.credentials
        # DuckDB's credentials (DuckDbCredentials) are a connection string's kind.
        assert isinstance(credentials, ConnectionStringCredentials)
        # The runner starts dbt inside dbt/, so a relative path would name another file.
        database = os.path.abspath(str(credentials.database))
        settings = {
            "POLYAI_DBT_TARGET": "duckdb",
            "POLYAI_DUCKDB_PATH": database,
            "POLYAI_DBT_SCHEMA": schema,
        }
    # dbt's partial-parse cache and run results go to the pipeline's working folder, so two
    # pipelines (two projects or regions) building at once do not share dbt/target.
    work = Path(runner.working_dir) / "dbt"
    settings |= {"DBT_TARGET_PATH": str(work / "target"), "DBT_LOG_PATH": str(work / "logs")}
    # Scheduled runs end up in log files, where colour codes are noise.
    settings["DBT_USE_COLORS"] = os.environ.get("DBT_USE_COLORS", "false")
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_step(
    step: Callable[..., Sequence[DBTNodeResult] | None],
    params: list[str],
    package_vars: dict[str, Any],
    schema: str,
) -> list[DBTNodeResult]:
    return without_hooks(step(params, package_vars, schema))


def without_hooks(nodes: Sequence[DBTNodeResult] | None) -> list[DBTNodeResult]:
    return [node for node in nodes or [] if not any(marker in node.model_name for marker in HOOK_MARKERS)]


def failure_message(error: DBTProcessingError, summary: DbtSummary) -> str:
    if summary.models_failed or summary.tests_failed:
        details = summary.render()
    else:
        # No node failed: a project, profile or on-run-start error, which dbt printed above.
        details = f"dbt {error.command} stopped before any model or test ran: see dbt's message above"
    return (
        f"dbt {error.command} failed after a successful load. The data is loaded; once fixed, "
        f"run the pipeline again with --run-dbt.\n{details}"
    )
