"""Resync through the library, end to end: the simulator over HTTP into DuckDB while its clock moves."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.common.configuration import resolve_configuration

from pipelines.runner import make_pipeline, run_load
from polyai_simulator import SimClock, SimConfig
from sources.polyai import ProjectsFailed, ResyncRange, load_resync, polyai_source
from sources.polyai.config import PolyAISourceConfiguration
from sources.polyai.resync import ResyncProgress
from sources.polyai.resync_preview import ProjectPreview, preview_resync
from sources.polyai.state import SourceState
from tests.support.harness import T0, Harness, make_harness
from tests.support.regions import KEYS, Regions, check_project
from tests.support.truth import check_run_against_truth, compare_tables

HOUR = timedelta(hours=1)


@pytest.fixture
def three_days(tmp_path: Path) -> Iterator[Harness]:
    """Three days of traffic, read in pages of 25 by two connections, the clock 6 hours in."""
    config = SimConfig(seed=29, n_conversations=300, start=T0, end=T0 + 72 * HOUR)
    yield from make_harness(
        tmp_path, config, SimClock(T0 + 6 * HOUR), limit=25, concurrency=2, include_latency=True
    )


def preview(harness: Harness, resync: ResyncRange) -> ProjectPreview:
    """The dry run, with the harness's settings, as the command runs it."""
    options = harness.options()
    options.pop("clock")
    settings = resolve_configuration(
        PolyAISourceConfiguration(), sections=("sources", "polyai"), explicit_value=options
    )
    now = harness.clock.now()
    (only,) = preview_resync(
        harness.pipeline, resync, settings.project_settings(now), settings.privacy_rules(), now
    )
    return only


def resync(harness: Harness, resync: ResyncRange, **overrides: Any) -> ResyncProgress:
    load_resync(harness.pipeline, resync, **harness.options(**overrides))
    progress = ResyncProgress.read(harness.source_state.get("resync"))
    assert progress is not None
    return progress


def hollow(harness: Harness) -> dict[str, datetime]:
    """Loaded conversations that have turns at the API and none in the table: id -> started_at."""
    assert harness.database is not None
    with duckdb.connect(str(harness.database), read_only=True) as connection:
        rows = connection.sql(
            "SELECT id, started_at FROM polyai.conversations AS c WHERE num_turns > 0 AND NOT EXISTS "
            "(SELECT 1 FROM polyai.turns AS t WHERE t.conversation_id = c.id)"
        ).fetchall()
    return dict(rows)


def snapshot(harness: Harness) -> tuple[Any, ...]:
    """Everything a write could change: both tables, dlt's loads and state rows, the local state."""
    assert harness.database is not None
    with duckdb.connect(str(harness.database), read_only=True) as connection:
        loads = connection.sql("SELECT load_id, status FROM polyai._dlt_loads ORDER BY load_id").fetchall()
        states = connection.sql(
            "SELECT version, state FROM polyai._dlt_pipeline_state ORDER BY version"
        ).fetchall()
    conversations = harness.rows("conversations", "id")
    turns = harness.rows("turns", "conversation_id, turn_index")
    return conversations, turns, loads, states, dict(harness.pipeline.state)


