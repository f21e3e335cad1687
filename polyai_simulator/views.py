"""A planned conversation as the API shows it at a moment, in v3 (and v2) or legacy v1 form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .generator import PlannedConversation, iso

V1_TEXT_FIELDS = ("variant_name", "from_number", "to_number", "handoff_reason", "handoff_destination")
V1_TURN_TEXT = ("user_input", "user_input_dtmf", "agent_response")
V1_DROPPED_TURN_FIELDS = ("translated_user_input", "english_agent_response", "latency", "barge_in")


@dataclass(frozen=True)
class ViewOptions:
    version: str = "v3"
    include_latency: bool = False
    include_context_state: bool = False
    include_turn_metadata: bool = False
    transcripts_enabled: bool = True


def render(conversation: PlannedConversation, now: datetime, options: ViewOptions) -> dict[str, Any]:
    finished = now >= conversation.ends_at
    turns = (
        conversation.turns
        if finished
        else [t for t in conversation.turns if t.agent_response_datetime <= now]
    )
    metrics: dict[str, Any] = {}
    for turn in turns:
        for name, value in turn.metric_writes:
            if name not in metrics:
                metrics[name] = value
            elif isinstance(metrics[name], list):
                metrics[name].append(value)
            else:
                metrics[name] = [metrics[name], value]
    total = int(((conversation.ends_at if finished else now) - conversation.started_at).total_seconds())
    record: dict[str, Any] = {
        "id": conversation.id,
        "account_id": "",
        "project_id": "",
        "variant_id": conversation.variant_id,
    }
    if conversation.variant_name is not None:
        record["variant_name"] = conversation.variant_name
    record.update(
        {
            "environment": conversation.environment,
            "started_at": iso(conversation.started_at),
            "channel": conversation.channel,
            "from_number": conversation.from_number,
            "to_number": conversation.to_number,
            "in_progress": not finished,
            "num_turns": len(turns),
            "total_duration": max(0, total),
            "polyai_duration": max(0, int(total * 0.7) if conversation.handoff and finished else total),
            "handoff": conversation.handoff and finished,
            "handoff_reason": conversation.handoff_reason if finished else "",
            "handoff_destination": conversation.handoff_destination if finished else "",
            "num_silences": sum(t.is_silence for t in turns),
            "num_ood": sum(t.is_ood for t in turns),
            "metrics": metrics,
        }
    )
    if conversation.has_state:
        state: dict[str, Any] = {
            "from_": conversation.from_number,
            "to": conversation.to_number,
            "call_sid": conversation.call_sid,
        }
        for turn in turns:
            state.update(turn.state_writes)
        record["state"] = state
    if options.include_context_state:
        record["context_state"] = {
            "last_intent": turns[-1].intents if turns else [],
            "turns_seen": len(turns),
        }
    record["turns"] = (
        [_turn(t, i, options) for i, t in enumerate(turns)] if options.transcripts_enabled else []
    )
    if options.version == "v1":
        return to_v1(record)
    return record


def _turn(turn: Any, index: int, options: ViewOptions) -> dict[str, Any]:
    data: dict[str, Any] = {
        "user_input": turn.user_input,
        "user_input_dtmf": turn.user_input_dtmf,
        "user_input_datetime": iso(turn.user_input_datetime),
        "agent_response": turn.agent_response,
        "agent_response_datetime": iso(turn.agent_response_datetime),
        "barge_in": turn.barge_in,
        "intents": list(turn.intents),
        "entities": [dict(e) for e in turn.entities],
        "is_ood": turn.is_ood,
        "is_silence": turn.is_silence,
        "translated_user_input": turn.translated_user_input,
        "english_agent_response": turn.english_agent_response,
    }
    if options.include_latency:
        data["latency"] = turn.latency
    if options.include_turn_metadata:
        data["metadata"] = {"model": "sim-llm", f"tool_{index % 3}": {"calls": index}}
    return data


def _naive_space(text: str) -> str:
    return text.replace("T", " ").removesuffix("Z")


def _offset_form(text: str) -> str:
    return text.removesuffix("Z") + "+00:00"


def to_v1(record: dict[str, Any]) -> dict[str, Any]:
    """v1's legacy shape: null for empty text, some null flags, timestamps in mixed formats."""
    v1 = dict(record)
    for name in V1_TEXT_FIELDS:
        if v1.get(name) == "":
            v1[name] = None
    turns = []
    for index, turn in enumerate(record["turns"]):
        t = {k: v for k, v in turn.items() if k not in V1_DROPPED_TURN_FIELDS}
        for name in V1_TURN_TEXT:
            if t.get(name) == "":
                t[name] = None
        if index % 3 == 0:
            for flag in ("is_ood", "is_silence"):
                if t.get(flag) is False:
                    t[flag] = None
        t["user_input_datetime"] = _naive_space(t["user_input_datetime"])
        t["agent_response_datetime"] = _offset_form(t["agent_response_datetime"])
        turns.append(t)
    v1["turns"] = turns
    return v1


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace(" ", "T") if "T" not in text else text.strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
