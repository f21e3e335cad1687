"""Several projects in one pipeline: two simulators as two regions, one key refused for a run."""

from __future__ import annotations

import functools
import json
import logging
from datetime import timedelta
from pathlib import Path

import dlt
import pytest

from pipelines.runner import RunSummary, make_pipeline, run_load
from sources.polyai import polyai_source
from tests.support.command import run_cli, tables
from tests.support.harness import T0
from tests.support.regions import ACCOUNT, KEYS, Regions, check_project, project_cursor


def test_two_regions_load_into_one_pipeline_and_a_refused_key_catches_up_on_the_next_run(
    tmp_path: Path, regions: Regions, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "projects.duckdb"
    destination = dlt.destinations.duckdb(str(database))
    pipeline = make_pipeline("test_projects", destination, pipelines_dir=str(tmp_path / "p"))
    make_source = functools.partial(
        polyai_source, **regions.source_options(max_attempts=2, include_latency=True)
    )
    outputs: list[str] = []

    def run() -> RunSummary:
        summary = run_load(pipeline, make_source)
        outputs.append(summary.render())
        return summary

    caplog.set_level(logging.INFO)
    first = run()
    assert not first.failures
    assert set(first.projects) == {"projects[0] (proj-us)", "projects[1] (proj-eu)"}
    for project in KEYS:
        check_project(database, pipeline.state, regions, project)
    # The two projects serve the same ids: each project's rows are its own.
    assert {c["id"] for c in regions.simulators["proj-us"].truth()} == {
        c["id"] for c in regions.simulators["proj-eu"].truth()
    }

    # The EU key is refused for one run: the US project loads, the EU one stays where it was.
    regions.clock.advance(timedelta(hours=2))
    regions.simulators["proj-eu"].config.api_key = "rotated-elsewhere"
    eu_cursor = project_cursor(pipeline.state, "proj-eu")
    refused = run()
    assert list(refused.failures) == ["projects[1] (proj-eu)"]
    failure = refused.failures["projects[1] (proj-eu)"]
    assert failure["status"] in (401, 403) and failure["refused"], failure
    assert "FAILED" in refused.render() and "proj-eu" in refused.render()
    assert project_cursor(pipeline.state, "proj-eu") == eu_cursor
    check_project(database, pipeline.state, regions, "proj-us")

    # Restored: the next run catches the EU project up; both end exactly at their truths.
    regions.simulators["proj-eu"].config.api_key = KEYS["proj-eu"]
    regions.clock.advance(timedelta(hours=2))
    caught_up = run()
    assert not caught_up.failures
    regions.clock.advance(timedelta(hours=8))
    last = run()
    assert not last.failures and last.pending == 0
    for project in KEYS:
        check_project(database, pipeline.state, regions, project)
    texts = [*outputs, caplog.text]
    for key in KEYS.values():
        leaks = [f"output #{i}" for i, text in enumerate(texts) if key in text]
        leaks += [str(p) for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
        assert not leaks, f"the key of a project shows in {leaks}"


def test_the_command_with_the_projects_variable_loads_one_and_exits_2_for_the_refused_one(
    tmp_path: Path, regions: Regions
) -> None:
    entries = regions.entries()
    entries[1]["api_key"] = "not-the-eu-key"
    env = {
        "SOURCES__POLYAI__PROJECTS": json.dumps(entries),
        "SOURCES__POLYAI__ACCOUNT_ID": ACCOUNT,
        # The simulators' clock stands still where the command reads the real one: a start
        # before their traffic, and nothing of theirs lies after it.
        "SOURCES__POLYAI__START_DATE": T0.isoformat(),
        "SOURCES__POLYAI__MAX_ATTEMPTS": "2",
        "SOURCES__POLYAI__BACKOFF_FACTOR": "0.01",
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "cli.duckdb"),
    }
    result = run_cli(tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "projects[0] (proj-us): " in result.stdout and "projects[1] (proj-eu): FAILED" in result.stdout
    assert "error: projects[1] (proj-eu) was not loaded: PolyAI API answered 403" in result.stderr
    assert "Traceback" not in result.stderr
    conversations, turns = tables(tmp_path / "cli.duckdb")
    assert {row["project_id"] for row in conversations} == {"proj-us"}
    assert len(conversations) == len(regions.simulators["proj-us"].truth()) and turns
    for key in [*KEYS.values(), "not-the-eu-key"]:
        assert key not in result.stdout + result.stderr
