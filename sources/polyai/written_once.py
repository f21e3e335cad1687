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
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Container, Sequence
from datetime import datetime
from typing import Any, Final

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity

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
