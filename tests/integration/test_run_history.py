"""The run history, `_polyai_runs`: one row per load part and project, in the load it describes.

Two simulators as two regions, runs while the clock moves, backfills in several parts and a
project refused for one run. Each part's rows are checked against what the simulators served
in that part and against dlt's own row counts; after each run the rows add up to the tables.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.extract.source import DltSource

from pipelines.runner import make_pipeline, run_load
from polyai_simulator import Simulator
from sources.polyai import ProjectsFailed, load_until_caught_up, polyai_source
from sources.polyai.projects import state_key
from sources.polyai.settings import RUNS_TABLE
from sources.polyai.state import SourceState
from tests.support.regions import KEYS, REGIONS, Regions, project_cursor
from tests.support.run_rows import check_runs_add_up, committed_runs, uncommitted_runs


@dataclass
class Part:
    """What the test saw of one load part, beside the part's own rows."""

    load_id: str
    row_counts: dict[str, int]
    # Per project: its simulator's request log during the part, its pending ids before and after.
    requests: dict[str, list[dict[str, Any]]]
    pending_before: dict[str, set[str]]
    pending_after: dict[str, set[str]]


@dataclass
class PartRecorder:
    """Loads each part with `pipeline.run` (load_until_caught_up's `load`) and records it."""

    pipeline: dlt.Pipeline
    simulators: dict[str, Simulator]
    parts: list[Part] = field(default_factory=list)

    def __call__(self, source: DltSource) -> LoadInfo:
        logs = {project: len(sim.stats.request_log) for project, sim in self.simulators.items()}
        pending_before = self.pending()
        info = self.pipeline.run(source)
        trace = self.pipeline.last_trace
        assert trace is not None and trace.last_normalize_info is not None
        requests = {
            project: sim.stats.request_log[logs[project] :] for project, sim in self.simulators.items()
        }
        counts = dict(trace.last_normalize_info.row_counts)
        self.parts.append(Part(info.loads_ids[-1], counts, requests, pending_before, self.pending()))
        return info

    def pending(self) -> dict[str, set[str]]:
        states = SourceState.projects_of_pipeline(self.pipeline.state)
        keys = {project: state_key(project, REGIONS[project], "live") for project in self.simulators}
        return {
            project: set(states[key].pending) if key in states else set() for project, key in keys.items()
        }


def served(requests: list[dict[str, Any]], before: datetime | None = None) -> set[str]:
    """Ids the simulator served, in the requests whose window ends by `before` if given (re-pulls)."""
    ids: set[str] = set()
    for entry in requests:
        value = entry["params"]["end_time"]
        end = datetime.fromisoformat(value[0] if isinstance(value, list) else value)
        if before is None or end <= before:
            ids.update(entry["ids"])
    return ids


def check_parts(database: Path, parts: list[Part]) -> list[dict[str, Any]]:
    """Each part's rows against dlt's row counts and what the simulators served; returns the rows."""
    committed = committed_runs(database)
    all_rows = []
    # The finished conversations each project's last part kept: the next part of the run does
    # not stage them again when it re-reads them (sources/polyai/written_once.py, DuckDB).
    carried: dict[str, set[str]] = {}
    for part in parts:
        rows = [row for row in committed if row["_dlt_load_id"] == part.load_id]
        assert part.row_counts[RUNS_TABLE] == len(rows) > 0
        for table in ("conversations", "turns"):
            assert part.row_counts.get(table, 0) == sum(row[table] for row in rows), table
        for row in rows:
            project = row["project_id"]
            requests = part.requests[project]
            skipped = carried.get(project, set())
            kept = served(requests) - skipped
            assert row["conversations"] == len(kept), row
            before, after = part.pending_before[project], part.pending_after[project]
            carried[project] = kept - after
            assert row["pending_after"] == len(after)
            if row["outcome"] == "failed":
                assert before == after and row["finished_since_last"] == row["repulled"] == 0
                continue
            assert row["repulled"] == len(served(requests, row["window_from"]) - skipped), row
            # Nothing expires here: a conversation leaves the pending set by finishing.
            assert row["finished_since_last"] == len(before - after) and row["expired"] == 0
        all_rows += rows
    return all_rows


