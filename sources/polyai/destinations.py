"""What each destination's loader keeps exact, chosen by the source at extract time.

The source reads the pipeline it is extracted by (`dlt.current.pipeline()`), so that a plain
`pipeline.run(polyai_source())` writes the same tables as the command: the loader file format
travels as a table hint (which dlt's normalizer prefers to the pipeline's), and on destinations
that cannot take JSON from Arrow text the rows reach dlt as Python values with JSON parsed.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import dlt
from dlt.common.destination import TLoaderFileFormat
from dlt.common.schema.typing import TColumnSchema, TDeleteInsertStrategyDict

from .shaping.records import dlt_column_hints
from .shaping.text_repair import TextRepair, destination_keeps_nul

logger = logging.getLogger(__name__)

# Per destination, the loader file format that keeps JSON values exact and timestamps typed
# (checked in tests/integration/test_destinations.py and tests/integration/test_plain_dlt.py):
# - DuckDB, MotherDuck: Parquet straight from the Arrow tables, the fast path (jsonl would add
#   keys of other rows as nulls into JSON objects).
# - BigQuery: jsonl (dlt refuses `json` columns from Parquet), JSON values as objects.
# - Snowflake: jsonl, JSON values as objects: Parquet text would land in VARIANT as a string.
# - PostgreSQL: insert_values; the JSON text is cast to `jsonb` on load. Its csv (dlt's choice
#   for Arrow tables) loads empty strings as NULL: COPY's FORCE_NULL on every nullable column.
FILE_FORMATS: Final[dict[str, TLoaderFileFormat]] = {
    "duckdb": "parquet",
    "motherduck": "parquet",
    "snowflake": "jsonl",
    "bigquery": "jsonl",
    "postgres": "insert_values",
}
SQL_SAFE_TEXT: Final = re.compile(r"[A-Za-z0-9_.:@/-]+")
# Destinations whose loaders cannot take JSON from Arrow text.
JSON_AS_OBJECTS: Final = frozenset({"bigquery", "snowflake"})
# How each tested destination writes a UTC instant as a constant that its planner compares with
# a timestamp column before it reads the table: what lets DuckDB skip row groups by their
# min/max, BigQuery prune day partitions and Snowflake micro-partitions. Postgres reads a
# `TIMESTAMP '...'` literal without its offset, hence TIMESTAMPTZ there; Snowflake's dlt type
# is TIMESTAMP_LTZ. Other destinations get no time bound (their merge scans the table).
TIME_LITERALS: Final[dict[str, str]] = {
    "duckdb": "TIMESTAMPTZ '{}'",
    "motherduck": "TIMESTAMPTZ '{}'",
    "postgres": "TIMESTAMPTZ '{}'",
    "bigquery": "TIMESTAMP '{}'",
    "snowflake": "'{}'::TIMESTAMP_LTZ",
}
# Destinations the end-to-end suite runs against: DuckDB files, a real PostgreSQL server, and
# BigQuery and Snowflake through local emulators, plus live accounts when credentials are set.
TESTED_DESTINATIONS: Final = ("duckdb", "postgres", "bigquery", "snowflake")


@dataclass(frozen=True)
class DestinationFit:
    """How the tables are handed to one destination's loader."""

    destination: str | None
    # None: dlt's own choice for the destination (untested destinations).
    file_format: TLoaderFileFormat | None
    json_as_objects: bool

    @classmethod
    def of(cls, destination: str | None) -> DestinationFit:
        return cls(destination, FILE_FORMATS.get(destination or ""), destination in JSON_AS_OBJECTS)

    def text_repair(self) -> TextRepair:
        return TextRepair(keep_nul=destination_keeps_nul(self.destination))

    def conversations_merge(self, since: datetime | None) -> TDeleteInsertStrategyDict:
        """The merge of `conversations`: each staged conversation replaces its row.

        `since` is a time that every replaced row started at or after (planning.replace_bound): the
        delete reads only the rows since then, however long the history grows.
        """
        staged = "staged.project_id = conversations.project_id AND staged.id = conversations.id"
        return self._merge("conversations.started_at", since, staged)

    def turns_merge(
        self, since: datetime | None, legacy_project_id: str | None = None
    ) -> TDeleteInsertStrategyDict:
        """The merge of `turns`: a staged conversation replaces all of its turns.

        A conversation is its project and its id (ids are not documented to be unique across
        projects). Turns that an earlier version loaded have no `project_id`: they are
        `legacy_project_id`'s, the one project that version loaded.
        """
        project = "turns.project_id"
        if legacy_project_id is not None:
            project = f"COALESCE(turns.project_id, {sql_text(legacy_project_id)})"
        staged = f"staged.project_id = {project} AND staged.conversation_id = turns.conversation_id"
        return self._merge("turns.conversation_started_at", since, staged)

    def _merge(self, time_column: str, since: datetime | None, staged: str) -> TDeleteInsertStrategyDict:
        # A correlated EXISTS, not `(a, b) IN (SELECT a, b ...)`: BigQuery compares a tuple
        # with a subquery only as a STRUCT, which its emulator cannot run. The table being
        # deleted from is named by its own name (its implicit alias); the staged rows apart.
        scope = f"EXISTS (SELECT 1 FROM {{staging_table}} AS staged WHERE {staged})"
        literal = TIME_LITERALS.get(self.destination or "")
        if since is not None and literal is not None:
            scope = f"{time_column} >= {literal.format(sql_instant(since))} AND {scope}"
        return {
            "disposition": "merge",
            "strategy": "delete-insert",
            "deduplicated": True,
            "destination_scope": scope,
        }


