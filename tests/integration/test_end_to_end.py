"""The pipeline for real: the simulator over HTTP, dlt, DuckDB files, several runs while the clock moves."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.extract.source import DltSource

from pipelines.runner import TIMED_STEPS, make_pipeline, run_load
from polyai_simulator import Faults, SimClock, SimConfig
from sources.polyai import TURN_KEY, polyai_source
from sources.polyai.loading import current_run_progress
from sources.polyai.operations import KEEP_STATE_ROWS
from tests.support.harness import T0, Harness, make_harness
from tests.support.truth import check_run_against_truth, compare_tables, truth_as_loaded

# Uneven steps so that runs land at all phases of conversations' lives.
FAULT_SEED = 1
STEPS_MINUTES = (7, 25, 40, 3, 61, 17, 90, 33, 120, 45, 240, 480)


def param(entry: dict[str, Any], name: str) -> Any:
    value = entry["params"].get(name)
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def repull_served(harness: Harness) -> int:
    """Conversations the API served to the finished-only re-pull requests since the last reset."""
    return sum(
        entry["returned"]
        for entry in harness.simulator.stats.request_log
        if param(entry, "in_progress") == "false"
    )


FAULTS_10_PERCENT = {
    "rate_limit": 0.03,
    "server_error": 0.02,
    "reset": 0.015,
    "truncate": 0.015,
    "invalid_json": 0.01,
    "slow": 0.01,
}


# Every run cut into loads of ~10 conversations over 6-minute windows: the loads of one run
# and the runs between them must hand over the cursor and the pending set without a gap.
SMALL_LOADS = {"max_conversations_per_load": 10, "window_hours": 0.1, "concurrency": 2}


@pytest.mark.parametrize(
    ("faults", "load_options"),
    [({}, {}), (FAULTS_10_PERCENT, {}), ({}, SMALL_LOADS)],
    ids=["clean", "10pct-faults", "small-loads"],
)
def test_runs_while_the_clock_moves_end_exactly_at_the_truth(
    harness: Harness, faults: dict[str, float], load_options: dict[str, Any]
) -> None:
    # A fixed seed whose draws hit at least three fault kinds in this scenario: the check
    # below proves the faults really happened rather than trusting the rates.
    harness.simulator.faults = Faults(seed=FAULT_SEED, slow_seconds=1.5)
    harness.simulator.faults.set_rates(**faults)
    harness.source_options.update(read_timeout=1.0, max_retry_delay=0.2, backoff_factor=0.01, limit=5)
    harness.source_options.update(load_options)
    pending_seen = 0
    loads = 0
    faults_seen: list[str] = []
    requests = 0
    for minutes in STEPS_MINUTES:
        pending_before = len(harness.pending)
        harness.simulator.reset_stats()
        summary = harness.run()
        assert summary.caught_up and summary.cursor == harness.clock.now().isoformat()
        loads = max(loads, summary.loads)
        pending_seen = max(pending_seen, summary.pending)
        # Re-pulls cost what is pending, not the history between pending conversations.
        assert repull_served(harness) <= pending_before
        faults_seen += [entry["fault"] for entry in harness.simulator.stats.request_log if entry.get("fault")]
        requests += harness.simulator.stats.requests
        check_run_against_truth(harness)
        harness.clock.advance(timedelta(minutes=minutes))
    assert pending_seen > 0, "the scenario never had a conversation in progress at a run"
    assert (loads > 2) == bool(load_options), f"at most {loads} loads in one run"
    if faults:
        assert len(set(faults_seen)) >= 3 and len(faults_seen) >= 0.05 * requests, (faults_seen, requests)
    else:
        assert faults_seen == []

    harness.run()
    truth = harness.simulator.truth(include_latency=True)
    assert all(not c["in_progress"] for c in truth), "the scenario should end with everything finished"
    live = [c for c in harness.simulator.conversations if c.environment == "live"]
    assert len(truth) == len(live) > 200
    problems = compare_tables(
        truth,
        harness.rows("conversations", "id"),
        harness.rows("turns", "conversation_id, turn_index"),
    )
    assert not problems, "\n".join(problems[:20])
    assert harness.pending == {}


def test_a_backfill_beyond_max_conversations_per_load_is_committed_load_by_load(harness: Harness) -> None:
    harness.clock.advance(timedelta(hours=14))  # every conversation has finished
    started = time.perf_counter()
    summary = harness.run(max_conversations_per_load=60, window_hours=0.5, concurrency=2, limit=10)
    elapsed = time.perf_counter() - started
    # ~250 conversations: 60 per load, plus what the windows in flight still return.
    assert summary.caught_up and 3 <= summary.loads <= 5, summary.loads
    # dlt's steps of every load are timed and added up, within the run's own time.
    assert list(summary.step_seconds) == list(TIMED_STEPS)
    assert all(seconds > 0 for seconds in summary.step_seconds.values()), summary.step_seconds
    assert sum(summary.step_seconds.values()) <= elapsed
    assert "time in dlt's steps: extract " in summary.render()
    assert summary.conversations >= len(harness.simulator.truth())
    problems = compare_tables(
        harness.simulator.truth(include_latency=True),
        harness.rows("conversations", "id"),
        harness.rows("turns", "conversation_id, turn_index"),
    )
    assert not problems, "\n".join(problems[:20])
    # Each load was committed on its own, with the cursor it had reached.
    committed = harness.rows("_dlt_loads", "inserted_at")
    assert len(committed) == summary.loads and all(row["status"] == 0 for row in committed)
    # Each load wrote its own state row; the newest KEEP_STATE_ROWS of them are kept.
    state_rows = harness.rows("_dlt_pipeline_state", "created_at")
    newest_loads = [row["load_id"] for row in committed][-KEEP_STATE_ROWS:]
    assert [row["_dlt_load_id"] for row in state_rows] == newest_loads
    assert len({row["state"] for row in state_rows}) == len(state_rows)
    # Caught up: the next run reads only what is new.
    harness.simulator.reset_stats()
    harness.clock.advance(timedelta(minutes=5))
    assert harness.run(max_conversations_per_load=60, window_hours=0.5).loads == 1
    assert harness.simulator.stats.requests <= 2


def test_merge_hints_left_by_an_earlier_version_are_replaced(harness: Harness) -> None:
    """The previous version declared no primary key on `turns` and deleted its rows by merge
    key; dlt keeps stored hints unless told otherwise. After the upgrade `turns` has its key and
    its delete is scoped by conversation id alone (no `key OR merge key`, which DuckDB cannot
    run as a hash join); both merges still skip dlt's ROW_NUMBER() pass (the source sends each
    row once per load; a resumed load is aborted and read again: abort_started_loads)."""

    def as_the_previous_version() -> DltSource:
        source = polyai_source(**harness.options())
        earlier = {"disposition": "merge", "strategy": "delete-insert", "deduplicated": True}
        stored = {"x-stage-data-deduplicated": True}
        source.resources["conversations"].apply_hints(
            write_disposition=earlier, additional_table_hints=stored
        )
        source.resources["turns"].apply_hints(
            write_disposition=earlier,
            primary_key=[],
            merge_key="conversation_id",
            additional_table_hints=stored,
        )
        return source

    def hints() -> tuple[Any, ...]:
        tables = harness.pipeline.default_schema.tables
        columns = tables["turns"]["columns"]
        return (
            tables["conversations"].get("x-stage-data-deduplicated"),
            tables["turns"].get("x-stage-data-deduplicated"),
            tuple(bool(columns[name].get("primary_key")) for name in TURN_KEY),
            bool(columns["conversation_id"].get("merge_key")),
        )

    harness.clock.advance(timedelta(hours=2))
    run_load(harness.pipeline, as_the_previous_version)
    unkeyed, keyed = (False,) * len(TURN_KEY), (True,) * len(TURN_KEY)
    assert hints() == (True, True, unkeyed, True)
    harness.clock.advance(timedelta(hours=2))
    harness.run()
    assert hints() == (True, True, keyed, False)
    # The merges of each load, in load order (loaded/<load id>/completed_jobs/<table>.*.sql).
    merges = {
        table: sorted(
            (path.parent.parent.name, path.read_text())
            for path in Path(harness.pipeline.working_dir).rglob(f"{table}.*.sql")
        )
        for table in ("conversations", "turns")
    }
    # The first load went into empty tables, so it was appended (written_once): the upgraded
    # run's is the one merge of each table.
    assert all(len(loads) == 1 for loads in merges.values()), merges
    for _, sql in merges["conversations"] + merges["turns"]:
        assert "ROW_NUMBER()" not in sql, sql
    turns_now = merges["turns"][-1][1]
    assert "DELETE FROM" in turns_now and " OR " not in turns_now, turns_now
    staged = (
        'EXISTS (SELECT 1 FROM "polyai_staging"."turns" AS staged WHERE staged.project_id = turns.project_id'
        " AND staged.conversation_id = turns.conversation_id)"
    )
    assert staged in turns_now, turns_now
    check_run_against_truth(harness)


def test_tables_have_typed_columns_and_json(harness: Harness) -> None:
    harness.clock.advance(timedelta(hours=8))
    harness.run()
    conversations = harness.column_types("conversations")
    turns = harness.column_types("turns")
    assert conversations["started_at"] == "TIMESTAMP WITH TIME ZONE"
    assert conversations["in_progress"] == "BOOLEAN"
    assert conversations["num_turns"] == "BIGINT"
    assert conversations["metrics"] == "JSON"
    assert conversations["state"] == "JSON"
    assert turns["user_input_datetime"] == "TIMESTAMP WITH TIME ZONE"
    assert turns["entities"] == "JSON"
    assert turns["intents"] == "JSON"
    assert turns["latency"] == "DOUBLE"
    # One column per field, never one per data-dependent key.
    assert len(conversations) < 40 and len(turns) < 40


def test_an_incremental_run_with_nothing_new_sends_few_requests(harness: Harness) -> None:
    harness.clock.advance(timedelta(hours=14))  # past the end of the longest conversation
    harness.run()
    harness.simulator.reset_stats()
    harness.clock.advance(timedelta(minutes=5))
    summary = harness.run()
    assert harness.simulator.stats.requests <= 2
    assert summary.pending == 0


def test_api_versions_give_identical_tables(tmp_path: Path) -> None:
    config = SimConfig(seed=5, n_conversations=120, start=T0, end=T0 + timedelta(hours=2))
    tables = {}
    for version in ("v1", "v2", "v3"):
        clock = SimClock(T0 + timedelta(hours=1))
        for harness in make_harness(tmp_path, config, clock, name=version, api_version=version):
            harness.run()
            clock.advance(timedelta(hours=10))
            harness.run()
            tables[version] = (
                harness.rows("conversations", "id"),
                harness.rows("turns", "conversation_id, turn_index"),
            )
    # v1 has no translations, latency or barge-in: those columns stay empty there.
    v1_only_lacks = {"translated_user_input", "english_agent_response", "barge_in", "latency"}
    for table_index in (0, 1):
        v1_rows, v2_rows, v3_rows = (tables[v][table_index] for v in ("v1", "v2", "v3"))
        assert v2_rows == v3_rows
        assert len(v1_rows) == len(v3_rows) > 0
        for v1_row, v3_row in zip(v1_rows, v3_rows, strict=True):
            for key, value in v3_row.items():
                if key.startswith("_dlt"):
                    continue
                if key in v1_only_lacks:
                    assert v1_row.get(key) is None
                else:
                    assert v1_row[key] == value, (key, v1_row[key], value)


@pytest.mark.parametrize("version", ["v1", "v3"])
def test_paging_while_conversations_arrive_skips_and_doubles_nothing(tmp_path: Path, version: str) -> None:
    """The clock moves 2 minutes per request, so late arrivals land between pages mid-run."""
    config = SimConfig(
        seed=9,
        n_conversations=250,
        start=T0,
        end=T0 + timedelta(hours=3),
        late_arrival_fraction=0.5,
    )
    clock = SimClock(T0 + timedelta(hours=1))
    for harness in make_harness(tmp_path, config, clock, name=f"drift_{version}", api_version=version):
        harness.simulator.after_request = lambda: clock.advance(timedelta(minutes=2))
        for _ in range(4):
            harness.run(limit=7, concurrency=1)
            check_run_against_truth_at_run_time(harness)
        harness.simulator.after_request = None
        clock.advance(timedelta(hours=12))
        harness.run(limit=7)
        problems = compare_tables(
            truth_as_loaded(harness),
            harness.rows("conversations", "id"),
            harness.rows("turns", "conversation_id, turn_index"),
        )
        assert not problems, "\n".join(problems[:20])
        offset_requests = [e for e in harness.simulator.stats.request_log if "offset" in e["params"]]
        assert bool(offset_requests) == (version == "v1")


def test_windows_that_overlap_at_the_api_still_load_each_conversation_once(tmp_path: Path) -> None:
    """The source tells the merge to skip de-duplication; a server that sends more than each
    window asked for (bounds off by 15 minutes, end included) must not make it wrong."""
    config = SimConfig(
        seed=13,
        n_conversations=300,
        start=T0,
        end=T0 + timedelta(hours=6),
        late_arrival_fraction=0.1,
        long_running_fraction=0.05,
        bound_slack_seconds=900,
    )
    clock = SimClock(T0 + timedelta(hours=2))
    for harness in make_harness(tmp_path, config, clock, name="sloppy_bounds", include_latency=True):
        for minutes in (0, 40, 95, 240, 600):
            clock.advance(timedelta(minutes=minutes))
            harness.simulator.reset_stats()
            first_run = harness.pipeline.first_run
            summary = harness.run(concurrency=4, window_hours=0.5, limit=20)
            check_run_against_truth(harness)
            served = harness.simulator.stats.conversations_served
            if first_run:
                # The first run is the backfill: overlaps were served and dropped, not loaded.
                assert served > summary.conversations == len(harness.rows("conversations", "id"))
        assert not harness.pending


def check_run_against_truth_at_run_time(harness: Harness) -> None:
    """No duplicates, and every loaded finished conversation is final, turns included."""
    conversations = harness.rows("conversations", "id")
    assert len({row["id"] for row in conversations}) == len(conversations)
    truth = {c["id"]: c for c in truth_as_loaded(harness)}
    finished = [row for row in conversations if not row["in_progress"]]
    finished_ids = {row["id"] for row in finished}
    turns = [
        r
        for r in harness.rows("turns", "conversation_id, turn_index")
        if r["conversation_id"] in finished_ids
    ]
    problems = compare_tables([truth[row["id"]] for row in finished], finished, turns)
    assert not problems, "\n".join(problems[:20])


def test_a_rate_limited_api_slows_the_run_down_instead_of_failing_it(tmp_path: Path) -> None:
    config = SimConfig(seed=4, n_conversations=200, start=T0, end=T0 + timedelta(hours=8))
    clock = SimClock(T0 + timedelta(hours=20))
    for harness in make_harness(tmp_path, config, clock, name="rate_limited"):
        harness.simulator.faults.rate_per_second = 8
        harness.simulator.faults.burst = 2
        harness.simulator.faults.retry_after = "1"
        summary = harness.run(limit=10, concurrency=4, max_retry_delay=0.5, backoff_factor=0.05)
        limited = [e for e in harness.simulator.stats.request_log if e.get("fault") == "rate_limit"]
        assert limited, "the token bucket never refused a request"
        assert summary.conversations == len(harness.simulator.truth())
        problems = compare_tables(
            harness.simulator.truth(),
            harness.rows("conversations", "id"),
            harness.rows("turns", "conversation_id, turn_index"),
        )
        assert not problems, "\n".join(problems[:20])


def test_hidden_transcripts_never_delete_loaded_turns_and_warn_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.clock.advance(timedelta(hours=14))
    harness.run()
    turns_before = harness.rows("turns", "conversation_id, turn_index")
    assert turns_before
    # The project switches "Conversation transcript" off: the API now sends turns: [].
    harness.simulator.config.transcripts_enabled = False
    harness.clock.advance(timedelta(minutes=1))
    with caplog.at_level("WARNING"):
        summary = harness.run(lookback_minutes=24 * 60)  # re-reads everything with empty turns
    assert summary.conversations > 0 and summary.hidden_transcripts > 0
    assert harness.rows("turns", "conversation_id, turn_index") == turns_before
    warnings = [r for r in caplog.records if "Conversation transcript" in r.getMessage()]
    assert len(warnings) == 1


def test_fields_the_api_adds_later_become_columns_named_in_the_summary(harness: Harness) -> None:
    harness.clock.advance(timedelta(hours=14))
    first = harness.run()
    assert first.new_columns == []
    original_view = harness.simulator.view

    def with_new_fields(conversation: Any, now: Any, options: Any) -> dict[str, Any]:
        record = original_view(conversation, now, options)
        record["sentiment_score"] = 0.75
        record["total_duration"] = 12.5  # a float where the API documents an integer
        return record

    harness.simulator.view = with_new_fields  # type: ignore[method-assign]
    harness.simulator._cache.clear()
    harness.clock.advance(timedelta(minutes=1))
    summary = harness.run(lookback_minutes=24 * 60)
    assert summary.new_columns == ["conversations.sentiment_score", "conversations.total_duration__v_json"]
    rows = harness.rows("conversations", "id")
    assert {row["sentiment_score"] for row in rows} == {0.75}
    assert {row["total_duration__v_json"] for row in rows} == {"12.5"}
    assert {row["total_duration"] for row in rows} == {None}


def test_run_load_stops_when_a_part_does_not_move_the_cursor(tmp_path: Path) -> None:
    """A guard against a loop without end: each part must move the cursor (WindowQueue)."""

    @dlt.source(name="polyai")
    def stuck() -> Any:
        @dlt.resource
        def nothing_new() -> Any:
            # What a part of the real source reports when it stops short of now.
            progress = current_run_progress()
            assert progress is not None
            progress.caught_up = False
            progress.cursors = ("2026-11-02T08:00:00+00:00",)
            dlt.current.source_state()["cursor"] = "2026-11-02T08:00:00+00:00"
            yield {"id": 1}

        return nothing_new

    pipeline = make_pipeline(
        "stuck", dlt.destinations.duckdb(str(tmp_path / "stuck.duckdb")), "polyai", str(tmp_path)
    )
    with pytest.raises(RuntimeError, match="did not move the cursor"):
        run_load(pipeline, stuck)
    assert pipeline.state["sources"]["polyai"]["cursor"] == "2026-11-02T08:00:00+00:00"


def test_windows_shorter_than_the_lookback_still_move_the_cursor_in_every_part(tmp_path: Path) -> None:
    """window_hours under lookback_minutes, parts cut after one window: each part reads past the
    stored cursor, so the cursor never moves back and the run catches up exactly."""
    config = SimConfig(seed=37, n_conversations=600, start=T0, end=T0 + timedelta(hours=24))
    small = {"window_hours": 0.1, "lookback_minutes": 30, "max_conversations_per_load": 2, "concurrency": 1}
    clock = SimClock(T0 + timedelta(hours=12))
    for harness in make_harness(tmp_path, config, clock, limit=25, include_latency=True):
        harness.run()
        harness.clock.advance(timedelta(hours=1))
        summary = harness.run(**small)
        assert summary.caught_up and summary.loads >= 3, summary.loads
        parts = [row for row in harness.rows("_polyai_runs", "_dlt_load_id") if row["kind"] == "run"][1:]
        assert all(row["cursor_after"] > row["cursor_before"] for row in parts), [
            (row["cursor_before"], row["cursor_after"]) for row in parts
        ]
        harness.clock.advance(timedelta(minutes=20))
        harness.run(**small)
        check_run_against_truth(harness)
