"""The projects one source loads: each with its own key, region and filters, and its own state.

The `projects` setting lists them; an entry gives `project_id` and whichever of ENTRY_KEYS
differ from the top-level settings. Every check names the entry, `projects[1] (proj-b)`, and
never shows a key: an entry's `api_key` is masked (redaction) before any check can fail.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from .config import (
    ConfigurationError,
    ConnectorSettings,
    choice,
    parse_channels,
    require,
    resolve_base_url,
)
from .settings import API_VERSIONS, CLIENT_ENVS

if TYPE_CHECKING:
    from .config import PolyAISourceConfiguration

# What an entry may give; what it leaves out comes from the top-level settings.
ENTRY_KEYS: Final = (
    "project_id",
    "api_key",
    "account_id",
    "region",
    "base_url",
    "client_env",
    "api_version",
    "channel",
    "variant_id",
    "variant_name",
)
SETTING: Final = "projects"
EXAMPLE: Final = (
    'SOURCES__POLYAI__PROJECTS=\'[{"project_id": "proj-a", "api_key": "...", "region": "euw-1"}]\''
)
WHERE: Final = (
    "as [[sources.polyai.projects]] tables in .dlt/secrets.toml, or a JSON list in "
    "SOURCES__POLYAI__PROJECTS; not config.toml, entries carry keys"
)
IN_ENTRY: Final = (
    "in the entry, in .dlt/secrets.toml [[sources.polyai.projects]] or SOURCES__POLYAI__PROJECTS"
)
# Finds the keys in a value that is not valid JSON, so that they are masked all the same.
_KEY_IN_TEXT: Final = re.compile(r"""["']?api_key["']?\s*[:=]\s*["']([^"']+)["']""")


class ProjectEntryError(ConfigurationError):
    """One entry of `projects` is wrong (or two are the same project): the message names it."""

    def __init__(self, label: str, message: str) -> None:
        self.setting = SETTING
        self.label = label
        ValueError.__init__(self, f"{label}: {message}")

    @classmethod
    def of(cls, label: str, error: ConfigurationError) -> ProjectEntryError:
        """`error`, raised by a check of one entry's values, told of that entry."""
        return cls(label, f"setting `{error.setting}` {error.problem}. Example: {error.example} ({IN_ENTRY})")


@dataclass(frozen=True)
class ProjectSettings:
    """One project as a run reads it.

    `label` names it in messages (`proj-456`, or `projects[1] (proj-b)` for an entry of the
    `projects` setting); `state_key` names its part of the source state, and is stable for as
    long as the project, its region and its environment stay the same.
    """

    label: str
    state_key: str
    connector: ConnectorSettings


@dataclass(frozen=True)
class ProjectEntry:
    """One entry of `projects`, as given: only the keys it sets (all of them ENTRY_KEYS)."""

    index: int
    values: Mapping[str, Any]

    @property
    def project_id(self) -> str:
        return str(self.values["project_id"])

    @property
    def label(self) -> str:
        return f"projects[{self.index}] ({self.project_id})"

    def __repr__(self) -> str:
        # The values may hold a key.
        return f"ProjectEntry({self.label})"


def state_key(project_id: str, region: str, client_env: str) -> str:
    """What one project's state is filed under: a project is its id, its region and its environment."""
    return f"{region}/{project_id}/{client_env}"


def parse_projects(value: object) -> list[ProjectEntry]:
    """The entries of `projects`, given as a list (TOML's array of tables) or as JSON text (the env).

    Unset, empty text and an empty list are no entries. Checks the shape: a list of tables,
    each with a `project_id` and no key outside ENTRY_KEYS, keys and ids as text.
    """
    if isinstance(value, str):
        value = _json_list(value)
    if value is None or value == []:
        return []
    if not isinstance(value, list):
        raise ConfigurationError(
            SETTING, f"is not a list of projects (it is {type(value).__name__})", EXAMPLE, WHERE
        )
    return [_entry(index, item) for index, item in enumerate(value)]


def _json_list(text: str) -> object:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        # Not the text itself, nor the excerpt around the error: either may show a key.
        raise ConfigurationError(
            SETTING,
            f"is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})",
            EXAMPLE,
            WHERE,
        ) from None


def _entry(index: int, item: object) -> ProjectEntry:
    label = f"projects[{index}]"
    if not isinstance(item, Mapping):
        raise ProjectEntryError(label, f"is not a table of settings (it is {type(item).__name__}); {WHERE}")
    unknown = [str(key) for key in item if key not in ENTRY_KEYS]
    if unknown:
        raise ProjectEntryError(label, _unknown_keys_message(unknown))
    project_id = item.get("project_id")
    if not isinstance(project_id, str) or not project_id.strip():
        shown = "" if project_id is None else f" ({project_id!r})"
        raise ProjectEntryError(label, f'`project_id` is missing{shown}. Example: project_id = "proj-a"')
    entry = ProjectEntry(index, {"project_id": project_id.strip()})
    values: dict[str, Any] = {}
    for key, given in item.items():
        if given is None:
            continue  # JSON's null: not given
        if not isinstance(given, (str, list) if key == "channel" else str):
            shown = "" if key == "api_key" else f" ({given!r})"
            raise ProjectEntryError(entry.label, f"`{key}` is not text{shown}")
        values[str(key)] = str(given) if isinstance(given, str) else [str(part) for part in given]
    return ProjectEntry(index, {**values, "project_id": entry.project_id})


def _unknown_keys_message(unknown: list[str]) -> str:
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, ENTRY_KEYS, n=1)
        hints.append(f"`{key}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
    return f"unknown key {', '.join(hints)}; an entry takes {', '.join(ENTRY_KEYS)}"


def project_api_keys(value: object) -> list[str]:
    """Every `api_key` in a value of `projects`, whatever its shape: never raises.

    For masking, before the value is checked: also from text that is not valid JSON.
    """
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except ValueError:
            return [str(key) for key in _KEY_IN_TEXT.findall(text)]
    if not isinstance(value, Iterable) or isinstance(value, (str, bytes, Mapping)):
        return []
    return [str(item["api_key"]) for item in value if isinstance(item, Mapping) and item.get("api_key")]


def entry_fields(entry: ProjectEntry, top: PolyAISourceConfiguration) -> tuple[str, dict[str, Any]]:
    """The entry's region, and its fields of ConnectorSettings, its values over `top`'s, checked.

    An entry that gives `region` or `base_url` gives its host: its own `base_url`, else its
    region's, never the top-level `base_url` (that one is the host of the top-level region).
    One that gives `variant_id` or `variant_name` replaces the top-level variant filter whole.
    """
    try:
        return _entry_fields(entry.values, top)
    except ConfigurationError as error:
        raise ProjectEntryError.of(entry.label, error) from None


def _entry_fields(given: Mapping[str, Any], top: PolyAISourceConfiguration) -> tuple[str, dict[str, Any]]:
    region = given.get("region", top.region)
    if "region" in given or "base_url" in given:
        base_url = resolve_base_url(region, given.get("base_url"))
    else:
        base_url = resolve_base_url(top.region, top.base_url)
    variants = ("variant_id", "variant_name")
    variant_id, variant_name = (
        (given.get("variant_id"), given.get("variant_name"))
        if any(name in given for name in variants)
        else (top.variant_id, top.variant_name)
    )
    if variant_id and variant_name:
        raise ConfigurationError(
            "variant_name", "cannot be set together with `variant_id`; set one of them", 'variant_id = "v-1"'
        )
    missing = "is missing: give it in the entry or as the top-level setting"
    account_id = given.get("account_id", top.account_id)
    return region, {
        "api_key": require("api_key", given.get("api_key", top.api_key), 'api_key = "..."', missing),
        "account_id": require("account_id", account_id, 'account_id = "acc-123"', missing),
        "project_id": given["project_id"],
        "base_url": base_url,
        "api_version": choice("api_version", given.get("api_version", top.api_version), API_VERSIONS),
        "client_env": choice("client_env", given.get("client_env", top.client_env), CLIENT_ENVS),
        "channels": parse_channels(given.get("channel", top.channel)),
        "variant_id": variant_id or None,
        "variant_name": variant_name or None,
    }


def check_entries(entries: list[ProjectEntry], top: PolyAISourceConfiguration) -> None:
    """Every entry's values, and no project (id, region, environment) given twice."""
    seen: dict[str, str] = {}
    for entry in entries:
        region, fields = entry_fields(entry, top)
        key = state_key(entry.project_id, region, fields["client_env"])
        if key in seen:
            raise ProjectEntryError(
                entry.label,
                f"the same project, region and environment ({key}) as {seen[key]}; give each project once",
            )
        seen[key] = entry.label


def entry_projects(
    entries: list[ProjectEntry], top: PolyAISourceConfiguration, base: ConnectorSettings
) -> list[ProjectSettings]:
    """The entries as projects to load, in their order; `base`: the top-level connector settings."""
    projects = []
    for entry in entries:
        region, fields = entry_fields(entry, top)
        connector = replace(base, **fields)
        key = state_key(connector.project_id, region, connector.client_env)
        projects.append(ProjectSettings(label=entry.label, state_key=key, connector=connector))
    return projects
