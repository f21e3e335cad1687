"""The projects one source loads: each with its own key, region and filters, and its own state."""

from __future__ import annotations

from dataclasses import dataclass

from .config import ConnectorSettings


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


def state_key(project_id: str, region: str, client_env: str) -> str:
    """What one project's state is filed under: a project is its id, its region and its environment."""
    return f"{region}/{project_id}/{client_env}"
