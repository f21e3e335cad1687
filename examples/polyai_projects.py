"""The `projects` setting for the fan-out examples: one pipeline per PolyAI project.

Each entry of `sources.polyai.projects` holds `project_id` and, optionally, any of the source's
own keyword settings (`api_key`, `account_id`, `region`, `base_url`, `client_env`, ...), so
`polyai_source(projects=[entry])` loads that one project, the settings the entry leaves out coming from
dlt's config as usual. In `.dlt/secrets.toml`:

    [[sources.polyai.projects]]
    project_id = "proj-a"
    api_key = "..."

or as JSON text in `SOURCES__POLYAI__PROJECTS`. Nothing here prints or returns an entry's key
except to the caller that builds the source.

Airflow: copy this file next to the DAG file (the DAGs folder is on Airflow's import path).
Dagster: run from the repository root, which dagster puts on the import path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import dlt

SETTING = "sources.polyai.projects"
PIPELINE_PREFIX = "polyai_"
T = TypeVar("T")


class ProjectsSettingError(ValueError):
    """The `projects` setting is missing or malformed; the message never holds a key."""


def projects_configured() -> bool:
    """Whether `sources.polyai.projects` is set at all (a malformed value still counts)."""
    return dlt.secrets.get(SETTING) is not None


def project_entries() -> list[dict[str, Any]]:
    """The entries of `sources.polyai.projects`, each a dict with at least `project_id`."""
    value = dlt.secrets.get(SETTING)
    if value is None:
        raise ProjectsSettingError(
            f"`{SETTING}` is not set: add [[sources.polyai.projects]] tables to .dlt/secrets.toml "
            "or a JSON list to SOURCES__POLYAI__PROJECTS"
        )
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            # The position only: the text may hold keys.
            raise ProjectsSettingError(f"`{SETTING}` is not a JSON list (at character {error.pos})") from None
    if not isinstance(value, list) or not value:
        raise ProjectsSettingError(f"`{SETTING}` must be a non-empty list of tables")
    entries = [plain_entry(index, entry) for index, entry in enumerate(value)]
    names = [pipeline_name(entry["project_id"]) for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ProjectsSettingError(
            f"`{SETTING}`: several entries would share the pipeline {', '.join(duplicates)} "
            "(project ids must differ after lower-casing and replacing other characters by '_')"
        )
    return entries


def plain_entry(index: int, entry: Any) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise ProjectsSettingError(f"`{SETTING}[{index}]` is not a table")
    plain = {str(key): value for key, value in entry.items()}
    project_id = plain.get("project_id")
    if not isinstance(project_id, str) or not project_id.strip():
        raise ProjectsSettingError(f"`{SETTING}[{index}]` has no project_id")
    return plain


def project_ids() -> list[str]:
    """The project ids alone: safe to hand to a scheduler (XCom, partition keys, logs)."""
    return [entry["project_id"] for entry in project_entries()]


def project_entry(project_id: str) -> dict[str, Any]:
    """The entry of one project, looked up again where the load runs (keys stay off the scheduler)."""
    for entry in project_entries():
        if entry["project_id"] == project_id:
            return entry
    raise ProjectsSettingError(f"`{SETTING}` has no entry with project_id {project_id!r}")


def project_source(project_id: str) -> Callable[[], Any]:
    """Makes the source of one project: its entry's settings, the others from dlt's config.

    A fresh source per call: a backfill in parts builds one per part (run_load). The entry
    goes in as a `projects` list of one, so that the whole list in dlt's config (which the
    other workers load) is not read here.
    """
    import functools

    from sources.polyai import polyai_source

    return functools.partial(polyai_source, projects=[project_entry(project_id)])


def project_slug(project_id: str) -> str:
    """A name part for dlt: lower case letters, digits and '_'."""
    return re.sub(r"[^a-z0-9_]+", "_", project_id.strip().lower()).strip("_") or "project"


def pipeline_name(project_id: str) -> str:
    """The pipeline of one project: its own state (cursor, pending set) and its own lock."""
    return f"{PIPELINE_PREFIX}{project_slug(project_id)}"


def staging_layout(project_id: str) -> str:
    """dlt's `staging_dataset_name_layout` for one project: parallel merges never share staging tables."""
    return f"%s_staging_{project_slug(project_id)}"


def retry_schema_race(load: Callable[[], T], retries: int = 3) -> T:
    """Runs `load`, again when a parallel load created the same table or column first.

    Loads that reach a new dataset, or a new column, together race to create it: PostgreSQL
    fails all but one (docs/fan-out.md) and dlt raises SchemaUpdateError. On the next attempt
    dlt reads the warehouse again and applies only what is still missing; the failed part was
    not committed, so it is read again and nothing is doubled.
    """
    from dlt.pipeline.helpers import retry_schema_update
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random

    retrying = Retrying(
        retry=retry_if_exception(retry_schema_update()),
        stop=stop_after_attempt(retries + 1),
        # Apart, so that the loads that collided do not collide again.
        wait=wait_random(1, 5),
        before_sleep=lambda _: print("a parallel load changed the schema first: loading again"),
        reraise=True,
    )
    return retrying(load)
