"""A planned conversation as the API shows it at a moment: v3 (v2 is identical) or legacy v1.

One truth, two renderings. A client that normalizes v1 (null text -> "", null flags ->
false, timestamps -> UTC) gets exactly the v3 values, microseconds included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .content import turn_metadata
from .generator import US, Plan, Turn


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """Everything a rendering depends on besides the moment; it keys the byte cache."""

    version: str = "v3"  # "v1" or "v3"; v2 serves the v3 rendering
    include_latency: bool = False
    include_context_state: bool = False
    include_turn_metadata: bool = False
    transcripts_enabled: bool = True


def v1_naive(iso: str) -> str:
    """'2026-11-20T10:11:12.123456Z' -> '2026-11-20 10:11:12.123456' (UTC without saying so)."""
    return iso[:10] + " " + iso[11:26]


def v1_offset(iso: str) -> str:
    """'...T10:11:12.123456Z' -> '...T10:11:12.123456+00:00'; whole seconds lose the fraction,
    as Python's isoformat() does, which is how such inconsistencies arise."""
    return (iso[:19] if iso[20:26] == "000000" else iso[:26]) + "+00:00"


def visible_turns(plan: Plan, now_us: int, finished: bool) -> tuple[Turn, ...]:
    """Turns already answered at `now_us`: a turn appears once its agent response is out."""
    if finished:
        return plan.turns
    count = 0
    for turn in plan.turns:
        if turn.agent_us > now_us:
            break
        count += 1
    return plan.turns[:count]


def _metrics(plan: Plan, turns: tuple[Turn, ...], finished: bool) -> dict[str, str | list[str]]:
    """name -> value, or the list of values once a name was written twice (as the API does)."""
    metrics: dict[str, Any] = {}
    writes = [write for turn in turns for write in turn.metric_writes]
    if finished:
        writes.extend(plan.final_metric_writes)
    for name, value in writes:
        current = metrics.get(name)
        if current is None:
            metrics[name] = value
        elif isinstance(current, list):
            current.append(value)
        else:
            metrics[name] = [current, value]
    return metrics


def render(plan: Plan, now_us: int, options: ViewOptions, account_id: str, project_id: str) -> dict[str, Any]:
    entry = plan.entry
    finished = now_us >= entry.ends_us
    turns = visible_turns(plan, now_us, finished)
    elapsed = max(0, ((entry.ends_us if finished else now_us) - entry.started_us) // US)
    handled = max(0, (plan.handoff_us - entry.started_us) // US)
    v1 = options.version == "v1"
    record: dict[str, Any] = {
        "id": entry.id,
        "account_id": account_id,
        "project_id": project_id,
        "variant_id": entry.variant_id,
    }
    if entry.variant_name is not None:
        record["variant_name"] = entry.variant_name
    handoff = plan.handoff and finished
    record.update(
        {
            "environment": entry.environment,
            "started_at": plan.started_iso,
            "channel": entry.channel,
            "from_number": plan.from_number,
            "to_number": plan.to_number,
            "in_progress": not finished,
            "num_turns": len(turns),
            "total_duration": elapsed,
            "polyai_duration": min(elapsed, handled),
            "handoff": handoff,
            "handoff_reason": plan.handoff_reason if handoff else "",
            "handoff_destination": plan.handoff_destination if handoff else "",
            "num_silences": sum(turn.is_silence for turn in turns),
            "num_ood": sum(turn.is_ood for turn in turns),
            "metrics": _metrics(plan, turns, finished),
        }
    )
    if plan.has_state:
        state: dict[str, Any] = {"from_": plan.from_number, "to": plan.to_number, "call_sid": plan.call_sid}
        for turn in turns:
            state.update(turn.state_writes)
        record["state"] = state
    if options.include_context_state:
        record["context_state"] = _context_state(turns, finished)
    if not options.transcripts_enabled:
        record["turns"] = []
    elif v1:
        record["turns"] = [_v1_turn(turn, i, entry.index, options) for i, turn in enumerate(turns)]
    else:
        record["turns"] = [_v3_turn(turn, i, options) for i, turn in enumerate(turns)]
    if v1:
        for name in ("from_number", "to_number", "handoff_reason", "handoff_destination"):
            if record[name] == "":
                record[name] = None
    return record


def _context_state(turns: tuple[Turn, ...], finished: bool) -> dict[str, Any]:
    """`include_context_state`: unpublished layout; nested, with data-dependent node keys."""
    last = turns[-1] if turns else None
    return {
        "flow": "booking" if any("book_table" in t.intents for t in turns) else "general",
        "turn_count": len(turns),
        "last_intents": list(last.intents) if last else [],
        f"node_{len(turns) % 4}": {"visits": len(turns), "exited": finished},
        "ended": finished,
    }


def _v3_turn(turn: Turn, index: int, options: ViewOptions) -> dict[str, Any]:
    data: dict[str, Any] = {
        "user_input": turn.user_input,
        "user_input_dtmf": turn.user_input_dtmf,
        "user_input_datetime": turn.user_iso,
        "agent_response": turn.agent_response,
        "agent_response_datetime": turn.agent_iso,
        "barge_in": turn.barge_in,
        "intents": list(turn.intents),
        "entities": turn.entities,
        "is_ood": turn.is_ood,
        "is_silence": turn.is_silence,
        "translated_user_input": turn.translated_user_input,
        "english_agent_response": turn.english_agent_response,
    }
    if options.include_latency:
        data["latency"] = turn.latency
    if options.include_turn_metadata:
        data["metadata"] = turn_metadata(index, turn.intents, turn.user_input, turn.agent_response)
    return data


def _v1_turn(turn: Turn, index: int, conversation_index: int, options: ViewOptions) -> dict[str, Any]:
    """v1: null for empty text, a false flag sometimes null, two more timestamp spellings, and
    none of translated_user_input, english_agent_response, latency, barge_in."""
    null_flags = (conversation_index + index) % 3 == 0
    data: dict[str, Any] = {
        "user_input": turn.user_input or None,
        "user_input_dtmf": turn.user_input_dtmf or None,
        "user_input_datetime": v1_naive(turn.user_iso),
        "agent_response": turn.agent_response or None,
        "agent_response_datetime": v1_offset(turn.agent_iso),
        "intents": list(turn.intents),
        "entities": turn.entities,
        "is_ood": None if null_flags and not turn.is_ood else turn.is_ood,
        "is_silence": None if null_flags and not turn.is_silence else turn.is_silence,
    }
    if options.include_turn_metadata:
        data["metadata"] = turn_metadata(index, turn.intents, turn.user_input, turn.agent_response)
    return data
