"""Rows appended to their tables once, where a merge would replace no loaded row.

dlt's merge copies the staged rows into a staging table, deletes the loaded rows they replace,
then copies them again into the final table. A load whose rows replace none (a backfill into an
empty table, or into a range no earlier load reached) gets the same result from an append:
its rows are written once. Whether a merge would replace a row is read from the destination
after the last page, exactly as the merge's own delete would decide it: rows started at or after
its time bound (planning.replace_bound) whose conversation is staged now. The check reads
only the rows since that bound, so it costs what the bounded delete reads, not the history.

A kill while such a load is in the destination leaves the rows it had appended; the next run
aborts that load and reads its range again (operations.abort_started_loads), finds those rows
since its bound, and so merges: they are replaced, not doubled.

Each part of a backfill reads the lookback before its cursor again, so it would meet the rows
the part before it loaded and merge. A run keeps the first sighting of each conversation
(planning.first_sightings): the finished conversations that the part before committed, in
this run, are not staged again (EarlierSightings), once the destination has recorded that
part's load. Whatever else a part re-reads (a late arrival, a conversation still in progress,
one reported past that part's cursor) is staged, and the check above still decides.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity

from .shaping.records import parse_timestamp
from .warehouse_reads import FETCH_ROWS, warehouse

logger = logging.getLogger(__name__)

# Destinations whose merge writes every row twice (a staging copy, then an insert from it) and
# where reading the rows since the bound prunes by the time column's min/max, without billing.
WRITTEN_ONCE_DESTINATIONS: Final = frozenset({"duckdb"})


class StagedIds:
    """The ids of the conversations an extraction staged: every project's, as each run kept them."""

    def __init__(self, kept: Sequence[Container[str]]) -> None:
        self._kept = kept

    def __contains__(self, conversation_id: object) -> bool:
        return any(conversation_id in ids for ids in self._kept)


def replaces_nothing(
    pipeline: dlt.Pipeline,
    table: str,
    time_column: str,
    id_column: str,
    staged: Container[str],
    since: datetime,
) -> bool:
    """Whether no row of `table` started at or after `since` belongs to a staged conversation.

    Ids are compared across projects (a merge matches project and id): an id that two projects
    share makes the load merge, which is exact too. A table not created yet replaces nothing.
    A read that fails answers False: the merge is exact either way, and the load step reports a
    destination it cannot reach with its own message.
    """
    try:
        with warehouse(pipeline) as client:
            if client is None:
                return True
            qualified = client.make_qualified_table_name(table)
            sql = f"SELECT DISTINCT {id_column} FROM {qualified} WHERE {time_column} >= %s"
            with contextlib.suppress(DestinationUndefinedEntity), client.execute_query(sql, since) as cursor:
                rows: list[Any]
                while rows := cursor.fetchmany(FETCH_ROWS):
                    if any(str(loaded_id) in staged for (loaded_id,) in rows):
                        return False
    except Exception as error:  # whatever fails here only costs the append
        logger.info("reading %s since %s failed (%s): the load merges", table, since, type(error).__name__)
        return False
    return True


@dataclass(frozen=True)
class PartSightings:
    """What a committed part kept of one project: its conversations, those of them still in
    progress, and the cursor it moved to."""

    kept: Container[str]
    pending: Container[str]
    cursor: datetime | None

    def committed(self, conversation: Any) -> bool:
        """Whether this sighting was committed finished, within that part's span: the next part
        does not stage it again. One served after that cursor is staged (and counted new there)."""
        if self.cursor is None or conversation["id"] not in self.kept or conversation["id"] in self.pending:
            return False
        started_at = parse_timestamp(conversation["started_at"])
        return started_at is not None and started_at < self.cursor


@dataclass(frozen=True)
class EarlierSightings:
    """What one part of a run kept, for the next part: its load, and each project's sightings."""

    load_id: str
    # state key -> what the part kept of that project
    projects: Mapping[str, PartSightings]

    def of(self, state_key: str) -> PartSightings | None:
        return self.projects.get(state_key)


def load_committed(pipeline: dlt.Pipeline, load_id: str) -> bool:
    """Whether the destination recorded `load_id` as loaded (its row in `_dlt_loads`, status 0)
    with no job failed (dlt records a load whose failed jobs it was told not to raise).

    A read that fails answers False: the next part then stages what it re-reads, and merges.
    """
    try:
        if pipeline.get_load_package_info(load_id).jobs["failed_jobs"]:
            return False
        with warehouse(pipeline) as client:
            if client is None:
                return False
            loads = client.make_qualified_table_name(pipeline.default_schema.loads_table_name)
            sql = f"SELECT count(*) FROM {loads} WHERE load_id = %s AND status = 0"
            with client.execute_query(sql, load_id) as cursor:
                row = cursor.fetchone()
                return bool(row and row[0])
    except Exception as error:  # whatever fails here only costs the append
        logger.info("reading whether load %s was committed failed (%s)", load_id, type(error).__name__)
        return False
