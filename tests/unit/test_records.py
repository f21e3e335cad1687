"""Record shaping alone: v1 normalization, timestamps, JSON values, new fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from sources.polyai.settings import CONVERSATION_COLUMN_TYPES
from sources.polyai.shaping.records import (
    TIMESTAMP_TYPE,
    conversations_table,
    has_hidden_transcript,
    infer_data_type,
    normalize_v1_conversation,
    parse_timestamp,
    turns_table,
)

EXPECTED = datetime(2026, 11, 20, 10, 11, 12, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20T10:11:12.123456Z",
        "2026-11-20T10:11:12.123456+00:00",
        "2026-11-20 10:11:12.123456",
        "2026-11-20T11:11:12.123456+01:00",
        "2026-11-20T10:11:12.123456",
    ],
)
def test_parse_timestamp_reads_every_format_as_utc(text: str) -> None:
    assert parse_timestamp(text) == EXPECTED


def test_parse_timestamp_reads_http_dates_and_empties() -> None:
    assert parse_timestamp("Fri, 20 Nov 2026 10:11:12 GMT") == EXPECTED.replace(microsecond=0)
    assert parse_timestamp("") is None
    assert parse_timestamp(None) is None


def conversation(**overrides: object) -> dict:
    base = {
        "id": "CA1",
        "account_id": "acc",
        "project_id": "proj",
        "environment": "live",
        "started_at": "2026-11-20T10:11:12.123456Z",
        "channel": "VOICE-SIP",
        "in_progress": False,
        "num_turns": 2,
        "metrics": {"CALL_TURN": ["a", "b"], "NPS": "9"},
        "state": {"from_": "+441234", "nested": {"k": [1, 2.5, None, True]}},
        "turns": [
            {
                "user_input": 'héllo "quoted"\nnew line 🤖',
                "agent_response": "",
                "user_input_datetime": "2026-11-20T10:11:13Z",
                "agent_response_datetime": "2026-11-20T10:11:14Z",
                "intents": ["greet"],
                "entities": [{"name": "Ana"}, {"dates": ["a", "b"]}],
                "is_ood": False,
                "is_silence": False,
                "latency": 0.5,
            },
            {"user_input": "x", "latency": {"asr": 0.1, "llm": 0.7}},
        ],
    }
    base.update(overrides)
    return base


def test_v1_nulls_become_v3_empty_strings_and_false() -> None:
    v1 = conversation(
        handoff_reason=None,
        started_at="2026-11-20 10:11:12.123456",
        turns=[{"user_input": None, "is_ood": None, "user_input_datetime": "2026-11-20 10:11:13"}],
    )
    normalized = normalize_v1_conversation(v1)
    assert normalized["handoff_reason"] == ""
    assert normalized["started_at"] == "2026-11-20T10:11:12.123456+00:00"
    turn = normalized["turns"][0]
    assert turn["user_input"] == ""
    assert turn["is_ood"] is False
    assert turn["user_input_datetime"] == "2026-11-20T10:11:13+00:00"
    assert v1["handoff_reason"] is None, "the input is not modified"


def test_conversation_rows_keep_json_exact_and_timestamps_typed() -> None:
    table, new_columns = conversations_table([conversation()])
    assert new_columns == {}
    row = table.to_pylist()[0]
    assert row["started_at"] == EXPECTED
    assert table.schema.field("started_at").type == TIMESTAMP_TYPE
    assert json.loads(row["metrics"]) == conversation()["metrics"]
    assert json.loads(row["state"]) == conversation()["state"]
    assert "turns" not in table.column_names


def test_turn_rows_have_position_text_and_latency_by_type() -> None:
    table, _ = turns_table([conversation()])
    rows = table.to_pylist()
    assert [(r["conversation_id"], r["turn_index"]) for r in rows] == [("CA1", 0), ("CA1", 1)]
    assert rows[0]["user_input"] == 'héllo "quoted"\nnew line 🤖'
    assert rows[0]["latency"] == 0.5 and rows[0]["latency_detail"] is None
    assert rows[1]["latency"] is None and json.loads(rows[1]["latency_detail"]) == {"asr": 0.1, "llm": 0.7}
    assert json.loads(rows[0]["entities"]) == [{"name": "Ana"}, {"dates": ["a", "b"]}]
    assert rows[0]["conversation_started_at"] == EXPECTED


def test_unknown_fields_become_typed_columns() -> None:
    table, new_columns = conversations_table(
        [conversation(new_score=0.5, new_flag=True, new_obj={"a": 1}), conversation(id="CA2", new_score=2)]
    )
    assert new_columns == {"new_score": "double", "new_flag": "bool", "new_obj": "json"}
    assert table.schema.field("new_score").type == pa.float64()
    assert table.column("new_obj").to_pylist() == ['{"a":1}', None]


def test_infer_data_type() -> None:
    assert infer_data_type([1, None, 2]) == "bigint"
    assert infer_data_type(["a", 1]) == "json"
    assert infer_data_type([None]) == "text"


def test_hidden_transcript_is_detected_and_yields_no_turn_rows() -> None:
    hidden = conversation(turns=[], num_turns=4)
    assert has_hidden_transcript(hidden)
    assert not has_hidden_transcript(conversation(turns=[], num_turns=0))
    assert turns_table([hidden]).table.num_rows == 0


def test_values_that_do_not_fit_their_column_go_to_a_variant_column_exactly() -> None:
    types = dict(CONVERSATION_COLUMN_TYPES)
    first, _ = conversations_table([conversation(total_duration=30)], types)
    assert first.column("total_duration").to_pylist() == [30]
    table, new_columns = conversations_table(
        [
            conversation(total_duration=12.5),
            conversation(id="CA2", total_duration=7, started_at="not a date"),
        ],
        types,
    )
    assert new_columns == {"total_duration__v_json": "json", "started_at__v_json": "json"}
    assert table.column("total_duration").to_pylist() == [None, 7]
    assert table.column("total_duration__v_json").to_pylist() == ["12.5", None]
    assert table.column("started_at__v_json").to_pylist() == [None, '"not a date"']
    # The type learnt on the first page holds for later pages of the run.
    _, later_new = conversations_table([conversation(extra="x")], types)
    again, again_new = conversations_table([conversation(extra=5)], types)
    assert later_new == {"extra": "text"}
    assert again_new == {"extra__v_json": "json"}
    assert again.column("extra").to_pylist() == [None]
    assert again.column("extra__v_json").to_pylist() == ["5"]


def test_types_from_schema_keep_learnt_columns() -> None:
    from sources.polyai.shaping.records import types_from_schema

    types = types_from_schema(
        {"id": "text"}, {"extra": {"data_type": "bigint"}, "_dlt_id": {"data_type": "text"}}
    )
    assert types == {"id": "text", "extra": "bigint"}
