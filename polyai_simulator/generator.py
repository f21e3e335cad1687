"""Deterministic conversations, each drawn from its own seed.

The simulator keeps only a compact index row per conversation (`Entry`: times and filter
fields). The full plan (turns, state, metrics) is drawn again from the same seed when it is
rendered, so 100k conversations cost megabytes, not gigabytes. All times are integer
microseconds since the Unix epoch: exact, cheap to compare, and formatted only on output.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from . import content as c
from .config import SimConfig

US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
LONG_TEXT_EVERY = 400  # every 400th conversation carries one 10-50k character text


def to_us(moment: datetime) -> int:
    return (moment - EPOCH) // _ONE_US


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def iso(micros: int) -> str:
    """v3's timestamp form: ISO 8601, UTC, always six fractional digits, `Z`."""
    return (_NAIVE_EPOCH + timedelta(microseconds=micros)).isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True, slots=True)
class GenParams:
    """The config fields the data depends on (hashable: it keys the plan cache)."""

    seed: int
    start_us: int
    span_us: int
    late_arrival_fraction: float
    long_running_fraction: float
    latency_object_fraction: float

    @classmethod
    def from_config(cls, config: SimConfig) -> GenParams:
        start_us = to_us(config.start)
        return cls(
            seed=config.seed,
            start_us=start_us,
            span_us=to_us(config.end) - start_us,
            late_arrival_fraction=config.late_arrival_fraction,
            long_running_fraction=config.long_running_fraction,
            latency_object_fraction=config.latency_object_fraction,
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """One conversation in the index: when it starts, becomes visible, ends; what filters see."""

    index: int
    id: str
    started_us: int
    visible_us: int
    ends_us: int
    environment: str
    channel: str
    variant_id: str
    variant_name: str | None  # None: the field is absent (the v3 migration guide allows it)
    # Set on the second copy that SimConfig.echo_fraction serves: the original started_us.
    echo_of: int | None = None

    @property
    def started_at(self) -> datetime:
        return from_us(self.started_us)

    @property
    def visible_at(self) -> datetime:
        return from_us(self.visible_us)

    @property
    def ends_at(self) -> datetime:
        return from_us(self.ends_us)


@dataclass(frozen=True, slots=True)
class Turn:
    user_input: str
    user_input_dtmf: str
    user_us: int
    user_iso: str
    agent_response: str
    agent_us: int
    agent_iso: str
    barge_in: bool
    intents: tuple[str, ...]
    entities: list[dict[str, str | list[str]]]
    is_ood: bool
    is_silence: bool
    translated_user_input: str
    english_agent_response: str
    latency: float | dict[str, float]
    metric_writes: tuple[tuple[str, str], ...]
    state_writes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a conversation will ever be; views cut it at a moment."""

    entry: Entry
    started_iso: str
    from_number: str
    to_number: str
    handoff: bool
    handoff_reason: str
    handoff_destination: str
    handoff_us: int  # PolyAI stops handling the call here (ends_us without a handoff)
    has_state: bool
    call_sid: str
    turns: tuple[Turn, ...]
    final_metric_writes: tuple[tuple[str, str], ...]  # written when the call ends


def _rng(params: GenParams, index: int) -> random.Random:
    return random.Random((params.seed << 32) + index)


def _header(rng: random.Random, params: GenParams, index: int) -> Entry:
    """The first draws of a conversation's seed: all the index needs, nothing more."""
    r = rng.random
    started = params.start_us + int(r() * params.span_us)
    late = r() < params.late_arrival_fraction
    delay = int((120 + r() * 600) * US) if late else int(r() * 20 * US)
    long_running = r() < params.long_running_fraction
    duration = int((3600 + r() * 5 * 3600) * US) if long_running else int((20 + r() * 880) * US)
    conversation_id = f"CA{rng.getrandbits(128):032x}"
    variant_id, variant_name = c.pick(rng, c.VARIANTS)
    return Entry(
        index=index,
        id=conversation_id,
        started_us=started,
        visible_us=started + delay,
        ends_us=started + duration,
        environment=c.pick(rng, c.ENVIRONMENTS),
        channel=c.pick(rng, c.CHANNELS),
        variant_id=variant_id,
        variant_name=None if r() < 0.04 else variant_name,
    )


def build_index(config: SimConfig) -> list[Entry]:
    """Every conversation's index row, sorted by (started_at, id)."""
    params = GenParams.from_config(config)
    entries = [_header(_rng(params, index), params, index) for index in range(config.n_conversations)]
    if len({entry.id for entry in entries}) != len(entries):
        raise RuntimeError("conversation id collision; pick another seed")
    entries.sort(key=lambda entry: (entry.started_us, entry.id))
    return entries


@lru_cache(maxsize=4096)
def plan(params: GenParams, index: int) -> Plan:
    """The full conversation `index`, drawn again from its seed (cached: in-progress ones are
    rendered on every request)."""
    rng = _rng(params, index)
    entry = _header(rng, params, index)
    r = rng.random
    voice = entry.channel == "VOICE-SIP"
    from_number = c.phone(rng) if voice else ""
    to_number = c.pick(rng, c.AGENT_NUMBERS) if voice else ""
    handoff = r() < 0.22
    has_state = r() >= 0.05
    call_sid = f"CA{rng.getrandbits(128):032x}"
    latency_object = r() < params.latency_object_fraction
    duration = entry.ends_us - entry.started_us
    # About one turn per 50 s, 9 on average; a few conversations never get a turn.
    n_turns = 0 if r() < 0.03 else max(1, min(60, round(duration / US / 50 * (0.5 + r()))))
    long_turn = int(r() * n_turns) if index % LONG_TEXT_EVERY == 5 else -1
    slot = duration / (n_turns + 0.5)
    turns = tuple(
        _turn(rng, i, entry.started_us + int(slot * i), slot, voice, latency_object, i == long_turn)
        for i in range(n_turns)
    )
    handoff_us = entry.ends_us
    if handoff and turns:
        handoff_us = min(entry.ends_us, turns[-1].agent_us + US)
    elif handoff:
        handoff_us = entry.started_us + duration // 2
    final: list[tuple[str, str]] = []
    if r() < 0.7:
        final.append(("CALL_DURATION", str(duration // US)))
    if r() < 0.3:
        final.append(("END_REASON", c.pick(rng, c.END_REASONS)))
    return Plan(
        entry=entry,
        started_iso=iso(entry.started_us),
        from_number=from_number,
        to_number=to_number,
        handoff=handoff,
        handoff_reason=c.pick(rng, c.HANDOFF_REASONS) if handoff else "",
        handoff_destination=c.pick(rng, c.HANDOFF_DESTINATIONS) if handoff else "",
        handoff_us=handoff_us,
        has_state=has_state,
        call_sid=call_sid,
        turns=turns,
        final_metric_writes=tuple(final),
    )


def _turn(
    rng: random.Random,
    index: int,
    slot_start: int,
    slot: float,
    voice: bool,
    latency_object: bool,
    long: bool,
) -> Turn:
    r = rng.random
    user_us = slot_start + int(r() * slot * 0.3)
    gap = int(min(slot * 0.5, (0.2 + r() * 2.3) * US))
    agent_us = user_us + gap
    silence = voice and index > 0 and r() < 0.07
    ood = not silence and r() < 0.08
    # Empty: a silence, or the agent greeting before the caller has said anything.
    user_input = "" if silence or (index == 0 and r() < 0.7) else c.pick(rng, c.USER_POOL)
    agent_response = c.GREETING if index == 0 else c.pick(rng, c.AGENT_POOL)
    if long:
        if r() < 0.5:
            user_input = c.long_text(rng)
        else:
            agent_response = c.long_text(rng)
    intents: tuple[str, ...] = ()
    roll = r()
    if roll < 0.6 and user_input:
        first = c.pick(rng, c.INTENTS)
        intents = (first,) if roll < 0.45 else (first, c.pick(rng, c.INTENTS))
    seconds = round(gap / US, 3)
    latency: float | dict[str, float] = seconds
    if latency_object:
        latency = {"asr": round(seconds * 0.15, 3), "llm": round(seconds * 0.7, 3), "tts": 0.05}
    agent_iso = iso(agent_us)
    metric_writes: list[tuple[str, str]] = []
    if r() < 0.5:
        metric_writes.append(("CALL_TURN", agent_iso))
    if r() < 0.12:
        name = c.pick(rng, c.DYNAMIC_METRICS) if r() < 0.6 else f"DYN_{int(r() * 40)}"
        metric_writes.append((name, str(int(r() * 11))))
    return Turn(
        user_input=user_input,
        user_input_dtmf=c.pick(rng, c.DTMF) if voice and r() < 0.05 else "",
        user_us=user_us,
        user_iso=iso(user_us),
        agent_response=agent_response,
        agent_us=agent_us,
        agent_iso=agent_iso,
        barge_in=voice and r() < 0.1,
        intents=intents,
        entities=c.entities(rng) if r() < 0.35 else [],
        is_ood=ood,
        is_silence=silence,
        translated_user_input=c.USER_TEXTS.get(user_input, ""),
        english_agent_response=c.AGENT_TEXTS.get(agent_response, ""),
        latency=latency,
        metric_writes=tuple(metric_writes),
        state_writes=c.state_write(rng, index) if r() < 0.45 else {},
    )
