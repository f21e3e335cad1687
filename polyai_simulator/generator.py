"""Deterministic simulated conversations: each one from its own seed, rendered as of any time."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

CHANNELS = ("VOICE-SIP", "VOICE-SIP", "VOICE-SIP", "WEBCHAT", "CHAT")
ENVIRONMENTS = ("live",) * 8 + ("sandbox", "pre-release")
VARIANTS = (
    ("var-main", "Main agent"),
    ("var-b", "Variant B"),
    ("var-uni", "Ünïcode variant ✓"),
)
INTENTS = ("book_table", "cancel_booking", "opening_hours", "speak_to_human", "smalltalk", "payment")
HANDOFF_REASONS = ("user_requested", "payment_issue", "out_of_scope", "repeated_ood")
AWKWARD_TEXTS = (
    "Bonjour, je voudrais réserver une table pour deux à 20h ce soir",
    "He said \"yes\" and then 'no' — can you check?",
    "Line one\nLine two\n\ttabbed line",
    "Back\\slash and C:\\path\\file.txt",
    "我想预订明天的房间",
    "مرحبا، أريد إلغاء الحجز",
    "שלום, אני צריך עזרה",
    "Family: 👨‍👩‍👧‍👦 and flags 🇬🇧🇫🇷 and 🤖",
    "",
    "Zero width: a\u200bb and combining é vs é",
)
AGENT_TEXTS = (
    "Of course! For how many people?",
    "I'm sorry, I didn't catch that. Could you say it again?",
    "Let me transfer you to a colleague.",
    'Your booking reference is "AB-1234".\nAnything else?',
    "Merci ! À bientôt 👋",
    "",
)


@dataclass(frozen=True)
class PlannedTurn:
    user_input: str
    user_input_dtmf: str
    user_input_datetime: datetime
    agent_response: str
    agent_response_datetime: datetime
    barge_in: bool
    intents: list[str]
    entities: list[dict[str, Any]]
    is_ood: bool
    is_silence: bool
    translated_user_input: str
    english_agent_response: str
    latency: Any
    metric_writes: list[tuple[str, str]]
    state_writes: dict[str, Any]


@dataclass
class PlannedConversation:
    index: int
    id: str
    started_at: datetime
    visible_at: datetime
    ends_at: datetime
    environment: str
    channel: str
    variant_id: str
    variant_name: str | None
    from_number: str
    to_number: str
    handoff: bool
    handoff_reason: str
    handoff_destination: str
    has_state: bool
    call_sid: str
    turns: list[PlannedTurn] = field(default_factory=list)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _phone(rng: random.Random) -> str:
    return "+44" + "".join(rng.choice("0123456789") for _ in range(10))


def _long_text(rng: random.Random) -> str:
    words = ["lorem", "ipsum", "ünïcödé", "“quoted”", "new\nline", "🙂", "tab\there", "back\\slash"]
    size = rng.randint(10_000, 50_000)
    parts: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(words)
        parts.append(word)
        length += len(word) + 1
    return " ".join(parts)


def plan_conversation(
    seed: int,
    index: int,
    start: datetime,
    span: timedelta,
    late_arrival_fraction: float,
    long_running_fraction: float,
    latency_object_fraction: float,
) -> PlannedConversation:
    rng = random.Random(seed * 1_000_003 + index)
    started_at = start + timedelta(microseconds=rng.randrange(max(1, int(span.total_seconds() * 1e6))))
    if rng.random() < late_arrival_fraction:
        visible_at = started_at + timedelta(seconds=rng.uniform(120, 720))
    else:
        visible_at = started_at + timedelta(seconds=rng.uniform(0, 20))
    if rng.random() < long_running_fraction:
        duration = timedelta(seconds=rng.uniform(3600, 6 * 3600))
    else:
        duration = timedelta(seconds=rng.uniform(20, 900))
    channel = rng.choice(CHANNELS)
    variant_id, variant_name = rng.choice(VARIANTS)
    voice = channel.startswith("VOICE")
    handoff = rng.random() < 0.25
    conversation = PlannedConversation(
        index=index,
        id="CA" + "".join(rng.choice("0123456789abcdef") for _ in range(32)),
        started_at=started_at,
        visible_at=visible_at,
        ends_at=started_at + duration,
        environment=rng.choice(ENVIRONMENTS),
        channel=channel,
        variant_id=variant_id,
        variant_name=None if rng.random() < 0.05 else variant_name,
        from_number=_phone(rng) if voice else "",
        to_number="+442079460000" if voice else "",
        handoff=handoff,
        handoff_reason=rng.choice(HANDOFF_REASONS) if handoff else "",
        handoff_destination=rng.choice(("reception", "billing desk", "Équipe FR")) if handoff else "",
        has_state=rng.random() > 0.05,
        call_sid="CA" + "".join(rng.choice("0123456789abcdef") for _ in range(16)),
    )
    n_turns = 0 if rng.random() < 0.03 else max(1, int(rng.gauss(9, 4)))
    latency_as_object = rng.random() < latency_object_fraction
    step = duration / (n_turns + 1) if n_turns else duration
    for turn_index in range(n_turns):
        at = started_at + step * (turn_index + 1)
        conversation.turns.append(_plan_turn(rng, turn_index, at, step, latency_as_object))
    return conversation


def _plan_turn(
    rng: random.Random, turn_index: int, at: datetime, step: timedelta, latency_as_object: bool
) -> PlannedTurn:
    silence = rng.random() < 0.08
    ood = not silence and rng.random() < 0.1
    user_input = "" if silence else (_long_text(rng) if rng.random() < 0.003 else rng.choice(AWKWARD_TEXTS))
    latency_seconds = round(rng.uniform(0.2, 2.5), 3)
    latency: Any = latency_seconds
    if latency_as_object:
        latency = {"asr": round(latency_seconds / 4, 3), "llm": round(latency_seconds / 2, 3), "tts": 0.05}
    entities: list[dict[str, Any]] = []
    if rng.random() < 0.4:
        entities.append({"party_size": str(rng.randint(1, 12))})
    if rng.random() < 0.2:
        entities.append({"dates": ["2026-12-24", "2026-12-25"], "name": rng.choice(("Ana", "Zoë", "李雷"))})
    metric_writes = [("TURN_SEEN", str(turn_index))]
    if rng.random() < 0.3:
        metric_writes.append(
            (rng.choice(("NPS", "CSAT", "REASON", f"DYN_{rng.randint(1, 40)}")), "v" + str(turn_index))
        )
    state_writes: dict[str, Any] = {}
    if rng.random() < 0.5:
        key = rng.choice(("booking", "customer", f"slot_{rng.randint(1, 30)}", "flags"))
        state_writes[key] = rng.choice(
            (
                {"party": rng.randint(1, 8), "time": "20:00", "confirmed": rng.random() < 0.5},
                [1, 2.5, None, True, "x"],
                {"nested": {"deeper": {"list": [{"a": "é"}, {"b": None}]}}},
                rng.random(),
                'text with "quotes" and\nnewline',
            )
        )
    agent_at = at + step * 0.3
    return PlannedTurn(
        user_input=user_input,
        user_input_dtmf=str(rng.randint(0, 9)) if rng.random() < 0.05 else "",
        user_input_datetime=at,
        agent_response=rng.choice(AGENT_TEXTS),
        agent_response_datetime=agent_at,
        barge_in=rng.random() < 0.1,
        intents=rng.sample(INTENTS, k=rng.choice((0, 1, 1, 2))),
        entities=entities,
        is_ood=ood,
        is_silence=silence,
        translated_user_input="" if rng.random() < 0.8 else "translated: " + user_input,
        english_agent_response="",
        latency=latency,
        metric_writes=metric_writes,
        state_writes=state_writes,
    )
