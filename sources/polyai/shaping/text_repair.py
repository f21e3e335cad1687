"""Characters a destination cannot hold, replaced explicitly in the page body, and counted.

Two JSON escapes decode to text that some or all destinations cannot store:

- a lone UTF-16 surrogate (`\\ud800` not followed by a low surrogate): valid JSON syntax, but
  no Unicode character. orjson and msgspec refuse the whole body, and no destination's text
  or JSON type (all UTF-8) can hold it, so it is replaced wherever it appears;
- NUL (`\\u0000`): a character, kept exactly where the destination stores it (DuckDB,
  BigQuery, Snowflake), replaced where it cannot (PostgreSQL: `text` drops it silently and
  `jsonb` refuses it, failing every later load on the same rows).

Both are replaced by U+FFFD, the Unicode replacement character, rather than removed: the
change stays visible in the loaded text, and "a\\x00b" does not become the different, valid
text "ab". The replacement is made in the body's bytes before decoding, so both decoders (the
typed fast path and the general path) read the same repaired text, and JSON columns keep the
JSON text as sent except for the replaced escapes. Only bodies that contain such an escape
pay for it: lone surrogates are looked for once a body fails to decode, NUL only for
destinations that cannot hold it.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from typing import Any

import orjson

# Destinations measured to lose or refuse NUL (tests/integration/test_text_exactness.py).
DESTINATIONS_WITHOUT_NUL = frozenset({"postgres"})
REPLACEMENT = b"\\ufffd"
NUL_ESCAPE = b"\\u0000"
# One JSON escape at a time, left to right, so that an escaped backslash (`\\\\u0000` is the
# text `\u0000`, not NUL) is stepped over: a valid surrogate pair, NUL, a lone surrogate.
_ESCAPE = re.compile(
    rb"\\(?:\\|u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(u0000)|(u[dD][89a-fA-F][0-9a-fA-F]{2}))"
)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def destination_keeps_nul(destination: str | None) -> bool:
    """Whether the destination stores U+0000 in text and JSON as it is (unknown ones: assumed)."""
    return destination not in DESTINATIONS_WITHOUT_NUL


def replace_escapes(content: bytes, keep_nul: bool) -> tuple[bytes, int]:
    """The body with each lone surrogate escape (and NUL's, unless kept) as `\\ufffd`, and how many."""
    replaced = 0

    def replace(match: re.Match[bytes]) -> bytes:
        nonlocal replaced
        nul, lone = match.group(1), match.group(2)
        if lone is not None or (nul is not None and not keep_nul):
            replaced += 1
            return REPLACEMENT
        return match.group(0)

    fixed = _ESCAPE.sub(replace, content)
    return fixed, replaced


def odd_text(value: Any, keep_nul: bool) -> bool:
    """Whether a decoded JSON value (keys included) holds a character that is replaced."""
    if isinstance(value, str):
        return bool(_LONE_SURROGATE.search(value)) or (not keep_nul and "\x00" in value)
    if isinstance(value, dict):
        return any(odd_text(key, keep_nul) or odd_text(item, keep_nul) for key, item in value.items())
    if isinstance(value, list):
        return any(odd_text(item, keep_nul) for item in value)
    return False


def columns_changed(content: bytes, keep_nul: bool) -> dict[str, Counter[str]]:
    """Per conversation id, per `table.column`, its values in this body that hold a replaced character.

    Read with the standard library's parser, which keeps lone surrogates; only bodies that
    needed a replacement are read this way.
    """
    changed: dict[str, Counter[str]] = {}
    try:
        body = json.loads(content)
    except ValueError:
        return changed
    conversations = body.get("conversations") if isinstance(body, dict) else None
    for conversation in conversations if isinstance(conversations, list) else []:
        if not isinstance(conversation, dict) or not _may_be_odd(conversation, keep_nul):
            continue
        columns: Counter[str] = Counter()
        for name, value in conversation.items():
            if name == "turns" and isinstance(value, list):
                for turn in value:
                    if isinstance(turn, dict):
                        columns.update(f"turns.{k}" for k, v in turn.items() if odd_text(v, keep_nul))
            elif odd_text(value, keep_nul):
                columns[f"conversations.{name}"] += 1
        if columns:
            changed[str(conversation.get("id"))] = columns
    return changed


def _may_be_odd(conversation: dict[str, Any], keep_nul: bool) -> bool:
    """A quick look, so that only conversations with a replaced character are walked value by value."""
    try:
        text = orjson.dumps(conversation)
    except TypeError:  # a lone surrogate (orjson refuses it), or an integer beyond 64 bits
        return True
    return not keep_nul and NUL_ESCAPE in text


class TextRepair:
    """The replacements of one run: what the destination keeps, and what was replaced where.

    Counted per conversation, its latest reading: a conversation read twice in a run (offset
    pages overlap, a re-pull) is one row, whose values are counted once. Shared by the threads
    that decode pages.
    """

    def __init__(self, keep_nul: bool = True) -> None:
        self.keep_nul = keep_nul
        self._replaced: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()

    def needs_repair(self, content: bytes, decoded: bool) -> bool:
        """A body that did not decode may hold a lone surrogate; one that did, a NUL to replace."""
        return not decoded or (not self.keep_nul and NUL_ESCAPE in content)

    def repair(self, content: bytes) -> bytes | None:
        """The body with its replacements made, or None when there was nothing to replace."""
        fixed, count = replace_escapes(content, self.keep_nul)
        return fixed if count else None

    def record(self, original: bytes) -> None:
        """Counts the values of a repaired body that was decoded and will be loaded."""
        changed = columns_changed(original, self.keep_nul)
        with self._lock:
            self._replaced.update(changed)

    def summary(self) -> dict[str, int]:
        """`table.column` -> values replaced, for the run summary and its warning."""
        with self._lock:
            total = sum(self._replaced.values(), Counter())
        return dict(sorted(total.items()))
