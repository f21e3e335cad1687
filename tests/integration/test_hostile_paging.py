"""Hostile paging: pages served again, and paging that never ends, against the simulator's
paging_fault modes, end to end into DuckDB, each under a deadline."""

from __future__ import annotations

import copy
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.runner import expected_error
from polyai_simulator import SimClock, SimConfig
from sources.polyai.http.client import PagingStalledError
from sources.polyai.http.paging import MAX_STALLED_PAGES
from tests.support.harness import T0, Harness, make_harness
from tests.support.truth import compare_tables, truth_as_loaded


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fails the test instead of hanging it: paging that does not move on used to run forever."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def tables(harness: Harness) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return harness.rows("conversations", "id"), harness.rows("turns", "conversation_id, turn_index")


def assert_no_duplicates(harness: Harness) -> None:
    conversations, turns = tables(harness)
    assert len({row["id"] for row in conversations}) == len(conversations), "duplicate conversations"
    keys = {(row["conversation_id"], row["turn_index"]) for row in turns}
    assert len(keys) == len(turns), f"{len(turns)} turn rows for {len(keys)} keys"


def most_asked_cursor(harness: Harness) -> int:
    """How many requests the most requested cursor took since the last reset."""
    cursors = Counter(
        str(entry["params"]["cursor"])
        for entry in harness.simulator.stats.request_log
        if "cursor" in entry["params"]
    )
    return max(cursors.values(), default=0)


@pytest.mark.parametrize(("mode", "copies"), [("repeat_page", 2), ("repeat_page_twice", 3)])
def test_a_page_served_again_under_its_cursor_is_loaded_once(tmp_path: Path, mode: str, copies: int) -> None:
    """A stale cache answers a cursor with the page before it, once or twice in a row, while
    the clock moves 20 s per request: every copy after the first is dropped."""
    config = SimConfig(
        seed=21,
        n_conversations=300,
        start=T0,
        end=T0 + timedelta(hours=6),
        late_arrival_fraction=0.3,
        long_running_fraction=0.05,
        paging_fault=mode,
    )
    clock = SimClock(T0 + timedelta(hours=1))
    for harness in make_harness(tmp_path, config, clock, name=mode):
        harness.simulator.after_request = lambda: clock.advance(timedelta(seconds=20))
        asked = 0
        with deadline(90):
            for minutes in (30, 95, 240, 180):
                harness.simulator.reset_stats()
                harness.run(limit=20, concurrency=2)
                asked = max(asked, most_asked_cursor(harness))
                assert_no_duplicates(harness)
                clock.advance(timedelta(minutes=minutes))
            harness.simulator.after_request = None
            clock.advance(timedelta(hours=8))  # all finished, none past max_pending_hours
            harness.run(limit=20)
        assert asked == copies, "the simulator did not repeat pages as the mode says"
        truth = harness.simulator.truth()
        assert all(not c["in_progress"] for c in truth)
        problems = compare_tables(truth, *tables(harness))
        assert not problems, "\n".join(problems[:20])


STALLS = [
    ("same_cursor", "v3", "a cursor it had already been asked with"),
    ("ignore_cursor", "v3", "only conversations already read and a cursor it had already been asked with"),
    ("empty_page_with_cursor", "v3", "an empty page and a cursor to a next page"),
    ("stuck_offset", "v1", "not past the offset asked"),
]


@pytest.mark.parametrize(("mode", "version", "behaviour"), STALLS, ids=[mode for mode, *_ in STALLS])
def test_paging_that_does_not_move_on_fails_the_load_and_commits_nothing(
    tmp_path: Path, mode: str, version: str, behaviour: str
) -> None:
    config = SimConfig(seed=5, n_conversations=200, start=T0, end=T0 + timedelta(hours=6))
    clock = SimClock(T0 + timedelta(hours=3))
    for harness in make_harness(tmp_path, config, clock, name=mode, api_version=version):
        with deadline(60):
            harness.run(limit=20)
            loaded, state = tables(harness), copy.deepcopy(harness.source_state)
            assert loaded[0], "the first run loaded nothing"
            clock.advance(timedelta(hours=2))
            harness.simulator.config.paging_fault = mode
            harness.simulator.reset_stats()
            started = time.monotonic()
            with pytest.raises(PipelineStepFailed) as failure:
                harness.run(limit=20)
            seconds = time.monotonic() - started
        error = expected_error(failure.value)
        assert isinstance(error, PagingStalledError), failure.value
        message = str(error)
        assert f"{MAX_STALLED_PAGES + 1} pages in a row brought " in message and behaviour in message
        assert "start_time=" in message and "end_time=" in message and "report it to PolyAI" in message
        requests = harness.simulator.stats.requests
        assert requests < 200 and seconds < 30, (requests, seconds)
        # Nothing of the failed load was committed: same rows, same cursor and pending set,
        # and no package left for the next run to load.
        assert tables(harness) == loaded
        # The failure itself is kept in the local state alone, for `status` to name it.
        after = harness.source_state
        assert after.pop("last_run")["failure"]["message"]
        assert after == {key: value for key, value in state.items() if key != "last_run"}
        assert not harness.pipeline.list_extracted_load_packages()
        assert not harness.pipeline.list_normalized_load_packages()

        harness.simulator.config.paging_fault = None
        clock.advance(timedelta(hours=14))
        harness.run(limit=20)
        problems = compare_tables(truth_as_loaded(harness), *tables(harness))
        assert not problems, "\n".join(problems[:20])