def run_history(harness: Harness) -> list[dict[str, Any]]:
    """The rows of `_polyai_runs`, in the order they were loaded."""
    assert harness.database is not None
    with duckdb.connect(str(harness.database), read_only=True) as connection:
        result = connection.sql("SELECT * FROM polyai._polyai_runs ORDER BY _dlt_load_id, part")
        names = [column[0] for column in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def check_resync_rows(harness: Harness, done: ResyncProgress, span: ResyncRange) -> None:
    """The resync's parts in the run history: its own kind, range, outcome and figures."""
    rows = [row for row in run_history(harness) if row["kind"] == "resync"]
    assert len(rows) == done.parts
    assert [row["outcome"] for row in rows] == ["partial"] * (done.parts - 1) + ["ok"]
    assert rows[0]["window_from"] == span.start and rows[-1]["window_to"] == span.end
    assert all(a["window_to"] == b["window_from"] for a, b in itertools.pairwise(rows))
    assert sum(row["conversations"] for row in rows) == done.conversations
    assert sum(row["turns"] for row in rows) == done.turns
    assert sum(row["requests"] for row in rows) == done.requests
    assert all(row["cursor_after"] == row["cursor_before"] for row in rows)
    everything = run_history(harness)
    assert {row["kind"] for row in everything} == {"run", "resync"}
    # New to the warehouse, over every kind of part: what the table holds.
    assert sum(row["conversations_new"] for row in everything) == len(harness.rows("conversations", "id"))


def requested_windows(harness: Harness) -> list[tuple[str, str]]:
    return [
        (entry["params"]["start_time"], entry["params"]["end_time"])
        for entry in harness.simulator.stats.request_log
    ]


def utc_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def turn_off_transcripts_for_two_runs(harness: Harness) -> None:
    """The project's transcript setting is off for two runs, then on again; all traffic ends."""
    harness.run()
    harness.simulator.config.transcripts_enabled = False
    for _ in range(2):
        harness.clock.advance(12 * HOUR)
        harness.run()
    harness.simulator.config.transcripts_enabled = True
    harness.clock.advance(60 * HOUR)
    harness.run()


def test_a_resync_restores_every_turn_hidden_for_two_runs_reading_that_range_only(
    three_days: Harness,
) -> None:
    harness = three_days
    turn_off_transcripts_for_two_runs(harness)
    hidden = hollow(harness)
    assert len(hidden) > 50, "the two runs without transcripts should have loaded hollow conversations"
    assert compare_tables(
        harness.simulator.truth(include_latency=True),
        harness.rows("conversations", "id"),
        harness.rows("turns", "conversation_id, turn_index"),
    ), "the tables should differ from the truth before the resync"
    start = min(hidden.values()).replace(minute=0, second=0, microsecond=0)
    end = max(hidden.values()).replace(minute=0, second=0, microsecond=0) + HOUR
    span = ResyncRange(start, end)
    cursor, pending = harness.source_state["cursor"], harness.pending

    # The dry run names the hollow conversations as changed in their turns, and writes nothing.
    before = snapshot(harness)
    harness.simulator.reset_stats()
    dry = preview(harness, span)
    assert snapshot(harness) == before
    assert (dry.changed, dict(dry.changed_fields), dry.new, dry.not_served) == (
        len(hidden),
        {"turns": len(hidden)},
        0,
        0,
    )
    assert dry.changed + dry.unchanged == dry.conversations
    assert dry.requests == harness.simulator.stats.requests

    # The resync, in parts of about 40 conversations, restores every turn exactly.
    harness.simulator.reset_stats()
    done = resync(harness, span, max_conversations_per_load=25)
    check_run_against_truth(harness)
    problems = compare_tables(
        harness.simulator.truth(include_latency=True),
        harness.rows("conversations", "id"),
        harness.rows("turns", "conversation_id, turn_index"),
    )
    assert not problems, "\n".join(problems[:20])
    assert hollow(harness) == {}
    assert done.done and done.parts >= 2 and done.read_to == end.isoformat()
    assert (done.conversations, done.new, done.not_served) == (dry.conversations, 0, 0)
    assert done.requests == harness.simulator.stats.requests
    check_resync_rows(harness, done, span)
    # The cursor did not move and no re-pull was made: only windows inside the range.
    assert harness.source_state["cursor"] == cursor and harness.pending == pending
    windows = requested_windows(harness)
    assert all(utc_text(start) <= low and high <= utc_text(end) for low, high in windows), windows
    assert not any("in_progress" in entry["params"] for entry in harness.simulator.stats.request_log)


def test_the_requests_of_a_resync_grow_with_its_range_not_with_the_history(tmp_path: Path) -> None:
    config = SimConfig(seed=31, n_conversations=800, start=T0, end=T0 + 8 * 24 * HOUR)
    day = ResyncRange(T0 + 24 * HOUR, T0 + 48 * HOUR)
    for harness in make_harness(tmp_path, config, SimClock(T0 + 50 * HOUR), limit=20, concurrency=2):
        harness.run()
        harness.simulator.reset_stats()
        first = resync(harness, day)
        short_history = harness.simulator.stats.requests
        # Six more days of history, after the range this time.
        harness.clock.advance(7 * 24 * HOUR)
        harness.run()
        full_reading = harness.simulator.stats.requests - short_history
        harness.simulator.reset_stats()
        second = resync(harness, day)  # load_resync: each call is a resync of its own
        assert harness.simulator.stats.requests == short_history == second.requests
        assert first.conversations == second.conversations > 0
        assert full_reading > 2 * short_history, (full_reading, short_history)


def test_a_conversation_the_api_no_longer_serves_is_kept_and_counted(three_days: Harness) -> None:
    harness = three_days
    harness.clock.advance(70 * HOUR)
    harness.run()
    span = ResyncRange(T0 + 10 * HOUR, T0 + 20 * HOUR)
    inside = [
        c["id"]
        for c in harness.simulator.truth()
        if span.start <= datetime.fromisoformat(c["started_at"]) < span.end
    ]
    gone = sorted(inside[::7][:3])
    kept = [row for row in harness.rows("conversations", "id") if row["id"] in gone]
    kept_turns = [
        row for row in harness.rows("turns", "conversation_id, turn_index") if row["conversation_id"] in gone
    ]
    harness.simulator.withdraw(gone)  # deleted at PolyAI after the contract's retention

    dry = preview(harness, span)
    assert (dry.not_served, sorted(dry.examples["not_served"])) == (3, gone)
    assert (dry.changed, dry.new) == (0, 0)
    done = resync(harness, span)
    assert (done.not_served, done.new, done.conversations) == (3, 0, len(inside) - 3)
    assert [row for row in harness.rows("conversations", "id") if row["id"] in gone] == kept
    assert [
        r for r in harness.rows("turns", "conversation_id, turn_index") if r["conversation_id"] in gone
    ] == kept_turns


def test_a_conversation_read_again_without_turns_keeps_its_loaded_turns(three_days: Harness) -> None:
    """Decided: an absence never deletes. Whether its transcript is hidden (`num_turns > 0`) or
    the API now counts no turn at all, a conversation served without turns keeps the turns
    loaded, as a run does (TURNS_MERGE replaces the turns of conversations that bring some)."""
    harness = three_days
    harness.clock.advance(70 * HOUR)
    harness.run()
    turns_before = harness.rows("turns", "conversation_id, turn_index")
    span = ResyncRange(T0 + 10 * HOUR, T0 + 20 * HOUR)
    inside = [
        c
        for c in harness.simulator.truth()
        if span.start <= datetime.fromisoformat(c["started_at"]) < span.end
    ]
    emptied = next(c["id"] for c in inside if c["num_turns"] > 1)
    original_view = harness.simulator.view

    def without_any_turn(conversation: Any, now: Any, options: Any) -> dict[str, Any]:
        record = original_view(conversation, now, options)
        if record["id"] == emptied:
            record["turns"], record["num_turns"] = [], 0
        return record

    harness.simulator.view = without_any_turn  # type: ignore[method-assign]
    harness.simulator._cache.clear()
    dry = preview(harness, span)
    assert dry.turns_kept == 1 and dict(dry.changed_fields) == {"num_turns": 1}
    harness.simulator.config.transcripts_enabled = False
    dry = preview(harness, span)
    with_turns = {row["conversation_id"] for row in turns_before} & {c["id"] for c in inside}
    counted = [c for c in inside if c["num_turns"] > 0 and c["id"] != emptied]
    assert dry.turns_kept == len(with_turns) and dry.hidden_transcripts == len(counted)
    done = resync(harness, span)
    assert done.hidden_transcripts == len(counted)
    assert harness.rows("turns", "conversation_id, turn_index") == turns_before
    (row,) = [row for row in harness.rows("conversations", "id") if row["id"] == emptied]
    assert row["num_turns"] == 0


def test_pending_conversations_in_the_range_are_kept_as_a_run_keeps_them(three_days: Harness) -> None:
    harness = three_days
    harness.run()
    harness.clock.advance(6 * HOUR)
    harness.run()
    pending_before = harness.pending
    assert pending_before, "the runs should leave conversations in progress"
    cursor = harness.source_state["cursor"]
    harness.clock.advance(HOUR / 4)
    span = ResyncRange(T0, T0 + 12 * HOUR)
    harness.simulator.reset_stats()
    resync(harness, span)
    in_progress = {
        c["id"]: c["started_at"]
        for c in harness.simulator.truth()
        if c["in_progress"] and datetime.fromisoformat(c["started_at"]) < span.end
    }
    assert set(harness.pending) == set(in_progress), "finished ones leave the set, in-progress ones join it"
    assert harness.source_state["cursor"] == cursor
    assert not any("in_progress" in entry["params"] for entry in harness.simulator.stats.request_log)
    # The next run re-pulls them as usual and ends at the truth.
    harness.clock.advance(70 * HOUR)
    harness.run()
    check_run_against_truth(harness)
    assert harness.pending == {}


def test_an_unfinished_resync_goes_on_and_another_range_replaces_it(three_days: Harness) -> None:
    harness = three_days
    harness.clock.advance(70 * HOUR)
    harness.run()
    first = ResyncRange(T0, T0 + 60 * HOUR)
    options = harness.options(max_conversations_per_load=30)
    harness.pipeline.run(polyai_source(resync=first, **options))  # one part, as a plain dlt run
    part = ResyncProgress.read(harness.source_state["resync"])
    assert part is not None and not part.done and part.parts == 1
    # The same range again, by another call: goes on from the committed part.
    harness.pipeline.run(polyai_source(resync=ResyncRange(first.start, first.end), **options))
    going_on = ResyncProgress.read(harness.source_state["resync"])
    assert going_on is not None and going_on.continued_from == part.read_to and going_on.parts == 2
    assert going_on.read_to > part.read_to
    # Another range replaces it, and says which it replaced.
    other = ResyncRange(T0 + 30 * HOUR, T0 + 40 * HOUR)
    replaced = resync(harness, other, max_conversations_per_load=30)
    assert (
        replaced.done
        and replaced.replaced == going_on.describe()
        and replaced.start == other.start.isoformat()
    )
    check_run_against_truth(harness)


def test_a_resync_of_one_project_leaves_the_others_alone(tmp_path: Path, regions: Regions) -> None:
    database = tmp_path / "projects.duckdb"
    pipeline = make_pipeline(
        "resync_projects", dlt.destinations.duckdb(str(database)), pipelines_dir=str(tmp_path / "p")
    )
    options = {
        "projects": regions.entries(),
        "account_id": "acc-multi",
        "start_date": T0.isoformat(),
        "clock": regions.clock.now,
        "backoff_factor": 0.01,
        "include_latency": True,
    }
    regions.clock.advance(8 * HOUR)
    run_load(pipeline, functools.partial(polyai_source, **options))
    states = SourceState.projects_of_pipeline(pipeline.state)
    us_key = next(key for key, state in states.items() if state.label.endswith("(proj-us)"))
    eu_key = next(key for key in states if key != us_key)
    eu_before = pipeline.state["sources"]["polyai"]["projects"][eu_key]
    for simulator in regions.simulators.values():
        simulator.reset_stats()
    load_resync(pipeline, ResyncRange(T0, T0 + 6 * HOUR, projects=(us_key,)), **options)
    assert regions.simulators["proj-eu"].stats.requests == 0
    assert regions.simulators["proj-us"].stats.requests > 0
    assert pipeline.state["sources"]["polyai"]["projects"][eu_key] == eu_before
    us = ResyncProgress.read(SourceState.projects_of_pipeline(pipeline.state)[us_key].resync)
    assert us is not None and us.done and us.conversations == len(regions.simulators["proj-us"].truth())
    for project in KEYS:
        check_project(database, pipeline.state, regions, project)

    # Both projects, the EU key refused: the US one is read again, the EU one says why and
    # goes on on the next resync of that range, once its key is accepted again.
    regions.simulators["proj-eu"].config.api_key = "rotated-elsewhere"
    both = ResyncRange(T0, T0 + 6 * HOUR)
    with pytest.raises(ProjectsFailed) as failed:
        load_resync(pipeline, both, **options)
    assert list(failed.value.failures) == ["projects[1] (proj-eu)"] and failed.value.refused
    states = SourceState.projects_of_pipeline(pipeline.state)
    us, eu = (ResyncProgress.read(states[key].resync) for key in (us_key, eu_key))
    assert us is not None and us.done and us.start == both.start.isoformat()
    assert eu is not None and not eu.done and eu.failure and eu.failure["status"] == 403
    assert states[eu_key].last_run == SourceState(eu_before).last_run, "a resync leaves the last run alone"
    regions.simulators["proj-eu"].config.api_key = KEYS["proj-eu"]
    load_resync(pipeline, both, **options)
    eu = ResyncProgress.read(SourceState.projects_of_pipeline(pipeline.state)[eu_key].resync)
    assert eu is not None and eu.done and eu.failure is None and eu.continued_from == both.start.isoformat()
    for project in KEYS:
        check_project(database, pipeline.state, regions, project)
