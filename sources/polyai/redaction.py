"""Keep configured secrets (api_key, pii_salt) out of every message the connector builds.

A server may quote the key back (`The API key 'sk-…' is not valid`, a correlation id made
from it), and that text would reach the terminal, logs, exceptions and dlt's trace
(`trace.pickle`, `dlt pipeline … trace`). Errors redact the secrets when they are built;
the CLI redacts again whatever it prints or logs (`install_log_redaction`), whatever its source.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
# Shorter values cannot be told from ordinary words: masking them would garble every message
# while hiding nothing (a secret that short is no protection either).
MIN_SECRET_LENGTH = 4

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secrets(*values: str | None) -> None:
    """Values that no message may show from now on, in this process."""
    forms = {form for value in values if value for form in _forms(str(value))}
    with _lock:
        _secrets.update(forms)


def _forms(secret: str) -> set[str]:
    """The secret and how it looks in a URL or query string."""
    secret = secret.strip()
    if len(secret) < MIN_SECRET_LENGTH:
        return set()
    return {secret, quote(secret, safe=""), quote(secret)}


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every registered secret (and those in `secrets`) replaced by `***`."""
    with _lock:
        known = set(_secrets)
    for value in secrets:
        if value:
            known |= _forms(str(value))
    # Longest first: a secret that contains another is masked whole.
    for secret in sorted(known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_optional(text: str | None, secrets: Iterable[str | None] = ()) -> str | None:
    return None if text is None else redact(text, secrets)


def install_log_redaction() -> None:
    """Every log record of the process, whichever logger or handler, is redacted when made.

    A record factory rather than a handler filter: dlt adds its own handler later, when the
    pipeline is created.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return

    def make_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    make_record.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)
