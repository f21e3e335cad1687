"""The settings' one declaration, PolyAISourceConfiguration: what reads it and what documents it.

Pure: no server; the source is never run.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dlt.common.configuration import is_secret_hint, resolve_configuration

from sources.polyai import ConfigurationError, polyai_source
from sources.polyai.config import PolyAISourceConfiguration

ROOT = Path(__file__).resolve().parents[2]
FIELDS = PolyAISourceConfiguration.get_resolvable_fields()
DEFAULTS = PolyAISourceConfiguration()
REQUIRED = {"api_key": "k" * 20, "account_id": "acc-1", "project_id": "proj-1"}
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def readme_table() -> dict[str, list[str]]:
    """Setting -> the backquoted defaults of its row in the README's configuration table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("setting", "---"):
            continue
        names = re.findall(r"`(\w+)`", cells[0])
        defaults = re.findall(r"`([^`]+)`", cells[1])
        for index, name in enumerate(names):
            rows[name] = defaults[index : index + 1] if len(defaults) == len(names) else defaults
    return rows


def config_toml() -> tuple[set[str], dict[str, Any]]:
    """The keys of `[sources.polyai]` in .dlt/config.toml, commented or not, and the set values."""
    text = (ROOT / ".dlt" / "config.toml").read_text(encoding="utf-8")
    section = text.split("[sources.polyai]\n", 1)[1].split("\n[", 1)[0]
    keys = set(re.findall(r"^#? ?(\w+) *=", section, flags=re.MULTILINE))
    return keys, tomllib.loads(text)["sources"]["polyai"]


def as_toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def resolved(**values: Any) -> PolyAISourceConfiguration:
    return resolve_configuration(
        PolyAISourceConfiguration(), sections=("sources", "polyai"), explicit_value={**REQUIRED, **values}
    )


def test_every_setting_is_in_the_readme_table_with_the_spec_default() -> None:
    table = readme_table()
    assert set(table) == set(FIELDS), "README table and PolyAISourceConfiguration differ"
    for name, shown in table.items():
        default = DEFAULTS[name]
        if default is None:
            assert shown == [], f"README shows a default for {name}, which has none"
        elif shown:
            assert shown == [as_toml(default)], name


def test_every_setting_is_in_config_toml_and_set_values_are_the_defaults() -> None:
    keys, values = config_toml()
    assert keys == set(FIELDS), "config.toml [sources.polyai] and PolyAISourceConfiguration differ"
    for name, value in values.items():
        assert value == DEFAULTS[name], f"config.toml sets {name} = {value!r}, not {DEFAULTS[name]!r}"
    assert not {"api_key", "pii_salt"} & set(values), "secrets belong in secrets.toml"


def test_the_source_takes_each_setting_by_name_with_its_default() -> None:
    parameters = inspect.signature(polyai_source).parameters
    for name in FIELDS:
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[name].default == DEFAULTS[name], name
    with pytest.raises(TypeError, match="limt"):
        polyai_source(limt=5)  # a misspelt setting fails, as with a written-out signature


def test_secrets_are_typed_secret_and_kept_out_of_repr() -> None:
    """dlt keeps secrets out of its trace by their type; configspec writes no repr of values."""
    assert is_secret_hint(FIELDS["api_key"]) and is_secret_hint(FIELDS["pii_salt"])
    config = resolved(pii_salt="salt-" * 8)
    assert "k" * 20 not in repr(config) and "salt-" not in repr(config)


def test_defaults_become_the_connector_settings() -> None:
    settings = resolved().connector_settings(now=NOW)
    assert settings.base_url == "https://api.us-1.platform.polyai.app"
    assert settings.start_date == NOW - timedelta(days=30)
    assert (settings.limit, settings.concurrency, settings.max_conversations_per_load) == (1000, 10, 50_000)
    assert settings.lookback == timedelta(minutes=15) and settings.max_pending_age == timedelta(hours=24)
    assert settings.window_span is None and settings.channels == ()
    assert (settings.connect_timeout, settings.read_timeout, settings.max_attempts) == (10, 120, 8)
    assert (settings.retry_budget, settings.max_request_seconds) == (200, 600)


def test_values_are_brought_to_one_form() -> None:
    config = resolved(
        account_id=" acc-1 ", channel="VOICE-SIP, WEBCHAT", window_hours=0, max_conversations_per_load=0
    )
    settings = config.connector_settings(now=NOW)
    assert settings.account_id == "acc-1" and settings.channels == ("VOICE-SIP", "WEBCHAT")
    assert settings.window_span is None and settings.max_conversations_per_load is None


def test_a_start_date_after_the_runs_now_is_refused_when_the_run_starts() -> None:
    config = resolved(start_date="2026-07-01T00:00:00Z")
    with pytest.raises(ConfigurationError, match="`start_date` is in the future"):
        config.connector_settings(now=NOW)


def test_a_bad_value_from_the_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**REQUIRED, "concurrency": "0"}.items():
        monkeypatch.setenv(f"SOURCES__POLYAI__{name.upper()}", value)
    with pytest.raises(ConfigurationError, match="`concurrency`") as raised:
        polyai_source()
    assert "SOURCES__POLYAI__CONCURRENCY" in str(raised.value)
