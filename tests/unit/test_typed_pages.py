"""The fast path alone: typed decoding gives the general path's tables, or steps aside."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pytest

from polyai_simulator import SimClock, SimConfig, Simulator
from sources.polyai.http.client import decode_page
from sources.polyai.settings import CONVERSATION_COLUMN_TYPES, TURN_COLUMN_TYPES
from sources.polyai.shaping.records import conversations_table, turns_table
from sources.polyai.shaping.typed_pages import TypedRecord, decode_typed_page, is_typed, page_decoder

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
DECODER = page_decoder(CONVERSATION_COLUMN_TYPES, TURN_COLUMN_TYPES)


def simulated_body(include_latency: bool = True) -> bytes:
    """A page body as the simulator serves it: every kind of value it draws, latency objects too."""
    config = SimConfig(
        seed=5,
        n_conversations=120,
        start=T0,
        end=T0 + timedelta(hours=4),
        long_running_fraction=0.1,
        latency_object_fraction=0.3,
    )
    simulator = Simulator(config, SimClock(T0 + timedelta(hours=3)))
    conversations = simulator.truth(include_latency=include_latency)
    return orjson.dumps({"conversations": conversations, "cursor": None})


def both_paths(body: bytes) -> tuple[list[object], list[dict[str, object]]]:
    typed = decode_page(body, DECODER)
    general = decode_page(body, None)
    assert typed is not None and general is not None
    return typed.conversations, general.conversations  # type: ignore[return-value]


@pytest.mark.parametrize("include_latency", [True, False])
def test_typed_pages_shape_the_same_tables_as_the_general_path(include_latency: bool) -> None:
    typed, general = both_paths(simulated_body(include_latency))
    assert is_typed(typed) and not is_typed(general)
    assert len(typed) == len(general) > 50
    for shape, known in ((conversations_table, CONVERSATION_COLUMN_TYPES), (turns_table, TURN_COLUMN_TYPES)):
        fast, fast_new = shape(typed, dict(known))
        slow, slow_new = shape(general, dict(known))
        assert fast_new == slow_new == {}
        assert fast.schema == slow.schema
        assert fast.num_rows == slow.num_rows > 0
        assert fast.equals(slow), shape.__name__
    turns = turns_table(typed, dict(TURN_COLUMN_TYPES)).table
    if include_latency:
        assert turns.column("latency_detail").null_count < turns.num_rows, "no latency object drawn"


def conversation(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "CA1",
        "started_at": "2026-11-20T10:11:12.123456Z",
        "in_progress": False,
        "num_turns": 1,
        "turns": [{"user_input": "hi", "intents": ["greet"]}],
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    "odd",
    [
        {"brand_new_field": 1},  # a field the connector has not learnt
        {"num_turns": "3"},  # text where a number belongs
        {"total_duration": 12.5},  # a fraction in an integer column
        {"num_ood": 2**70},  # beyond 64 bits
        {"in_progress": 1},  # a number where a flag belongs
        {"started_at": 1763633472},  # a number where a timestamp belongs
        {"turns": [{"user_input": "hi", "latency": "0.4"}]},  # latency as text
        {"turns": [{"user_input": "hi", "new_turn_field": True}]},
    ],
)
def test_pages_that_do_not_fit_the_typed_records_take_the_general_path(odd: dict[str, object]) -> None:
    body = json.dumps({"conversations": [conversation(), conversation(id="CA2", **odd)]}).encode()
    assert decode_typed_page(DECODER, body) is None
    page = decode_page(body, DECODER)
    assert page is not None and not is_typed(page.conversations)
    assert page.conversations[1] == {**conversation(id="CA2"), **odd}


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b'{"conversations": [', b"", b"<html>"])
def test_a_body_that_is_no_json_object_is_refused_on_both_paths(body: bytes) -> None:
    assert decode_page(body, DECODER) is None
    assert decode_page(body, None) is None


def test_json_values_are_kept_exactly_as_the_api_sent_them() -> None:
    state = '{ "b": 1, "a": [1.50, 123456789012345678901234567890, "\\u00e9\\"x\\n"], "z": {} }'
    body = (
        '{"conversations": [{"id": "CA1", "started_at": "2026-11-20T10:11:12Z", '
        f'"metrics": null, "state": {state}, '
        '"turns": [{"entities": [ ], "intents": ["a" ,"b"]}]}], "next_offset": null}'
    ).encode()
    page = decode_typed_page(DECODER, body)
    assert page is not None
    conversations = conversations_table(page.conversations, dict(CONVERSATION_COLUMN_TYPES)).table
    assert conversations.column("state").to_pylist() == [state]
    assert conversations.column("metrics").to_pylist() == [None]
    parsed = json.loads(conversations.column("state")[0].as_py())
    assert parsed["a"][1] == 123456789012345678901234567890
    turns = turns_table(page.conversations, dict(TURN_COLUMN_TYPES)).table
    assert turns.column("entities").to_pylist() == ["[ ]"]
    assert turns.column("intents").to_pylist() == ['["a" ,"b"]']
    assert turns.column("entities").type == pa.string()


def test_typed_records_read_and_write_like_dicts() -> None:
    page = decode_typed_page(DECODER, orjson.dumps({"conversations": [conversation()]}))
    assert page is not None and page.cursor is None and page.next_offset is None
    record = page.conversations[0]
    assert isinstance(record, TypedRecord)
    assert record["id"] == "CA1" and record.get("variant_name") is None
    assert record.get("turns")[0]["user_input"] == "hi"
    record["started_at"] = "2026-11-20T10:11:12.123456+00:00"
    assert record.started_at == "2026-11-20T10:11:12.123456+00:00"


def test_learnt_columns_join_the_typed_records() -> None:
    learnt = {**CONVERSATION_COLUMN_TYPES, "sentiment": "double", "sentiment__v_json": "json"}
    decoder = page_decoder(learnt, TURN_COLUMN_TYPES)
    page = decode_typed_page(decoder, orjson.dumps({"conversations": [conversation(sentiment=0.25)]}))
    assert page is not None
    table = conversations_table(page.conversations, dict(learnt)).table
    assert table.column("sentiment").to_pylist() == [0.25]
    # A misfit in a learnt column still goes through the general path and its variant column.
    assert decode_typed_page(decoder, orjson.dumps({"conversations": [conversation(sentiment="x")]})) is None
