"""The source's state stays small: the pending set stored in columns, old state rows pruned."""

from __future__ import annotations

import json
import random
import uuid
from datetime import timedelta

import pytest

from sources.polyai.state import LastRun, SourceState, decode_pending, encode_pending
from tests.support.harness import T0


def some_pending(count: int, seed: int = 5) -> dict[str, str]:
    rng = random.Random(seed)
    return {
        str(uuid.UUID(int=rng.getrandbits(128))): (
            T0 + timedelta(seconds=rng.uniform(0, 48 * 3600))
        ).isoformat()
        for _ in range(count)
    }


def test_the_stored_pending_set_reads_back_exactly() -> None:
    pending = some_pending(500)
    decoded = decode_pending(encode_pending(pending))
    assert decoded == pending


def test_an_empty_pending_set_is_stored_as_nothing() -> None:
    assert encode_pending({}) == {}
    assert decode_pending({}) == {}
    assert decode_pending(None) == {}


def test_the_pending_set_of_earlier_versions_is_read_as_it_was() -> None:
    """Earlier versions stored id -> ISO started_at: a pipeline upgrades in place."""
    earlier = {"CA1": "2026-11-02T08:00:00.250000+00:00", "ids": "2026-11-02T09:00:00+00:00"}
    assert decode_pending(earlier) == earlier


def test_ten_thousand_pending_conversations_take_about_their_ids() -> None:
    """Per entry, what the columns add to the opaque id is a few digits (issue: 575 KB of state)."""
    pending = some_pending(10_000)
    stored = len(json.dumps(encode_pending(pending)))
    as_before = len(json.dumps(pending))
    ids_alone = len(json.dumps(list(pending)))
    assert stored < 0.7 * as_before, (stored, as_before)
    assert stored < 1.3 * ids_alone, (stored, ids_alone)


def test_a_damaged_pending_set_is_an_error_not_a_guess() -> None:
    stored = encode_pending(some_pending(3))
    stored["gaps_us"] = stored["gaps_us"][:1]
    with pytest.raises(ValueError, match="damaged"):
        decode_pending(stored)


def test_the_typed_view_reads_and_writes_the_keys_of_the_state() -> None:
    raw: dict[str, object] = {}
    state = SourceState(raw)
    assert state.cursor is None and state.pending == {} and state.last_run == LastRun()
    state.cursor = "2026-11-02T08:00:00+00:00"
    state.pending["CA1"] = "2026-11-02T07:59:00+00:00"
    state.save_pending()
    state.repull_misses = {"CA1": 2}
    state.last_run = LastRun(requests=3, caught_up=False)
    again = SourceState(raw)
    assert again.cursor == "2026-11-02T08:00:00+00:00"
    assert again.pending == {"CA1": "2026-11-02T07:59:00+00:00"}
    assert again.repull_misses == {"CA1": 2}
    assert again.last_run.requests == 3 and not again.last_run.caught_up
    again.repull_misses = {}
    assert "repull_misses" not in raw
