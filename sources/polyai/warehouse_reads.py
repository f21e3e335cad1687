"""Reading the loaded tables back, for a resync: one project, one `started_at` range, page by page.

Every query names the project and is bounded by the range or by a page's ids, so that what
is held in memory grows with a page or a window, never with the tables.
"""

from __future__ import annotations

import contextlib
from collections.abc import Container, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final

import dlt
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.destinations.sql_client import SqlClientBase

# Rows fetched from the destination at once, and ids named in one query.
FETCH_ROWS: Final = 1000
IDS_PER_QUERY: Final = 500


@contextlib.contextmanager
def warehouse(pipeline: dlt.Pipeline) -> Iterator[SqlClientBase[Any] | None]:
    """The destination's SQL client, or None while its dataset does not exist (nothing loaded yet)."""
    with pipeline.sql_client() as client:
        yield client if client.has_dataset() else None


def ids_in_range(
    client: SqlClientBase[Any] | None, project_id: str, start: datetime, end: datetime
) -> Iterator[str]:
    """The ids of the project's loaded conversations with `start <= started_at < end`."""
    if client is None:
        return
    table = client.make_qualified_table_name("conversations")
    sql = f"SELECT id FROM {table} WHERE project_id = %s AND started_at >= %s AND started_at < %s"
    with (
        contextlib.suppress(DestinationUndefinedEntity),
        client.execute_query(sql, project_id, start, end) as cursor,
    ):
        while rows := cursor.fetchmany(FETCH_ROWS):
            for (conversation_id,) in rows:
                yield str(conversation_id)


def matched_and_missing(
    loaded: Iterable[str], served: Container[str], examples: list[str] | None = None, keep: int = 5
) -> tuple[int, int]:
    """Of the ids loaded, how many were served again and how many were not (the first `keep`
    of those go to `examples`)."""
    matched = missing = 0
    for conversation_id in loaded:
        if conversation_id in served:
            matched += 1
            continue
        missing += 1
        if examples is not None and len(examples) < keep:
            examples.append(conversation_id)
    return matched, missing


def rows_by_id(
    client: SqlClientBase[Any] | None,
    table: str,
    id_column: str,
    project_id: str,
    ids: Sequence[str],
    legacy_project_id: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The project's rows of `table` whose `id_column` is one of `ids`, as {column: value}.

    Turns that an earlier version loaded without `project_id` are `legacy_project_id`'s.
    """
    if client is None or not ids:
        return
    name = client.make_qualified_table_name(table)
    project = "project_id" if legacy_project_id is None else "COALESCE(project_id, %s)"
    for first in range(0, len(ids), IDS_PER_QUERY):
        chunk = list(ids[first : first + IDS_PER_QUERY])
        marks = ", ".join(["%s"] * len(chunk))
        sql = f"SELECT * FROM {name} WHERE {project} = %s AND {id_column} IN ({marks})"
        args = [*([legacy_project_id] if legacy_project_id is not None else []), project_id, *chunk]
        with contextlib.suppress(DestinationUndefinedEntity), client.execute_query(sql, *args) as cursor:
            columns = [column[0] for column in cursor.description]
            while rows := cursor.fetchmany(FETCH_ROWS):
                for row in rows:
                    yield dict(zip(columns, row, strict=True))
