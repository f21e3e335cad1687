"""What the subcommands share: the projects of the settings, resolved as a run resolves them."""

from __future__ import annotations

from datetime import UTC, datetime

from dlt.common.configuration import resolve_configuration

from sources.polyai.config import PolyAISourceConfiguration
from sources.polyai.projects import ProjectSettings


def configured_settings() -> PolyAISourceConfiguration:
    """The settings of `sources.polyai`, resolved and checked as a run resolves them."""
    return resolve_configuration(PolyAISourceConfiguration(), sections=("sources", "polyai"))


def configured_projects(now: datetime | None = None) -> list[ProjectSettings]:
    """The projects of `sources.polyai` (the `projects` list, or the single project), checked."""
    return configured_settings().project_settings(now=now or datetime.now(UTC))


def chosen_state_keys(projects: list[ProjectSettings], names: list[str] | None) -> list[str] | None:
    """The state keys of the projects named by id, label or state key; None when none are named.

    A name that matches no configured project is taken as a state key (a project removed from
    the settings keeps its state).
    """
    if not names:
        return None
    keys = []
    for name in names:
        matches = [p.state_key for p in projects if name in (p.connector.project_id, p.label, p.state_key)]
        keys += matches or [name]
    return keys
