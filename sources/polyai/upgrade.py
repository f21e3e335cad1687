"""Upgrading in place a pipeline of an earlier version, which loaded one project.

Its state was one project's, kept at the top of the source state, and its `turns` rows have no
`project_id` or `account_id`. The state moves to the project the top-level settings name
(state.project_states); until that project's old turns rows have their ids, a load's delete
reads them as that project's (DestinationFit.turns_merge), and the run after the one that added
the columns fills them in (fill_legacy_turns).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping, Sequence
from typing import Any

import dlt

from .config import ConfigurationError, PolyAISourceConfiguration
from .destinations import sql_text
from .projects import ProjectSettings
from .state import LEGACY_ACCOUNT_ID, LEGACY_PROJECT_ID, LegacyOwner, has_legacy_state

logger = logging.getLogger(__name__)


def legacy_owner(
    settings: PolyAISourceConfiguration, projects: Sequence[ProjectSettings]
) -> LegacyOwner | None:
    """The project the top-level settings name, or the only one configured."""
    named = [p for p in projects if p.connector.project_id == settings.project_id]
    owner = named[0] if named else (projects[0] if len(projects) == 1 else None)
    if owner is None:
        return None
    return LegacyOwner(owner.state_key, owner.connector.project_id, owner.connector.account_id)


def require_owner(source_state: MutableMapping[str, Any], owner: LegacyOwner | None) -> None:
    """Refuses to guess which project an earlier version's state belongs to."""
    if owner is None and has_legacy_state(source_state):
        raise ConfigurationError(
            "project_id",
            "must name the project this pipeline loaded before it had the `projects` setting "
            "(the project_id of its `conversations` rows), so that it keeps its cursor and its rows",
            'project_id = "proj-456" next to the projects list',
        )


def fill_legacy_turns(source_state: MutableMapping[str, Any]) -> None:
    """Gives the turns rows of an earlier version their project's ids, once the columns exist.

    Run at the start of an extraction, before anything is staged; a load that then fails keeps
    the state that asks for it, and the update finds nothing left to do when run again.
    """
    project_id = source_state.get(LEGACY_PROJECT_ID)
    if project_id is None:
        return
    pipeline = dlt.current.pipeline()
    columns = pipeline.default_schema.tables.get("turns", {}).get("columns", {})
    if "project_id" not in columns:
        return
    account_id = source_state.get(LEGACY_ACCOUNT_ID)
    account = sql_text(str(account_id)) if account_id else "NULL"
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("turns")
            client.execute_sql(
                f"UPDATE {table} SET project_id = {sql_text(str(project_id))}, account_id = {account} "
                "WHERE project_id IS NULL"
            )
    except Exception as error:  # the columns are not in the destination yet: next run
        logger.info("turns rows of the earlier version keep no project_id for now: %s", error)
        return
    source_state.pop(LEGACY_PROJECT_ID, None)
    source_state.pop(LEGACY_ACCOUNT_ID, None)
