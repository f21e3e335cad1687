"""Compare what landed in DuckDB with the simulator's own truth, field by field.

Written independently of the connector's shaping code, so that a shaping bug cannot hide.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.harness import Harness

CONVERSATION_JSON = {"metrics", "state"}
TURN_JSON = {"intents", "entities", "latency_detail"}
TIMESTAMPS = {"started_at", "user_input_datetime", "agent_response_datetime", "conversation_started_at"}


def as_utc(text: str | None) -> datetime | None:
    if text in (None, ""):
        return None
    value = datetime.fromisoformat(text.replace(" ", "T"))  # type: ignore[union-attr]
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def expected_conversation(conversation: dict[str, Any]) -> dict[str, Any]:
    row = {key: value for key, value in conversation.items() if key != "turns"}
    row["started_at"] = as_utc(row["started_at"])
    return row


def expected_turns(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for index, turn in enumerate(conversation.get("turns") or []):
        row = {"conversation_id": conversation["id"], "turn_index": index}
        row["conversation_started_at"] = as_utc(conversation["started_at"])
        # The conversation's, copied to each turn.
        row["account_id"] = conversation["account_id"]
        row["project_id"] = conversation["project_id"]
        for key, value in turn.items():
            if key == "latency" and isinstance(value, dict):
                row["latency_detail"] = value
            elif key in TIMESTAMPS:
                row[key] = as_utc(value)
            else:
                row[key] = value
        rows.append(row)
    return rows


def loaded(row: dict[str, Any], json_columns: set[str]) -> dict[str, Any]:
    """A DuckDB row with JSON parsed back and dlt's bookkeeping columns dropped."""
    result = {}
    for key, value in row.items():
        if key.startswith("_dlt"):
            continue
        result[key] = json.loads(value) if key in json_columns and value is not None else value
    return result


def mismatches(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Fields whose loaded value differs; a field the API did not send must load as NULL."""
    problems = []
    for key, value in expected.items():
        if actual.get(key) != value or (
            key in TIMESTAMPS and value is not None and actual[key].tzinfo is None
        ):
            problems.append(f"{key}: expected {value!r}, loaded {actual.get(key)!r}")
    for key, value in actual.items():
        if key not in expected and value is not None:
            problems.append(f"{key}: not sent by the API, loaded {value!r}")
    return problems


def compare_tables(
    truth: list[dict[str, Any]],
    conversation_rows: list[dict[str, Any]],
    turn_rows: list[dict[str, Any]],
) -> list[str]:
    """Every problem between the truth and the two tables (empty when they are identical)."""
    problems: list[str] = []
    by_id: dict[str, dict[str, Any]] = {}
    for row in conversation_rows:
        if row["id"] in by_id:
            problems.append(f"duplicate conversation {row['id']}")
        by_id[row["id"]] = loaded(row, CONVERSATION_JSON)
    turns_by_id: dict[str, list[dict[str, Any]]] = {}
    for row in turn_rows:
        turns_by_id.setdefault(row["conversation_id"], []).append(loaded(row, TURN_JSON))
    truth_ids = {c["id"] for c in truth}
    problems += [f"conversation {i} is not in the truth" for i in by_id.keys() - truth_ids]
    problems += [f"turns of unknown conversation {i}" for i in turns_by_id.keys() - truth_ids]
    for conversation in truth:
        actual = by_id.get(conversation["id"])
        if actual is None:
            problems.append(f"conversation {conversation['id']} missing")
            continue
        problems += [
            f"{conversation['id']} {p}" for p in mismatches(expected_conversation(conversation), actual)
        ]
        want = expected_turns(conversation)
        got = sorted(turns_by_id.get(conversation["id"], []), key=lambda r: r["turn_index"])
        if [r["turn_index"] for r in got] != [r["turn_index"] for r in want]:
            problems.append(
                f"{conversation['id']} turns {[r['turn_index'] for r in got]} != {len(want)} in the truth"
            )
            continue
        for expected_row, actual_row in zip(want, got, strict=True):
            problems += [
                f"{conversation['id']}#{expected_row['turn_index']} {p}"
                for p in mismatches(expected_row, actual_row)
            ]
    return problems


def check_run_against_truth(harness: Harness) -> None:
    """After any run: nothing missing, nothing doubled, finished rows final, in-progress rows pending."""
    check_rows_against_truth(
        harness.simulator.truth(include_latency=True),
        harness.rows("conversations", "id"),
        harness.rows("turns", "conversation_id, turn_index"),
        harness.pending,
    )


def check_rows_against_truth(
    truth: list[dict[str, Any]],
    conversations: list[dict[str, Any]],
    turns: list[dict[str, Any]],
    pending: dict[str, str],
) -> None:
    """One project's rows against its API's truth (see check_run_against_truth)."""
    loaded_ids = {row["id"] for row in conversations}
    assert len(loaded_ids) == len(conversations), "duplicate conversation rows"
    missing = [c["id"] for c in truth if c["id"] not in loaded_ids]
    assert not missing, f"{len(missing)} visible conversations not loaded, e.g. {missing[:3]}"
    finished_ids = {row["id"] for row in conversations if not row["in_progress"]}
    problems = compare_tables(
        [c for c in truth if c["id"] in finished_ids],
        [row for row in conversations if row["id"] in finished_ids],
        [row for row in turns if row["conversation_id"] in finished_ids],
    )
    assert not problems, "\n".join(problems[:20])
    stale = loaded_ids - finished_ids - set(pending)
    assert not stale, f"in-progress rows that nobody will re-pull: {sorted(stale)[:3]}"


V1_LACKS = ("translated_user_input", "english_agent_response", "barge_in", "latency")


def truth_as_loaded(harness: Harness) -> list[dict[str, Any]]:
    """The simulator's v3 truth, less the turn fields v1 does not have when the harness reads v1."""
    truth = harness.simulator.truth()
    if harness.source_options.get("api_version") != "v1":
        return truth
    for conversation in truth:
        conversation["turns"] = [
            {k: v for k, v in turn.items() if k not in V1_LACKS} for turn in conversation["turns"]
        ]
    return truth
