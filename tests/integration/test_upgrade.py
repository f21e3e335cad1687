"""A pipeline of the last version that loaded one project upgrades in place and goes on exactly.

The earlier version itself (its tree from git) loads first, in a subprocess; this version then
runs on the same pipeline and destination, with a second project whose simulator serves the
same conversation ids.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import tarfile
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import dlt
import duckdb
import pytest

from pipelines.runner import make_pipeline, run_load
from sources.polyai import polyai_source
from sources.polyai.state import LEGACY_PROJECT_ID
from tests.support.command import ROOT
from tests.support.harness import T0
from tests.support.regions import ACCOUNT, KEYS, Regions, check_project

# main before the `projects` setting: one project, turns without project_id, state at the top.
EARLIER_VERSION = "6ba8ad4161fecedef7094316fc30c0bed953cde6"
EARLIER_RUN = """
import functools, sys
from datetime import datetime
import dlt
from pipelines.runner import make_pipeline, run_load
from sources.polyai import polyai_source
base_url, database, pipelines_dir, now, key, account, project, start = sys.argv[1:]
pipeline = make_pipeline("test_upgrade", dlt.destinations.duckdb(database), "polyai", pipelines_dir)
source = functools.partial(
    polyai_source, api_key=key, account_id=account, project_id=project, base_url=base_url,
    start_date=start, clock=lambda: datetime.fromisoformat(now), include_latency=True,
)
print(run_load(pipeline, source).render())
"""


def earlier_tree(folder: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", EARLIER_VERSION], capture_output=True
    )
    if archive.returncode != 0:
        pytest.skip(f"the earlier version {EARLIER_VERSION[:7]} is not in this clone's history (shallow?)")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def test_a_single_project_pipeline_of_the_earlier_version_upgrades_in_place_and_goes_on_exactly(
    tmp_path: Path, regions: Regions
) -> None:
    tree = earlier_tree(tmp_path / "earlier")
    database, pipelines_dir = tmp_path / "upgrade.duckdb", tmp_path / "pipelines"
    us = regions.simulators["proj-us"].config
    earlier = subprocess.run(
        [sys.executable, "-c", EARLIER_RUN, regions.base_urls["proj-us"], str(database), str(pipelines_dir),
         regions.clock.now().isoformat(), us.api_key, ACCOUNT, "proj-us", T0.isoformat()],
        cwd=tree, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert earlier.returncode == 0, earlier.stderr
    with duckdb.connect(str(database), read_only=True) as connection:
        columns = {row[0] for row in connection.sql("DESCRIBE polyai.turns").fetchall()}
    assert "project_id" not in columns, "the earlier version already wrote project_id to turns"

    destination = dlt.destinations.duckdb(str(database))
    pipeline = make_pipeline("test_upgrade", destination, "polyai", str(pipelines_dir))
    make_source = functools.partial(
        polyai_source, **regions.source_options(project_id="proj-us", include_latency=True)
    )
    for hours in (2, 2, 9):
        regions.clock.advance(timedelta(hours=hours))
        summary = run_load(pipeline, make_source)
        assert not summary.failures
        # The US project went on from the earlier cursor: it read no conversation twice.
        state = pipeline.state["sources"]["polyai"]
        assert "cursor" not in state and len(state["projects"]) == 2
    assert LEGACY_PROJECT_ID not in state, "the earlier turns rows were given their project"
    with duckdb.connect(str(database), read_only=True) as connection:
        unkeyed = connection.sql("SELECT count(*) FROM polyai.turns WHERE project_id IS NULL").fetchone()
    assert unkeyed == (0,)
    for project in KEYS:
        check_project(database, pipeline.state, regions, project)
