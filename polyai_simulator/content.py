# ruff: noqa: RUF001  (look-alike characters such as en dashes are part of the awkward content)
"""The awkward material conversations are made of.

Loaders break on exactly this: unicode of every kind (accents, CJK, RTL, emoji with ZWJ and
modifiers, zero-width and combining marks), quotes, backslashes, newlines, tabs, CRLF, empty
strings, very long texts, and data-dependent keys whose value types differ between records.
"""

from __future__ import annotations

import random
from typing import Any, TypeVar

T = TypeVar("T")

ENVIRONMENTS = ("live",) * 8 + ("sandbox", "pre-release")
CHANNELS = ("VOICE-SIP",) * 6 + ("WEBCHAT",) * 3 + ("CHAT",)
VARIANTS = (
    ("var-main", "Main"),
    ("var-main", "Main"),
    ("var-b", "Variant B"),
    ("var-uni", "Ünïcode variant"),
    ("var-night", 'night/shift "v2"'),
)
AGENT_NUMBERS = ("+442079460000", "+14155550100", "+33184880000")
COUNTRY_CODES = (("+44", 10), ("+1", 10), ("+33", 9), ("+81", 10), ("+971", 9))
HANDOFF_REASONS = (
    "user_requested",
    "payment_issue",
    "out_of_scope",
    "repeated_ood",
    'caller asked for "a real person"',
)
HANDOFF_DESTINATIONS = ("reception", "billing desk", "Équipe FR", "+442079460999")
INTENTS = (
    "book_table",
    "cancel_booking",
    "opening_hours",
    "speak_to_human",
    "smalltalk",
    "payment",
    "réservation_modifier",
)
NAMES = ("Zoë", "José", "李雷", "محمد", "O'Brien", 'Dwayne "The Rock"', "Ana-María", "Łukasz", "")
DTMF = ("1", "2", "0", "1234#", "*9", "#")
END_REASONS = ("hangup", "handoff", "timeout", "Ende – Kunde aufgelegt")
DYNAMIC_METRICS = ("NPS", "CSAT", "REASON", "BOOKING_STATUS", "Zufriedenheit ✓")

# user text -> English translation ("" for English text: nothing to translate)
USER_TEXTS: dict[str, str] = {
    "I'd like to book a table for two tonight": "",
    "Bonjour, je voudrais réserver une table pour deux à 20h ce soir": (
        "Hello, I would like to book a table for two at 8pm tonight"
    ),
    "He said \"yes\" and then 'no' — can you check?": "",
    "Line one\nLine two\n\ttabbed line": "",
    "Back\\slash and C:\\Users\\zoë\\file.txt": "",
    "我想预订明天晚上七点的两人桌": "I want to book a table for two at 7pm tomorrow",
    "予約をキャンセルしたいです": "I would like to cancel my reservation",
    "مرحبا، أريد إلغاء الحجز رقم ١٢٣": "Hello, I want to cancel booking number 123",
    "שלום, אני צריך עזרה עם ההזמנה": "Hello, I need help with the booking",
    "Family 👨‍👩‍👧‍👦, flags 🇬🇧🇫🇷, thumbs 👍🏽 and 🤖": "",
    "Zero width a\u200bb, combining e\u0301 vs é": "",
    "Can I speak to a human please?": "",
    "what time do you open on sunday": "",
    "Windows line\r\nending": "",
    "order #12 عربى and English mixed": "order #12 Arabic and English mixed",
    "Ich möchte um 19:30 Uhr kommen – geht das?": "I would like to come at 7:30 pm – is that possible?",
    "yes": "",
    "no": "",
    "4": "",
    "": "",
}
USER_POOL = tuple(USER_TEXTS)

# agent text -> English version ("" when it already is English)
AGENT_TEXTS: dict[str, str] = {
    "Of course! For how many people?": "",
    "I'm sorry, I didn't catch that. Could you say it again?": "",
    "Let me transfer you to a colleague.": "",
    'Your booking reference is "AB-1234".\nAnything else?': "",
    "Merci ! À bientôt 👋": "Thank you! See you soon 👋",
    "我们明天晚上七点有空位。": "We have a table at 7pm tomorrow.",
    "تم تأكيد الحجز": "The booking is confirmed",
    "Press 1 for bookings,\t2 for opening hours.": "",
    "Our opening hours are 12:00–22:00, Monday to Sunday.": "",
    "The path is C:\\bookings\\today — I've noted it.": "",
    "": "",
}
AGENT_POOL = tuple(AGENT_TEXTS)
GREETING = "Hello! Thanks for calling Zoë's Bistro 🍝. How can I help you today?"

