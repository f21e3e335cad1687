"""Personal data options: hash or drop phone numbers, redact transcripts and state values by key.

All off by default. Pure functions over one conversation dict, applied before rows are shaped,
so nothing personal that an option removes reaches dlt's files or the destination.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..settings import TURN_TEXT_FIELDS

PHONE_FIELDS = ("from_number", "to_number")
# Built-in state keys that hold the same phone numbers as from_number / to_number.
PHONE_STATE_KEYS = ("from_", "to")
REDACTED = "[redacted]"
PHONE_MODES = ("keep", "hash", "drop")


@dataclass(frozen=True)
class PrivacyRules:
    phone_numbers: str = "keep"  # keep | hash | drop
    salt: str = ""
    redact_transcripts: bool = False
    redact_state_keys: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return self.phone_numbers != "keep" or self.redact_transcripts or bool(self.redact_state_keys)

    def __repr__(self) -> str:
        # The salt is a secret: never in logs or tracebacks.
        return f"PrivacyRules(phone_numbers={self.phone_numbers!r}, transcripts={self.redact_transcripts})"


def hash_value(value: str, salt: str) -> str:
    """Stable keyed hash: the same number gives the same value across runs, so joins still work."""
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()


def _phone(value: Any, rules: PrivacyRules) -> Any:
    if not isinstance(value, str) or value == "":
        return value
    return hash_value(value, rules.salt) if rules.phone_numbers == "hash" else None


def redact_keys(value: Any, keys: frozenset[str]) -> Any:
    """A copy of a nested value with the values under any of `keys`, at any depth, redacted."""
    if isinstance(value, dict):
        return {k: (REDACTED if k in keys else redact_keys(v, keys)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_keys(item, keys) for item in value]
    return value


def apply_privacy(conversation: dict[str, Any], rules: PrivacyRules) -> dict[str, Any]:
    if not rules.active:
        return conversation
    result = dict(conversation)
    state = result.get("state")
    if rules.phone_numbers != "keep":
        for name in PHONE_FIELDS:
            if name in result:
                result[name] = _phone(result[name], rules)
        if isinstance(state, dict):
            state = {k: (_phone(v, rules) if k in PHONE_STATE_KEYS else v) for k, v in state.items()}
    if rules.redact_state_keys and state is not None:
        state = redact_keys(state, rules.redact_state_keys)
    if "state" in result:
        result["state"] = state
    if rules.redact_transcripts:
        result["turns"] = [_redact_turn(turn) for turn in result.get("turns") or []]
    return result


def _redact_turn(turn: dict[str, Any]) -> dict[str, Any]:
    redacted = dict(turn)
    for name in TURN_TEXT_FIELDS:
        if redacted.get(name):
            redacted[name] = REDACTED
    return redacted


def build_privacy_rules(
    phone_numbers: str,
    salt: str | None,
    redact_transcripts: bool,
    redact_state_keys: Iterable[str] | str | None,
) -> PrivacyRules:
    from ..config import ConfigurationError

    if phone_numbers not in PHONE_MODES:
        raise ConfigurationError(
            "phone_numbers",
            f"is {phone_numbers!r}, not one of {', '.join(PHONE_MODES)}",
            'phone_numbers = "hash"',
        )
    if phone_numbers == "hash" and not salt:
        raise ConfigurationError(
            "pii_salt",
            "is needed to hash phone numbers (a long random secret; keep it: changing it changes every hash)",
            'pii_salt = "<32+ random characters>" in .dlt/secrets.toml',
        )
    if isinstance(redact_state_keys, str):
        redact_state_keys = [key.strip() for key in redact_state_keys.split(",") if key.strip()]
    return PrivacyRules(
        phone_numbers=phone_numbers,
        salt=salt or "",
        redact_transcripts=bool(redact_transcripts),
        redact_state_keys=frozenset(redact_state_keys or ()),
    )