def layout_hints(time_column: str, key: Sequence[str]) -> tuple[TColumnSchema, dict[str, Any]]:
    """How a table is laid out where the destination lets its merge's delete skip history.

    BigQuery: partitioned by day of `time_column` and clustered by the key, the hints of dlt's
    `bigquery_adapter`; Snowflake: clustered by `time_column` (dlt's `cluster` column hint).
    Both apply when dlt creates the table; other destinations ignore them. Returns the hints
    of `time_column` and the table's.
    """
    column = dlt_column_hints({time_column: "timestamp"})[time_column]
    column["cluster"] = True
    column["x-bigquery-partition"] = True  # type: ignore[typeddict-unknown-key]
    return column, {"x-bigquery-cluster-columns": list(key)}


def sql_instant(instant: datetime) -> str:
    """`instant` in UTC as every destination's timestamp literal reads it."""
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def sql_text(value: str) -> str:
    """`value` as an SQL string literal that every destination reads alike.

    Destinations escape quotes differently (BigQuery with a backslash, others by doubling), and
    dlt formats the scope with `str.format`: so only text that needs no escaping is written.
    """
    if not SQL_SAFE_TEXT.fullmatch(value):
        raise ValueError(f"{value!r} cannot be written into the merge's SQL")
    return f"'{value}'"


def destination_type(pipeline: dlt.Pipeline) -> str | None:
    """`duckdb`, `bigquery`, ...: the destination's type, whatever name the user gave it."""
    destination = pipeline.destination
    return destination.destination_type.rsplit(".", 1)[-1] if destination is not None else None


def current_fit() -> DestinationFit:
    """The fit for the destination of the pipeline that is extracting the source."""
    destination = destination_type(dlt.current.pipeline())
    if destination is not None and destination not in TESTED_DESTINATIONS:
        warn_untested(destination)
    return DestinationFit.of(destination)


@functools.cache
def warn_untested(destination: str) -> None:
    """Once per process: a backfill's parts each extract the source again."""
    logger.warning(
        "destination %s is not covered by this connector's end-to-end tests (%s are): check after "
        "the first load that JSON columns (metrics, state, intents, entities) hold objects, not "
        "quoted strings",
        destination,
        ", ".join(TESTED_DESTINATIONS),
    )
