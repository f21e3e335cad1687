"""One Airflow worker of the fan-out DAG: its `load_project` task, in a process of its own.

    python -m tests.support.fanout_worker PROJECT_ID START_AT [RETRIES]

The settings come from the environment the test set. The task starts at the wall-clock time
START_AT (epoch seconds), so that the workers of a test reach the warehouse together, as
mapped tasks that Airflow starts at once do.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
FANOUT_DAG = ROOT / "examples" / "airflow" / "polyai_fanout_dag.py"


def fanout_tasks() -> ModuleType:
    """The fan-out DAG file without Airflow: its constants and task functions, run as a module."""
    tree = ast.parse(FANOUT_DAG.read_text(), filename=str(FANOUT_DAG))
    kept = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.Assign, ast.ImportFrom))]
    dropped = [node for node in tree.body if node not in kept]
    # Only the docstring, the Airflow import and the DAG block may be left out.
    assert [type(node) for node in dropped] == [ast.Expr, ast.Try, ast.With], dropped
    # In Airflow polyai_projects.py sits in the DAGs folder, on the import path. Not the whole of
    # examples/ here: its `airflow` folder would pass for the Airflow package.
    sys.modules.setdefault("polyai_projects", importlib.import_module("examples.polyai_projects"))
    module = ModuleType("polyai_fanout_tasks")
    exec(compile(ast.Module(body=kept, type_ignores=[]), str(FANOUT_DAG), "exec"), module.__dict__)
    return module


def probe_settings(projects: ModuleType) -> None:
    """Test-only changes to the example, from the environment: the shared staging dataset that
    the example avoids (POLYAI_FANOUT_SHARED_STAGING), another pipeline name (..._SUFFIX)."""
    if os.environ.get("POLYAI_FANOUT_SHARED_STAGING"):
        projects.staging_layout = lambda _project_id: "%s_staging"
    suffix = os.environ.get("POLYAI_FANOUT_PIPELINE_SUFFIX")
    if suffix:
        named = projects.pipeline_name
        projects.pipeline_name = lambda project_id: named(project_id) + suffix


def main(argv: list[str]) -> None:
    project_id, start_at = argv[0], float(argv[1])
    tasks = fanout_tasks()
    tasks.DATASET = os.environ.get("POLYAI_FANOUT_DATASET", tasks.DATASET)
    if len(argv) > 2:
        tasks.SCHEMA_RACE_RETRIES = int(argv[2])
    probe_settings(sys.modules["polyai_projects"])
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    tasks.load_project(project_id)
    # Read by scripts/fanout_timing.py.
    print(f"task seconds {time.time() - started:.2f} ended {time.time():.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
