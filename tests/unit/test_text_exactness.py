"""NUL and lone surrogates in a page body, repaired before decoding (the loads:
tests/integration/test_text_exactness.py)."""

from __future__ import annotations

import json

import msgspec
import pytest

from sources.polyai.http.client import decode_page
from sources.polyai.settings import CONVERSATION_COLUMN_TYPES, TURN_COLUMN_TYPES
from sources.polyai.shaping.records import conversations_table, turns_table
from sources.polyai.shaping.text_repair import TextRepair, destination_keeps_nul, replace_escapes
from sources.polyai.shaping.typed_pages import is_typed, page_decoder

DECODER = page_decoder(CONVERSATION_COLUMN_TYPES, TURN_COLUMN_TYPES)


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
