"""Servers whose time filter, or whose `started_at`, disagree with themselves: every conversation
they send lands once, exactly as sent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from polyai_simulator import SimClock, SimConfig
from tests.support.harness import T0, make_harness
from tests.support.truth import compare_tables


@pytest.mark.parametrize("offset_hours", [1.0, -1.0])
def test_a_time_filter_offset_from_started_at_loses_no_conversation(
    tmp_path: Path, offset_hours: float
) -> None:
    """A timezone slip on the server: each window returns conversations that another window of
    the run owns, and that window never returns them (the hunt kept 42 of 266)."""
    config = SimConfig(
        seed=5,
        n_conversations=266,
        start=T0,
        end=T0 + timedelta(hours=6),
        long_running_fraction=0.0,
        late_arrival_fraction=0.0,
        filter_offset_seconds=offset_hours * 3600,
    )
    clock = SimClock(T0 + timedelta(hours=8))
    for harness in make_harness(tmp_path, config, clock, window_hours=0.5):
        # The backfill reaches a little past the data, so that a server that shifts its filter
        # later still has a window for every conversation.
        harness.run(start_date=(T0 - timedelta(hours=2)).isoformat())
        served = {
            entry_id for entry in harness.simulator.stats.request_log for entry_id in entry.get("ids", [])
        }
        conversations = harness.rows("conversations", "id")
        turns = harness.rows("turns", "conversation_id, turn_index")
        truth = harness.simulator.truth()
        assert len(conversations) == len({row["id"] for row in conversations}), "doubled conversations"
        assert not served or served <= {row["id"] for row in conversations}
        problems = compare_tables(truth, conversations, turns)
        assert not problems, "\n".join(problems[:20])


def test_one_id_under_two_started_at_values_lands_once(tmp_path: Path) -> None:
    """The server sends some conversations twice in one run, the second time under another
    `started_at` that falls in another window of the run."""
    config = SimConfig(
        seed=7,
        n_conversations=300,
        start=T0,
        end=T0 + timedelta(hours=6),
        long_running_fraction=0.0,
        late_arrival_fraction=0.0,
        echo_fraction=0.2,
        echo_shift_seconds=2 * 3600,
    )
    clock = SimClock(T0 + timedelta(hours=9))
    for harness in make_harness(tmp_path, config, clock, window_hours=1):
        harness.run()
        conversations = harness.rows("conversations", "id")
        turns = harness.rows("turns", "conversation_id, turn_index")
        assert len(conversations) == len({row["id"] for row in conversations}), "doubled conversations"
        keys = {(row["conversation_id"], row["turn_index"]) for row in turns}
        assert len(keys) == len(turns), f"{len(turns) - len(keys)} doubled turns"
        truth = {c["id"]: c for c in harness.simulator.truth()}
        assert {row["id"] for row in conversations} == set(truth)
        # Apart from the started_at the server reported first, each is exactly as sent.
        for row in conversations:
            row["started_at"] = None
        for conversation in truth.values():
            conversation["started_at"] = None
        for row in turns:
            row["conversation_started_at"] = None
        problems = compare_tables(list(truth.values()), conversations, turns)
        assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("skew_minutes", [10, 30, 120, -30])
def test_a_client_clock_ahead_of_or_behind_the_api_loses_nothing(
    tmp_path: Path, skew_minutes: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The run's "now" comes from this machine; the API shows what has started by its own clock
    (the hunt lost 716 of 1,603 conversations with the client 2 h ahead)."""
    config = SimConfig(
        seed=13,
        n_conversations=600,
        start=T0,
        end=T0 + timedelta(hours=6),
        late_arrival_fraction=0.1,
        long_running_fraction=0.05,
    )
    clock = SimClock(T0 + timedelta(minutes=40))
    skew = timedelta(minutes=skew_minutes)
    for harness in make_harness(tmp_path, config, clock):
        skewed = {"clock": lambda: clock.now() + skew}
        for _ in range(12):
            harness.run(**skewed)
            harness.clock.advance(timedelta(minutes=35))
        # Past the end of every conversation, within max_pending_hours of their start.
        harness.clock.advance(timedelta(hours=12))
        harness.run(**skewed)
        conversations = harness.rows("conversations", "id")
        turns = harness.rows("turns", "conversation_id, turn_index")
        problems = compare_tables(harness.simulator.truth(), conversations, turns)
        assert not problems, "\n".join(problems[:20])
    warned = [record.getMessage() for record in caplog.records if "clock is" in record.getMessage()]
    if abs(skew_minutes) > 15:
        assert warned and ("ahead of" if skew_minutes > 0 else "behind") in warned[0], warned
    else:
        assert not warned, warned


@pytest.mark.parametrize(("offset_minutes", "lookback_minutes"), [(60, 15), (-60, 75)])
def test_runs_against_a_time_filter_offset_from_started_at_end_at_the_truth(
    tmp_path: Path, offset_minutes: int, lookback_minutes: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Runs while the clock moves, conversations arriving late and running long. The narrow
    re-pull of a pending conversation never returns it from such a server, so the re-pull drops
    its filter, widens, and finds it. A filter that lags the reported started_at (negative
    offset) hides the newest hour from every window: only a lookback beyond the lag reads it,
    as the warning says."""
    config = SimConfig(
        seed=17,
        n_conversations=500,
        start=T0,
        end=T0 + timedelta(hours=6),
        late_arrival_fraction=0.1,
        long_running_fraction=0.08,
        filter_offset_seconds=offset_minutes * 60,
    )
    clock = SimClock(T0 + timedelta(minutes=40))
    options = {"start_date": (T0 - timedelta(hours=2)).isoformat(), "lookback_minutes": lookback_minutes}
    for harness in make_harness(tmp_path, config, clock, **options):
        for _ in range(14):
            harness.run()
            harness.clock.advance(timedelta(minutes=35))
        # Past the end of every conversation, within max_pending_hours of their start.
        harness.clock.advance(timedelta(hours=12))
        for _ in range(8):
            harness.run()
            harness.clock.advance(timedelta(minutes=20))
        conversations = harness.rows("conversations", "id")
        turns = harness.rows("turns", "conversation_id, turn_index")
        problems = compare_tables(harness.simulator.truth(), conversations, turns)
        assert not problems, "\n".join(problems[:20])
        assert not harness.pending, "conversations left pending"
    messages = [record.getMessage() for record in caplog.records]
    assert not [message for message in messages if "were not returned by their re-pulls" in message]
    assert any("its time filter disagrees" in message for message in messages)
