"""Personal data options, alone."""

from __future__ import annotations

import pytest

from sources.polyai.config import ConfigurationError
from sources.polyai.shaping.privacy import REDACTED, apply_privacy, build_privacy_rules, hash_value


def conversation() -> dict:
    return {
        "id": "CA1",
        "from_number": "+447700900123",
        "to_number": "+442079460000",
        "state": {
            "from_": "+447700900123",
            "to": "+442079460000",
            "customer": {"name": "Ana", "dob": "1990"},
        },
        "turns": [{"user_input": "my name is Ana", "agent_response": "Hi Ana", "user_input_dtmf": ""}],
    }


def test_off_by_default_changes_nothing() -> None:
    rules = build_privacy_rules("keep", None, False, None)
    original = conversation()
    assert apply_privacy(original, rules) == conversation()


def test_hashing_is_salted_stable_and_covers_state_builtins() -> None:
    rules = build_privacy_rules("hash", "salt-1", False, None)
    first = apply_privacy(conversation(), rules)
    second = apply_privacy(conversation(), rules)
    assert first["from_number"] == second["from_number"] == hash_value("+447700900123", "salt-1")
    assert first["from_number"] != hash_value("+447700900123", "salt-2")
    assert first["state"]["from_"] == first["from_number"], "joins between state and columns still work"
    assert "+447700900123" not in repr(first)


def test_drop_removes_numbers() -> None:
    dropped = apply_privacy(conversation(), build_privacy_rules("drop", None, False, None))
    assert dropped["from_number"] is None and dropped["state"]["to"] is None


def test_transcripts_and_state_keys_are_redacted() -> None:
    rules = build_privacy_rules("keep", None, True, "name, dob")
    redacted = apply_privacy(conversation(), rules)
    turn = redacted["turns"][0]
    assert turn["user_input"] == REDACTED and turn["agent_response"] == REDACTED
    assert turn["user_input_dtmf"] == "", "empty text stays empty"
    assert redacted["state"]["customer"] == {"name": REDACTED, "dob": REDACTED}
    assert conversation()["turns"][0]["user_input"] == "my name is Ana"


def test_hashing_without_salt_is_a_named_setting_error() -> None:
    with pytest.raises(ConfigurationError, match="pii_salt"):
        build_privacy_rules("hash", None, False, None)
    with pytest.raises(ConfigurationError, match="phone_numbers"):
        build_privacy_rules("encrypt", "s", False, None)