@dataclass
class Scenario:
    """One pipeline over the two regions' projects, loading in parts of a few conversations."""

    database: Path
    pipeline: dlt.Pipeline
    make_source: functools.partial[DltSource]
    recorder: PartRecorder
    regions: Regions
    late: dict[str, int] = field(default_factory=dict)

    def run(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """One run in parts, each part's rows checked; its rows and its failures."""
        start = len(self.recorder.parts)
        failures: dict[str, dict[str, Any]] = {}
        try:
            load_until_caught_up(self.pipeline, self.make_source, self.recorder)
        except ProjectsFailed as failed:
            failures = failed.failures
        rows = check_parts(self.database, self.recorder.parts[start:])
        self.late.update(check_runs_add_up(self.database, self.regions.simulators))
        # One run id for the run, its parts numbered from 1, each with a row per project read.
        assert len({row["run_id"] for row in rows}) == 1
        assert sorted({row["part"] for row in rows}) == list(range(1, len(self.recorder.parts) - start + 1))
        return rows, failures

    def run_with_the_runner(self) -> None:
        """The command's runner: its summary still counts the data tables alone."""
        summary = run_load(self.pipeline, self.make_source)
        now = self.regions.clock.now()
        newest = [row for row in committed_runs(self.database) if row["ran_at"] == now]
        assert summary.conversations > 0 and (summary.conversations, summary.turns) == (
            sum(row["conversations"] for row in newest),
            sum(row["turns"] for row in newest),
        )
        self.late.update(check_runs_add_up(self.database, self.regions.simulators))


def scenario(tmp_path: Path, regions: Regions) -> Scenario:
    database = tmp_path / "runs.duckdb"
    pipeline = make_pipeline("test_runs", dlt.destinations.duckdb(str(database)), pipelines_dir=str(tmp_path))
    make_source = functools.partial(
        polyai_source,
        # Parts of a few windows each, in both projects.
        **regions.source_options(
            max_attempts=2, max_conversations_per_load=15, window_hours=0.5, concurrency=2
        ),
    )
    return Scenario(database, pipeline, make_source, PartRecorder(pipeline, regions.simulators), regions)


def check_backfill(rows: list[dict[str, Any]]) -> None:
    last = max(row["part"] for row in rows)
    assert last >= 2, "the backfill should take parts"
    assert {row["outcome"] for row in rows if row["part"] == 1} == {"partial"}
    last_part = [row for row in rows if row["part"] == last]
    assert {row["outcome"] for row in last_part} == {"ok"} and len(last_part) == len(KEYS)
    assert all(row["region"] == REGIONS[row["project_id"]] for row in rows)


def check_refused(
    rows: list[dict[str, Any]], failures: dict[str, dict[str, Any]], eu_cursor: str | None
) -> None:
    """The EU project's one row says it failed and why, in the load of the US project's data."""
    assert list(failures) == ["projects[1] (proj-eu)"]
    (eu,) = [row for row in rows if row["project_id"] == "proj-eu"]
    assert eu["outcome"] == "failed" and eu["status"] == failures["projects[1] (proj-eu)"]["status"]
    assert eu["status"] in (401, 403) and str(eu["status"]) in eu["error_message"]
    assert eu["part"] == 1 and eu["conversations"] == eu["conversations_new"] == 0
    assert eu["cursor_before"] == eu["cursor_after"] == datetime.fromisoformat(str(eu_cursor))
    us_first = next(row for row in rows if row["project_id"] == "proj-us" and row["part"] == 1)
    assert us_first["_dlt_load_id"] == eu["_dlt_load_id"] and us_first["conversations_new"] > 0


def test_the_runs_table_adds_up_to_the_tables_over_parts_runs_and_a_failed_project(
    tmp_path: Path, regions: Regions
) -> None:
    runs = scenario(tmp_path, regions)
    backfill, failures = runs.run()
    assert not failures
    check_backfill(backfill)

    # The EU key is refused for one run.
    regions.clock.advance(timedelta(hours=2))
    regions.simulators["proj-eu"].config.api_key = "rotated-elsewhere"
    eu_cursor = project_cursor(dict(runs.pipeline.state), "proj-eu")
    check_refused(*runs.run(), eu_cursor)

    # Restored: the EU project catches up over parts of its own; then everything finishes.
    regions.simulators["proj-eu"].config.api_key = KEYS["proj-eu"]
    regions.clock.advance(timedelta(hours=2))
    caught_up, failures = runs.run()
    assert not failures and sum(row["project_id"] == "proj-eu" for row in caught_up) >= 2
    regions.clock.advance(timedelta(minutes=30))
    runs.run_with_the_runner()
    regions.clock.advance(timedelta(hours=8))
    finished, failures = runs.run()
    assert not failures and all(row["pending_after"] == 0 for row in finished if row["part"] == 1)

    assert sum(runs.late.values()) > 0, "no late arrival: the identity's second term is not exercised"
    every = committed_runs(runs.database)
    # The re-pull and finished counts were checked against something, not only against zeros.
    assert sum(row["repulled"] for row in every) > 0 and sum(row["finished_since_last"] for row in every) > 0
    assert not uncommitted_runs(runs.database)
    # Readable through dlt like the other tables; no key anywhere in the file.
    assert len(runs.pipeline.dataset()[RUNS_TABLE].fetchall()) == len(every)
    for key in KEYS.values():
        assert key.encode() not in runs.database.read_bytes()
