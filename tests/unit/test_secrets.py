"""Registered secrets are masked in errors and in every logger's records (the runs:
tests/integration/test_secrets.py)."""

from __future__ import annotations

import logging
import pickle

import pytest

from sources.polyai import PolyAIAPIError
from sources.polyai.http.client import InvalidResponseError
from sources.polyai.redaction import MASK, install_log_redaction, redact, register_secrets


def test_errors_mask_registered_secrets_and_their_url_forms() -> None:
    register_secrets("key with/slash+plus")
    error = InvalidResponseError("id key%20with%2Fslash%2Bplus and key with/slash+plus")
    assert str(error) == f"id {MASK} and {MASK}"
    refusal = PolyAIAPIError(
        401, "https://x/v3/a/p", "E", "bad 'only-this-key'", "only-this-key", ("only-this-key",)
    )
    assert "only-this-key" not in str(refusal) and refusal.error_message == f"bad '{MASK}'"
    assert redact("short k stays") == "short k stays"
    copy = pickle.loads(pickle.dumps(refusal))  # as an orchestrator hands errors between processes
    assert str(copy) == str(refusal) and copy.status == 401


def test_log_records_are_masked_whichever_logger_made_them(caplog: pytest.LogCaptureFixture) -> None:
    register_secrets("logged-secret-value")
    install_log_redaction()
    with caplog.at_level(logging.INFO):
        logging.getLogger("sources.polyai.http.retries").info("header %s", "logged-secret-value")
        try:
            raise RuntimeError("boom logged-secret-value")
        except RuntimeError:
            logging.getLogger("elsewhere").exception("failed")
    text = caplog.text
    assert "logged-secret-value" not in text and f"header {MASK}" in text and f"boom {MASK}" in text
