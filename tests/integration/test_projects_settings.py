"""The `projects` setting as a user gives it: the environment's JSON and .dlt/secrets.toml's tables.

The command runs in a subprocess from a temporary folder (dlt reads `.dlt/` from there); its
keys must show nowhere: not in its output, nor in dlt's trace or any file it leaves.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

from polyai_simulator import Simulator
from tests.support.command import ROOT, run_cli
from tests.support.harness import scheduled_env

KEY_A = "sk-proj-a-5e1c9b7d3a2f-entry-marker"
KEY_B = "sk-proj-b-8f2a6c4e1d9b-entry-marker"
ENTRIES = [
    {"project_id": "proj-a", "api_key": KEY_A, "region": "us-1"},
    {"project_id": "proj-b", "api_key": KEY_B, "region": "eu-west-1"},
]
SECRETS_TOML = f"""[sources.polyai]
account_id = "acc-toml"

[[sources.polyai.projects]]
project_id = "proj-a"
api_key = "{KEY_A}"

[[sources.polyai.projects]]
project_id = "proj-b"
api_key = "{KEY_B}"
region = "{{region}}"
client_env = "sandbox"
"""
# What a run resolves from the folder's .dlt/, printed without the keys.
RESOLVE = """
import json, sys
from datetime import UTC, datetime
sys.path.insert(0, sys.argv[1])
from dlt.common.configuration import resolve_configuration
from sources.polyai.config import PolyAISourceConfiguration
config = resolve_configuration(PolyAISourceConfiguration(), sections=("sources", "polyai"))
projects = config.project_settings(datetime.now(UTC))
print(json.dumps([[p.label, p.state_key, p.connector.base_url, p.connector.account_id,
                   p.connector.api_key == sys.argv[1 + i + 1]] for i, p in enumerate(projects)]))
"""


def assert_no_key(*texts: str) -> None:
    for key in (KEY_A, KEY_B):
        assert not any(key in text for text in texts), "a key shows"


def test_a_bad_region_in_an_entry_of_the_environments_list_is_one_line_naming_the_entry(
    tmp_path: Path,
) -> None:
    env = {"SOURCES__POLYAI__ACCOUNT_ID": "acc-1", "SOURCES__POLYAI__PROJECTS": json.dumps(ENTRIES)}
    for verbose in ((), ("--verbose",)):
        result = run_cli(tmp_path, *verbose, env=env)
        assert result.returncode == 2, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert lines == [result.stderr.strip().splitlines()[-1]]
        assert lines[0].startswith("error: projects[1] (proj-b): setting `region` is 'eu-west-1', not one of")
        assert_no_key(result.stdout, result.stderr)
        if not verbose:
            assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_list_that_is_not_json_is_refused_naming_the_setting_without_its_keys(tmp_path: Path) -> None:
    broken = json.dumps(ENTRIES)[:-2]  # the last entry left open
    env = {"SOURCES__POLYAI__ACCOUNT_ID": "acc-1", "SOURCES__POLYAI__PROJECTS": broken}
    result = run_cli(tmp_path, "--verbose", env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1].startswith("error: Setting `projects` is not valid JSON")
    assert "Traceback" not in result.stderr
    assert_no_key(result.stdout, result.stderr)


def test_the_array_of_tables_in_secrets_toml_is_read_and_checked(tmp_path: Path) -> None:
    (tmp_path / ".dlt").mkdir()
    secrets = tmp_path / ".dlt" / "secrets.toml"
    secrets.write_text(SECRETS_TOML.format(region="euw-1"), encoding="utf-8")
    resolved = subprocess.run(
        [sys.executable, "-c", RESOLVE, str(ROOT), KEY_A, KEY_B],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DLT_DATA_DIR": str(tmp_path / "dlt_data")},
    )
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    assert json.loads(resolved.stdout) == [
        [
            "projects[0] (proj-a)",
            "us-1/proj-a/live",
            "https://api.us-1.platform.polyai.app",
            "acc-toml",
            True,
        ],
        [
            "projects[1] (proj-b)",
            "euw-1/proj-b/sandbox",
            "https://api.euw-1.platform.polyai.app",
            "acc-toml",
            True,
        ],
    ]

    secrets.write_text(SECRETS_TOML.format(region="eu-west-1"), encoding="utf-8")
    result = run_cli(tmp_path, "--verbose")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1].startswith("error: projects[1] (proj-b): setting `region`")
    assert_no_key(result.stdout, result.stderr)


def test_a_run_with_projects_leaves_no_key_in_dlts_trace_or_its_folders(
    tmp_path: Path, world: tuple[Simulator, str]
) -> None:
    """dlt's trace records every non-secret setting it resolved: `projects` is resolved, yet no value."""
    simulator, base_url = world
    simulator.config.api_key = KEY_A
    entry = {"project_id": simulator.config.project_id, "api_key": KEY_A}
    env = {
        **scheduled_env(simulator, base_url, tmp_path / "projects.duckdb"),
        "SOURCES__POLYAI__PROJECTS": json.dumps([entry]),
    }
    result = run_cli(tmp_path, "--verbose", env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    trace_file = tmp_path / "pipelines" / "polyai_conversations" / "trace.pickle"
    traced = pickle.loads(trace_file.read_bytes()).resolved_config_values
    projects = [value for value in traced if value.key == "projects"]
    assert projects and all(value.is_secret_hint and value.value is None for value in projects)
    assert_no_key(result.stdout, result.stderr)
    leaked = [path for path in tmp_path.rglob("*") if path.is_file() and KEY_A.encode() in path.read_bytes()]
    assert leaked == []