LONG_WORDS = (
    "lorem",
    "ipsum",
    "ünïcödé",
    "“quoted”",
    '"double"',
    "'single'",
    "new\nline",
    "🙂",
    "👩‍💻",
    "tab\there",
    "back\\slash",
    "中文",
    "עברית",
)


def pick(rng: random.Random, pool: tuple[T, ...]) -> T:
    # Indexing with random() is several times faster than rng.choice on CPython.
    return pool[int(rng.random() * len(pool))]


def phone(rng: random.Random) -> str:
    code, digits = pick(rng, COUNTRY_CODES)
    return code + str(rng.randrange(10 ** (digits - 1), 10**digits))


def long_text(rng: random.Random) -> str:
    size = 10_000 + int(rng.random() * 40_000)
    parts: list[str] = []
    length = 0
    while length < size:
        word = pick(rng, LONG_WORDS)
        parts.append(word)
        length += len(word) + 1
    return " ".join(parts)[:size]


def entities(rng: random.Random) -> list[dict[str, str | list[str]]]:
    """A list of objects, each name -> string or list of strings, names varying by turn."""
    found: list[dict[str, str | list[str]]] = []
    for _ in range(1 + int(rng.random() * 2)):
        roll = rng.random()
        if roll < 0.3:
            found.append({"party_size": str(1 + int(rng.random() * 12))})
        elif roll < 0.5:
            found.append({"date": ["2026-12-24", "2026-12-25"], "time": "20:00"})
        elif roll < 0.7:
            found.append({"name": pick(rng, NAMES)})
        elif roll < 0.85:
            found.append({f"custom_{int(rng.random() * 30)}": ["a", "b\\c", 'd"e']})
        else:
            found.append({"booking_ref": "AB-" + str(int(rng.random() * 10_000)), "note": ""})
    return found


def state_write(rng: random.Random, turn_index: int) -> dict[str, Any]:
    """What one turn writes to the dialogue state: data-dependent keys, nested values of all types."""
    roll = rng.random()
    if roll < 0.2:
        return {
            "booking": {
                "party_size": 1 + int(rng.random() * 8),
                "time": "20:00",
                "confirmed": rng.random() < 0.5,
                "deposit": None if rng.random() < 0.5 else round(rng.random() * 100, 2),
                "notes": 'window seat, "quiet" please\\thanks\n',
            }
        }
    if roll < 0.35:
        return {
            "customer": {
                "name": pick(rng, NAMES),
                "vip": rng.random() < 0.1,
                "phones": [phone(rng) for _ in range(int(rng.random() * 3))],
                "address": {"city": "São Paulo", "geo": {"lat": -23.55, "lng": -46.63}, "lines": []},
            }
        }
    if roll < 0.55:
        value: Any = pick(rng, (True, False, None, 3, 2.5, "x", "", [], {}))
        return {f"slot_{int(rng.random() * 50)}": value}
    if roll < 0.65:
        return {"flags": [True, None, 2, 3.5, "x", {"deep": [[], {}]}]}
    if roll < 0.75:
        order = f"order_{int(rng.random() * 100_000):05d}"
        return {order: {"items": [{"sku": "ÆØÅ-1", "qty": 2}], "total": 41.5, "paid": None}}
    if roll < 0.9:
        return {"attempts": turn_index + 1, "ärger_level": int(rng.random() * 5)}
    return {"lang": pick(rng, ("fr-FR", "en-GB", "ar-AE", "zh-CN")), "key with spaces": "v"}


def turn_metadata(
    index: int, intents: tuple[str, ...], user_input: str, agent_response: str
) -> dict[str, Any]:
    """`include_turn_metadata`: the layout is unpublished, so a plausible one with dynamic keys.

    Derived from the turn itself, so asking for it never changes any other field.
    """
    metadata: dict[str, Any] = {
        "model": "sim-llm-2026-08",
        "prompt_tokens": 180 + 7 * index + len(user_input) // 4,
        "completion_tokens": 12 + len(agent_response) // 4,
    }
    if intents:
        metadata["functions"] = [{"name": f"handle_{name}", "arguments": {"turn": index}} for name in intents]
    metadata[f"kb_doc_{index % 5}"] = {"score": round(0.5 + (index % 7) / 14, 3)}
    return metadata
