"""The `projects` setting: entries parsed, inheriting the top-level settings, each check naming its entry.

Pure: resolved by dlt from explicit values and the environment; no server, the source never runs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from dlt.common.configuration import is_secret_hint, resolve_configuration
from dlt.common.configuration.exceptions import ConfigFieldMissingException

from sources.polyai import ConfigurationError
from sources.polyai.config import PolyAISourceConfiguration
from sources.polyai.projects import ProjectEntryError, parse_projects, project_api_keys
from sources.polyai.redaction import MASK, redact

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TOP = {"api_key": "top-key-" + "t" * 12, "account_id": "acc-top"}


def resolved(projects: Any, **values: Any) -> PolyAISourceConfiguration:
    return resolve_configuration(
        PolyAISourceConfiguration(),
        sections=("sources", "polyai"),
        explicit_value={**TOP, "projects": projects, **values},
    )


def refused(projects: Any, **values: Any) -> str:
    with pytest.raises(ConfigurationError) as raised:
        resolved(projects, **values)
    return str(raised.value)


def test_the_field_is_secret_typed_so_dlt_traces_no_value_of_it() -> None:
    assert is_secret_hint(PolyAISourceConfiguration.get_resolvable_fields()["projects"])


def test_entries_inherit_what_they_leave_out_in_list_order() -> None:
    config = resolved(
        [
            {
                "project_id": "proj-b",
                "api_key": "key-of-b-" + "b" * 10,
                "region": "euw-1",
                "client_env": "sandbox",
            },
            {"project_id": "proj-a", "account_id": "acc-a", "channel": ["WEBCHAT"], "api_version": "v2"},
        ],
        channel="VOICE-SIP",
        variant_name="Main",
        limit=50,
    )
    first, second = config.project_settings(NOW)
    assert (first.label, second.label) == ("projects[0] (proj-b)", "projects[1] (proj-a)")
    assert (first.state_key, second.state_key) == ("euw-1/proj-b/sandbox", "us-1/proj-a/live")
    b, a = first.connector, second.connector
    assert (b.api_key, b.account_id, b.project_id) == ("key-of-b-" + "b" * 10, "acc-top", "proj-b")
    assert (a.api_key, a.account_id, a.project_id) == (TOP["api_key"], "acc-a", "proj-a")
    assert b.base_url == "https://api.euw-1.platform.polyai.app" and a.base_url.startswith(
        "https://api.us-1."
    )
    assert (b.channels, a.channels) == (("VOICE-SIP",), ("WEBCHAT",))
    assert (b.api_version, a.api_version) == ("v3", "v2")
    assert b.variant_name == a.variant_name == "Main"
    assert b.limit == a.limit == 50 and b.start_date == a.start_date


def test_an_entrys_region_gives_its_host_over_the_top_level_base_url() -> None:
    config = resolved(
        [
            {"project_id": "proj-a"},
            {"project_id": "proj-b", "region": "uk-1"},
            {"project_id": "proj-c", "base_url": "https://eu-proxy.example.com/"},
        ],
        base_url="http://127.0.0.1:9000",
    )
    hosts = [project.connector.base_url for project in config.project_settings(NOW)]
    assert hosts == [
        "http://127.0.0.1:9000",
        "https://api.uk-1.platform.polyai.app",
        "https://eu-proxy.example.com",
    ]


def test_an_entrys_variant_replaces_the_top_level_filter_whole() -> None:
    config = resolved(
        [{"project_id": "proj-a", "variant_id": "v-1"}, {"project_id": "proj-b"}], variant_name="Main"
    )
    a, b = (project.connector for project in config.project_settings(NOW))
    assert (a.variant_id, a.variant_name) == ("v-1", None)
    assert (b.variant_id, b.variant_name) == (None, "Main")


def test_without_projects_the_single_project_loads_as_before() -> None:
    (project,) = resolved(None, project_id="proj-456").project_settings(NOW)
    assert (project.label, project.state_key) == ("proj-456", "us-1/proj-456/live")
    with pytest.raises(ConfigFieldMissingException) as missing:
        resolved([])  # empty: no entries, so the top-level project_id is required again
    assert missing.value.fields == ["project_id"]


def test_with_projects_no_top_level_project_id_key_or_account_is_needed() -> None:
    entries = [{"project_id": "proj-a", "api_key": "key-of-a-" + "a" * 10, "account_id": "acc-a"}]
    config = resolve_configuration(
        PolyAISourceConfiguration(), sections=("sources", "polyai"), explicit_value={"projects": entries}
    )
    (project,) = config.project_settings(NOW)
    assert project.connector.api_key == "key-of-a-" + "a" * 10


def test_a_key_or_account_neither_entry_nor_top_level_gives_is_named_with_the_entry() -> None:
    for setting in ("api_key", "account_id"):
        entries = [{"project_id": "proj-a", "api_key": "key-of-a-" + "a" * 10, "account_id": "acc-a"}]
        entries.append({"project_id": "proj-b", **{k: v for k, v in entries[0].items() if k != setting}})
        entries[1]["project_id"] = "proj-b"
        with pytest.raises(ProjectEntryError) as raised:
            resolve_configuration(
                PolyAISourceConfiguration(),
                sections=("sources", "polyai"),
                explicit_value={"projects": entries},
            )
        assert str(raised.value).startswith(f"projects[1] (proj-b): setting `{setting}` is missing: give it")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"region": "eu-west-1"}, "setting `region` is 'eu-west-1', not one of us-1, uk-1, euw-1"),
        ({"api_version": "v4"}, "setting `api_version` is 'v4', not one of v1, v2, v3"),
        ({"client_env": "prod"}, "setting `client_env` is 'prod', not one of sandbox, pre-release, live"),
        ({"base_url": "ftp://proxy"}, "setting `base_url` is not an http(s) URL ('ftp://proxy')"),
        ({"variant_id": "v-1", "variant_name": "Main"}, "setting `variant_name` cannot be set together"),
        ({"region": 1}, "`region` is not text (1)"),
        ({"channel": 5}, "`channel` is not text (5)"),
    ],
)
def test_each_check_applies_per_entry_and_names_it(entry: dict[str, Any], message: str) -> None:
    text = refused([{"project_id": "proj-a"}, {"project_id": "proj-b", **entry}])
    assert text.startswith("projects[1] (proj-b): ")
    assert message in text, text


def test_an_entry_without_project_id_or_not_a_table_is_named_by_its_index() -> None:
    assert refused([{"project_id": "proj-a"}, {"region": "uk-1"}]).startswith(
        "projects[1]: `project_id` is missing. Example"
    )
    assert refused([{"project_id": " "}]).startswith("projects[0]: `project_id` is missing (' ')")
    assert refused([{"project_id": 7}]).startswith("projects[0]: `project_id` is missing (7)")
    assert refused(["proj-a"]).startswith("projects[0]: is not a table of settings (it is str)")


def test_an_unknown_key_is_refused_by_name_with_the_likely_one() -> None:
    text = refused([{"projet_id": "proj-a", "api_key": "key-of-a-" + "a" * 10}])
    assert text.startswith("projects[0]: unknown key `projet_id` (did you mean `project_id`?)")
    assert "`colour`" in refused([{"project_id": "proj-a", "colour": "red"}])


def test_the_same_project_region_and_environment_twice_is_refused_naming_both() -> None:
    text = refused(
        [{"project_id": "proj-a"}, {"project_id": "proj-b"}, {"project_id": "proj-a", "region": "us-1"}]
    )
    assert text.startswith(
        "projects[2] (proj-a): the same project, region and environment (us-1/proj-a/live)"
    )
    assert "as projects[0] (proj-a)" in text
    other_region = resolved([{"project_id": "proj-a"}, {"project_id": "proj-a", "region": "uk-1"}])
    assert [p.state_key for p in other_region.project_settings(NOW)] == [
        "us-1/proj-a/live",
        "uk-1/proj-a/live",
    ]


def test_the_environments_json_list_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [{"project_id": "proj-a", "api_key": "env-key-of-a-" + "a" * 8, "region": "us-1"}]
    entries.append({"project_id": "proj-b", "api_key": "env-key-of-b-" + "b" * 8, "region": "euw-1"})
    monkeypatch.setenv("SOURCES__POLYAI__PROJECTS", json.dumps(entries))
    monkeypatch.setenv("SOURCES__POLYAI__ACCOUNT_ID", "acc-env")
    config = resolve_configuration(PolyAISourceConfiguration(), sections=("sources", "polyai"))
    a, b = config.project_settings(NOW)
    assert (a.label, b.state_key, b.connector.api_key) == (
        "projects[0] (proj-a)",
        "euw-1/proj-b/live",
        entries[1]["api_key"],
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            '[{"project_id": "proj-a", "api_key": "bad-json-key-123456",}]',
            "is not valid JSON (Expecting property",
        ),
        (
            '{"project_id": "proj-a", "api_key": "not-a-list-key-123456"}',
            "is not a list of projects (it is dict)",
        ),
        ('"proj-a"', "is not a list of projects (it is str)"),
    ],
)
def test_a_value_that_is_no_list_is_refused_naming_the_setting_without_the_key(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("SOURCES__POLYAI__PROJECTS", value)
    with pytest.raises(ConfigurationError) as raised:
        resolve_configuration(PolyAISourceConfiguration(), sections=("sources", "polyai"), explicit_value=TOP)
    text = str(raised.value)
    assert text.startswith(f"Setting `projects` {problem}"), text
    assert "SOURCES__POLYAI__PROJECTS" in text and "config.toml [" not in text
    assert "key-123456" not in text


def test_every_entrys_key_is_masked_before_any_check_can_fail() -> None:
    for top_level_project in ({}, {"project_id": "proj-top"}):  # dlt resolves them two ways
        key = f"masked-before-checks-{len(top_level_project)}-" + "m" * 8
        refused([{"project_id": "proj-a", "api_key": key, "region": "nowhere"}], **top_level_project)
        assert redact(f"quoted {key}") == f"quoted {MASK}"
    broken = "unparsable-json-key-" + "u" * 8
    with pytest.raises(ConfigurationError):
        parse_projects(f'[{{"project_id": "p", "api_key": "{broken}"')
    assert project_api_keys(f'[{{"project_id": "p", "api_key": "{broken}"') == [broken]
    assert project_api_keys(None) == project_api_keys(5) == project_api_keys({"api_key": "x"}) == []


def test_an_entry_value_of_the_wrong_type_is_refused_without_showing_a_key() -> None:
    text = refused([{"project_id": "proj-a", "api_key": 123456789}])
    assert text == "projects[0] (proj-a): `api_key` is not text" and "123456789" not in text


def test_the_command_masks_the_entries_keys_it_finds_in_dlts_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.polyai_pipeline import register_configured_secrets

    key = "configured-entry-key-" + "c" * 8
    monkeypatch.setenv("SOURCES__POLYAI__PROJECTS", json.dumps([{"project_id": "proj-a", "api_key": key}]))
    register_configured_secrets()
    assert redact(key) == MASK
