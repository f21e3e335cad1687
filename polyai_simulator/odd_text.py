"""Characters a hostile (or merely unusual) API sends in text: NUL and lone UTF-16 surrogates.

`SimConfig.odd_text` ("nul" or "lone_surrogate") puts them into every `odd_text_every`-th
conversation: a conversation text field, a turn text field, a JSON key and JSON values. NUL
is an ordinary JSON escape (`\\u0000`). A lone surrogate is valid JSON syntax (`\\ud800`) but
no character: no Python string serializes to it, so the view carries stand-ins that
`serialize` turns into the escapes.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

ODD_TEXT_MODES = ("", "nul", "lone_surrogate")
# Private-use stand-ins for the two lone surrogates, swapped for their escapes when serialized.
_HIGH, _LOW = "\U0010fffd", "\U0010fffc"
_ESCAPES = ((_HIGH.encode(), b"\\ud83d"), (_LOW.encode(), b"\\udc00"))


def odd_characters(mode: str) -> tuple[str, str]:
    """The two characters the mode sends (for lone surrogates: their stand-ins)."""
    return ("\x00", "\x00") if mode == "nul" else (_HIGH, _LOW)


def add_odd_text(record: dict[str, Any], mode: str) -> dict[str, Any]:
    first, second = odd_characters(mode)
    record["handoff_reason"] = f"odd{first}reason{second}"
    record["metrics"] = {**record["metrics"], f"ODD{first}KEY": f"v{second}"}
    record["state"] = {**record.get("state", {}), "note": [f"n{first}", {"deep": f"{second}x"}]}
    turns = record.get("turns") or []
    if turns:
        turns[0] = {**turns[0], "user_input": f"a{first}b{second}c {turns[0]['user_input'] or ''}"}
    return record


def serialize(record: dict[str, Any]) -> bytes:
    body = orjson.dumps(record)
    for stand_in, escape in _ESCAPES:
        body = body.replace(stand_in, escape)
    return body


def deserialize(body: bytes) -> Any:
    """orjson where it can; the standard library where the body has lone surrogates."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)
