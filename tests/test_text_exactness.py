"""Text exactly as the API sent it, wherever the destination can hold it: NUL and lone surrogates.

A lone UTF-16 surrogate (`\\ud800` in the JSON) is no character: no destination stores it, and
it is replaced by U+FFFD everywhere. NUL is kept where the destination stores it (DuckDB,
BigQuery and Snowflake, here through their emulators) and replaced by U+FFFD on PostgreSQL,
whose `text` drops it and whose `jsonb` refuses it. Either way the change is counted in the
run summary and a warning, and the next runs go on.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import T0, make_harness
from test_destinations import (  # noqa: F401 - fixtures of the warehouses
    Warehouse,
    bigquery,
    destination_harness,
    live_bigquery,
    live_snowflake,
    postgres,
    snowflake,
    warehouse,
)
from truth import compare_tables

from polyai_simulator import Faults, SimClock, SimConfig
from sources.polyai.http.client import decode_page
from sources.polyai.settings import CONVERSATION_COLUMN_TYPES, TURN_COLUMN_TYPES
from sources.polyai.shaping.records import conversations_table, turns_table
from sources.polyai.shaping.text_repair import TextRepair, destination_keeps_nul, replace_escapes
from sources.polyai.shaping.typed_pages import is_typed, page_decoder

DECODER = page_decoder(CONVERSATION_COLUMN_TYPES, TURN_COLUMN_TYPES)
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Where the simulator's odd_text mode puts its characters (polyai_simulator/odd_text.py).
ODD_COLUMNS = (
    "conversations.handoff_reason",
    "conversations.metrics",
    "conversations.state",
    "turns.user_input",
)


def as_loaded(value: Any, keep_nul: bool) -> Any:
    """A value of the truth as the destination should hold it: odd characters as U+FFFD."""
    if isinstance(value, str):
        value = LONE_SURROGATE.sub("\ufffd", value)
        return value if keep_nul else value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {as_loaded(key, keep_nul): as_loaded(item, keep_nul) for key, item in value.items()}
    if isinstance(value, list):
        return [as_loaded(item, keep_nul) for item in value]
    return value


def odd_values(truth: list[dict[str, Any]], keep_nul: bool) -> Counter[str]:
    """Per column, the values of the truth that the destination cannot hold as they are."""
    counts: Counter[str] = Counter()
    for conversation in truth:
        for name, value in conversation.items():
            if name == "turns":
                for turn in value:
                    counts.update(f"turns.{k}" for k, v in turn.items() if as_loaded(v, keep_nul) != v)
            elif as_loaded(value, keep_nul) != value:
                counts[f"conversations.{name}"] += 1
    return counts


# --------------------------------------------------------------------------- the escapes alone


def test_escapes_are_replaced_one_by_one_and_escaped_backslashes_stepped_over() -> None:
    body = rb'"a\ud800b \\ud800 \ud83d\ude00 \udc00\ud800 \u0000 \\u0000 \\\u0000"'
    fixed, count = replace_escapes(body, keep_nul=True)
    assert fixed == rb'"a\ufffdb \\ud800 \ud83d\ude00 \ufffd\ufffd \u0000 \\u0000 \\\u0000"'
    assert count == 3
    fixed, count = replace_escapes(body, keep_nul=False)
    assert fixed == rb'"a\ufffdb \\ud800 \ud83d\ude00 \ufffd\ufffd \ufffd \\u0000 \\\ufffd"'
    assert count == 5
    assert json.loads(fixed) == "a\ufffdb \\ud800 \U0001f600 \ufffd\ufffd \ufffd \\u0000 \\\ufffd"


def test_only_postgres_is_known_to_lose_nul() -> None:
    assert not destination_keeps_nul("postgres")
    kept = ("duckdb", "bigquery", "snowflake", "filesystem", None)
    assert all(destination_keeps_nul(name) for name in kept)


def page_body(user_input: str, state: str) -> bytes:
    return (
        '{"conversations": [{"id": "CA1", "started_at": "2026-11-20T10:11:12Z", "handoff_reason": "r", '
        f'"metrics": null, "state": {state}, '
        f'"turns": [{{"user_input": "{user_input}", "entities": [ ], "intents": ["a"]}}]}}]}}'
    ).encode()


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "general"])
def test_a_lone_surrogate_becomes_u_fffd_on_both_paths_and_json_stays_as_sent(typed: bool) -> None:
    state = r'{ "k\udc00": ["x\ud800y", 1.50] }'
    body = page_body(r"hi \ud800 there \ud83d\ude00", state)
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(body)  # what made every run fail on this page
    repair = TextRepair()
    page = decode_page(body, DECODER if typed else None, repair)
    assert page is not None and is_typed(page.conversations) == typed
    turns = turns_table(page.conversations, dict(TURN_COLUMN_TYPES)).table
    assert turns.column("user_input").to_pylist() == ["hi \ufffd there \U0001f600"]
    conversations = conversations_table(page.conversations, dict(CONVERSATION_COLUMN_TYPES)).table
    [loaded_state] = conversations.column("state").to_pylist()
    assert json.loads(loaded_state) == {"k\ufffd": ["x\ufffdy", 1.5]}
    if typed:  # the fast path keeps the JSON text as sent, but for the replaced code units
        assert loaded_state == r'{ "k\ufffd": ["x\ufffdy", 1.50] }'
    assert repair.summary() == {"conversations.state": 1, "turns.user_input": 1}


def test_nul_is_kept_or_replaced_as_the_destination_needs() -> None:
    body = page_body(r"a\u0000b", r'{"n\u0000": "\u0000"}')
    kept = TextRepair(keep_nul=True)
    page = decode_page(body, DECODER, kept)
    assert page is not None
    assert page.conversations[0]["turns"][0]["user_input"] == "a\x00b"
    assert kept.summary() == {}
    replaced = TextRepair(keep_nul=False)
    page = decode_page(body, DECODER, replaced)
    assert page is not None
    assert page.conversations[0]["turns"][0]["user_input"] == "a\ufffdb"
    assert bytes(page.conversations[0]["state"]) == rb'{"n\ufffd": "\ufffd"}'
    assert replaced.summary() == {"conversations.state": 1, "turns.user_input": 1}
    assert decode_page(body, None, replaced) is not None  # the same conversation read again
    assert replaced.summary() == {"conversations.state": 1, "turns.user_input": 1}


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "general"])
def test_a_body_cut_short_is_still_refused_with_or_without_a_lone_surrogate(typed: bool) -> None:
    body = page_body(r"a\ud800b", "{}")
    repair = TextRepair(keep_nul=False)
    for cut in (body[: len(body) // 2], body[: body.index(b"\\ud800") + 4], body[:-1]):
        assert decode_page(cut, DECODER if typed else None, repair) is None
    assert repair.summary() == {}


# --------------------------------------------------------------------------- end to end, DuckDB


def odd_world(mode: str) -> tuple[SimConfig, SimClock]:
    config = SimConfig(
        seed=29, n_conversations=80, start=T0, end=T0 + timedelta(hours=2), odd_text=mode, odd_text_every=3
    )
    return config, SimClock(T0 + timedelta(hours=14))  # everything finished: each read once


@pytest.mark.parametrize("mode", ["nul", "lone_surrogate"])
def test_duckdb_keeps_nul_and_replaces_lone_surrogates_and_the_next_run_goes_on(
    tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    config, clock = odd_world(mode)
    for harness in make_harness(tmp_path, config, clock, name=f"odd_{mode}", limit=7):
        # Broken bodies on top: a page cut short is fetched again, with or without odd text.
        harness.simulator.faults = Faults(seed=3)
        harness.simulator.faults.set_rates(invalid_json=0.2, truncate=0.1)
        with caplog.at_level(logging.WARNING, logger="sources.polyai"):
            summary = harness.run()
        truth = harness.simulator.truth()
        expected = odd_values(truth, keep_nul=True)
        assert set(expected) == (set(ODD_COLUMNS) if mode == "lone_surrogate" else set())
        assert summary.replaced_text == dict(expected)
        warnings = [r.getMessage() for r in caplog.records if "U+FFFD" in r.getMessage()]
        if expected:
            assert len(warnings) == 1 and f"in {sum(expected.values())} values" in warnings[0]
            assert "turns.user_input" in warnings[0] and "U+FFFD" in summary.render()
        else:
            assert warnings == []
        assert any(entry["fault"] for entry in harness.simulator.stats.request_log)
        check_loaded(harness, truth, keep_nul=True)
        harness.clock.advance(timedelta(minutes=5))
        again = harness.run(lookback_minutes=24 * 60)  # the same pages read again: not stuck
        assert again.conversations == len(truth)
        assert again.replaced_text == summary.replaced_text
        check_loaded(harness, truth, keep_nul=True)


def check_loaded(harness: Any, truth: list[dict[str, Any]], keep_nul: bool) -> None:
    odd = [c for c in truth if as_loaded(c, keep_nul=False) != c]
    assert len(odd) >= 8, "the scenario has too few conversations with odd text"
    problems = compare_tables(
        as_loaded(truth, keep_nul),
        harness.rows("conversations", "id"),
        harness.rows("turns", "conversation_id, turn_index"),
    )
    assert not problems, "\n".join(problems[:20])


# --------------------------------------------------------------------------- the warehouses


@pytest.mark.parametrize("mode", ["nul", "lone_surrogate"])
def test_warehouses_hold_the_text_they_can_and_the_rest_is_replaced_and_counted(
    tmp_path: Path,
    warehouse: Warehouse,  # noqa: F811 - the fixture imported above
    mode: str,
) -> None:
    for harness in destination_harness(tmp_path, warehouse, f"polyai_odd_{mode}"):
        harness.simulator.config.odd_text = mode
        harness.simulator.config.odd_text_every = 3
        harness.clock.advance(timedelta(hours=14))  # everything finished: each read once
        summary = harness.run()
        keep_nul = destination_keeps_nul(warehouse.name)
        truth = harness.simulator.truth(include_latency=True)
        assert summary.replaced_text == dict(odd_values(truth, keep_nul))
        if mode == "nul":
            assert bool(summary.replaced_text) == (warehouse.name == "postgres")
        check_loaded(harness, truth, keep_nul)
        harness.clock.advance(timedelta(minutes=5))
        again = harness.run(lookback_minutes=24 * 60)  # the same rows merged again: not stuck
        assert again.conversations == len(truth)
        assert again.replaced_text == summary.replaced_text
        check_loaded(harness, truth, keep_nul)
