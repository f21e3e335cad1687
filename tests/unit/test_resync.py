"""The resync's pure parts: its range, where it goes on from, its windows, and the dry run's comparisons."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.resync_command import render_progress
from pipelines.status_command import render_project
from sources.polyai.resync import (
    ResyncProgress,
    ResyncRange,
    ResyncRangeError,
    parse_bound,
    read_after,
    resume,
    resync_windows,
)
from sources.polyai.resync_preview import changed_columns, same_turns, same_value
from sources.polyai.state import SourceState
from sources.polyai.status import project_status
from sources.polyai.warehouse_reads import matched_and_missing

T0 = datetime(2026, 11, 2, tzinfo=UTC)
DAY = timedelta(days=1)


def test_bounds_are_iso_dates_or_date_times_in_utc_unless_they_name_an_offset() -> None:
    assert parse_bound("2026-11-02", "--from") == T0
    assert parse_bound("2026-11-02T00:00:00Z", "--from") == T0
    assert parse_bound("2026-11-02T01:00:00+01:00", "--to") == T0
    with pytest.raises(ResyncRangeError, match=r"--to is not an ISO 8601 date-time \('yesterday'\)"):
        parse_bound("yesterday", "--to")


def test_a_range_must_not_be_empty_nor_start_in_the_future() -> None:
    with pytest.raises(ResyncRangeError, match="must be before --to"):
        ResyncRange.parse("2026-11-03", "2026-11-02")
    with pytest.raises(ResyncRangeError, match="must be before --to"):
        ResyncRange(T0, T0)
    with pytest.raises(ResyncRangeError, match="timezone-aware"):
        ResyncRange(datetime(2026, 11, 2), T0 + DAY)
    resync = ResyncRange(T0, T0 + DAY)
    with pytest.raises(ResyncRangeError, match="in the future"):
        resync.check(T0)
    resync.check(T0 + timedelta(seconds=1))
    assert resync.end_at(T0 + timedelta(hours=2)) == T0 + timedelta(hours=2)
    assert resync.end_at(T0 + 2 * DAY) == T0 + DAY


def test_a_range_is_kept_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    resync = ResyncRange(datetime(2026, 11, 2, 1, tzinfo=paris), datetime(2026, 11, 3, 1, tzinfo=paris))
    assert (resync.start, resync.end) == (T0, T0 + DAY)
    assert resync.start.tzinfo == UTC


def test_a_range_selects_its_projects_or_all() -> None:
    assert ResyncRange(T0, T0 + DAY).selects("us-1/a/live")
    only = ResyncRange(T0, T0 + DAY, projects=("us-1/a/live",))
    assert only.selects("us-1/a/live") and not only.selects("us-1/b/live")


def progress(
    resync: ResyncRange, read_to: datetime, done: bool = False, token: str | None = None
) -> ResyncProgress:
    return ResyncProgress(
        start=resync.start.isoformat(),
        end=resync.end.isoformat(),
        read_to=read_to.isoformat(),
        token=token or resync.token,
        done=done,
        parts=1,
        conversations=10,
    )


def test_a_first_resync_starts_at_the_range_start() -> None:
    resync = ResyncRange(T0, T0 + DAY)
    started = resume(None, resync)
    assert (started.read_to, started.done, started.token) == (T0.isoformat(), False, resync.token)
    assert started.replaced is None and started.continued_from is None


def test_a_later_part_of_the_same_resync_goes_on_from_its_last_part() -> None:
    resync = ResyncRange(T0, T0 + DAY)
    stored = progress(resync, T0 + timedelta(hours=6))
    assert resume(stored, resync) is stored
    # Its own ended resync is not started again by its later parts (another project reads).
    ended = progress(resync, T0 + DAY, done=True)
    assert resume(ended, resync) is ended


def test_the_same_range_left_unfinished_goes_on_where_it_stood() -> None:
    killed = ResyncRange(T0, T0 + DAY)
    stored = progress(killed, T0 + timedelta(hours=6))
    again = ResyncRange(T0, T0 + DAY)
    resumed = resume(stored, again)
    assert resumed.read_to == stored.read_to and resumed.conversations == 10 and resumed.parts == 1
    assert resumed.token == again.token and resumed.continued_from == stored.read_to


def test_an_ended_resync_of_the_same_range_is_started_again() -> None:
    first = ResyncRange(T0, T0 + DAY)
    again = ResyncRange(T0, T0 + DAY)
    started = resume(progress(first, T0 + DAY, done=True), again)
    assert started.read_to == T0.isoformat() and started.conversations == 0
    assert started.replaced is None and started.continued_from is None


def test_another_range_replaces_an_unfinished_resync_and_says_so() -> None:
    unfinished = progress(ResyncRange(T0, T0 + DAY), T0 + timedelta(hours=6))
    other = ResyncRange(T0 + DAY, T0 + 2 * DAY)
    started = resume(unfinished, other)
    assert started.read_to == other.start.isoformat() and started.conversations == 0
    assert started.replaced == unfinished.describe()
    assert "read up to 2026-11-02T06:00:00+00:00" in started.replaced


def test_progress_is_stored_and_read_back_and_adds_up_its_parts() -> None:
    resync = ResyncRange(T0, T0 + DAY)
    stored = progress(resync, T0 + timedelta(hours=6))
    assert ResyncProgress.read(stored.stored()) == stored
    assert ResyncProgress.read(None) is None and ResyncProgress.read({}) is None
    later = stored.after_part(T0 + DAY, True, {"conversations": 5, "new": 2})
    assert (later.read_to, later.done, later.parts) == ((T0 + DAY).isoformat(), True, 2)
    assert (later.conversations, later.new, later.turns) == (15, 2, 0)


def test_windows_cover_what_is_left_of_the_range_in_time_order() -> None:
    windows = resync_windows(T0, T0 + 3 * DAY, concurrency=2)
    assert windows[0].start == T0 and windows[-1].end == T0 + 3 * DAY
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert all(not window.finished_only for window in windows)
    assert all(window.end - window.start <= DAY for window in windows)
    assert resync_windows(T0 + DAY, T0 + DAY, concurrency=2) == []
    fixed = resync_windows(T0, T0 + DAY, concurrency=4, window_span=timedelta(hours=6))
    assert [window.start for window in fixed] == [T0 + timedelta(hours=6 * i) for i in range(4)]


@given(
    days=st.integers(min_value=1, max_value=60),
    concurrency=st.integers(min_value=1, max_value=16),
    read=st.integers(min_value=1, max_value=400),
)
def test_parts_read_the_range_exactly_once_whatever_they_stop_at(
    days: int, concurrency: int, read: int
) -> None:
    """Part after part, each stopping after some windows: every instant read once, and it ends."""
    end = T0 + days * DAY
    read_to, done, covered, parts = T0, False, [], 0
    while not done:
        windows = resync_windows(read_to, end, concurrency)
        handed_out = min(len(windows), max(1, read % (len(windows) + 1)))
        covered += windows[:handed_out]
        read_to, done = read_after(windows, handed_out, end)
        parts += 1
        assert parts <= days * 200
    assert covered[0].start == T0 and covered[-1].end == end
    assert all(a.end == b.start for a, b in itertools.pairwise(covered))


def test_a_part_that_read_no_window_is_refused() -> None:
    windows = resync_windows(T0, T0 + DAY, concurrency=2)
    with pytest.raises(ValueError, match="at least one window"):
        read_after(windows, 0, T0 + DAY)
    assert read_after([], 0, T0 + DAY) == (T0 + DAY, True)


def test_loaded_ids_are_matched_against_those_served() -> None:
    examples: list[str] = []
    assert matched_and_missing(["a", "b", "c", "d"], {"a", "c", "x"}, examples, keep=1) == (2, 2)
    assert examples == ["b"]


def test_values_compare_as_the_destination_holds_them() -> None:
    assert same_value('{"a": [1, 2]}', '{"a":[1,2]}', is_json=True)
    assert same_value('{"a": 1}', {"a": 1}, is_json=True)
    assert not same_value('{"a": 1}', '{"a": 2}', is_json=True)
    assert same_value(None, None, is_json=True)
    instant = datetime(2026, 11, 2, 8, tzinfo=UTC)
    assert same_value(instant, instant.astimezone(timezone(timedelta(hours=-5))), is_json=False)
    assert same_value(instant, datetime(2026, 11, 2, 8), is_json=False)
    assert not same_value(instant, instant + timedelta(microseconds=1), is_json=False)
    assert not same_value("", None, is_json=False)


def test_changed_columns_name_what_the_load_would_change() -> None:
    types = {"id": "text", "metrics": "json", "num_turns": "bigint"}
    served = {"id": "c1", "metrics": '{"x": "1"}', "num_turns": 4, "new_field": None}
    loaded = {"id": "c1", "metrics": '{"x":"1"}', "num_turns": 3, "_dlt_id": "zz", "_dlt_load_id": "1"}
    assert changed_columns(served, loaded, types) == ["num_turns"]
    assert changed_columns({**served, "new_field": 1}, loaded, types) == ["num_turns", "new_field"]
    # A column the destination holds and the page lacks would be set to NULL.
    assert changed_columns(served, {**loaded, "num_turns": 4, "old__v_json": "1"}, types) == ["old__v_json"]


def test_turns_are_the_same_only_when_every_turn_is() -> None:
    types = {"turn_index": "bigint", "user_input": "text"}
    turns = [{"turn_index": 0, "user_input": "hi"}, {"turn_index": 1, "user_input": "bye"}]
    assert same_turns(turns, [dict(turn, _dlt_id="x") for turn in turns], types)
    assert not same_turns(turns, turns[:1], types)
    assert not same_turns(turns, [turns[0], {"turn_index": 1, "user_input": "Bye"}], types)


def test_status_and_the_command_say_where_a_resync_stands() -> None:
    resync = ResyncRange(T0, T0 + DAY)
    unfinished = progress(resync, T0 + timedelta(hours=6))
    state = SourceState({"cursor": (T0 + 2 * DAY).isoformat(), "label": "proj-a"})
    state.resync = unfinished.stored()
    status = project_status("us-1/proj-a/live", state, None, None, T0 + 2 * DAY, timedelta(hours=2))
    lines = render_project(status)
    assert any(
        "resync [2026-11-02T00:00:00+00:00, 2026-11-03T00:00:00+00:00) unfinished" in line for line in lines
    )
    state.resync = unfinished.after_part(T0 + DAY, True, {}).stored()
    status = project_status("us-1/proj-a/live", state, None, None, T0 + 2 * DAY, timedelta(hours=2))
    assert not any("resync" in line for line in render_project(status))

    went_on = resume(unfinished, ResyncRange(T0, T0 + DAY)).after_part(T0 + DAY, True, {"new": 4})
    text = "\n".join(render_progress("proj-a", went_on, state))
    assert "proj-a: done in 2 load(s): read 10 conversations" in text
    assert "replaced 6, new (not loaded before) 4" in text
    assert "went on with the unfinished resync from 2026-11-02T06:00:00+00:00" in text
    assert f"cursor unchanged: {(T0 + 2 * DAY).isoformat()}" in text
