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
from dataclasses import dataclass
from typing import Final

import dlt
from dlt.common.destination import TLoaderFileFormat

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

    def turns_scope(self, legacy_project_id: str | None = None) -> str:
        """The rows of `turns` a load replaces: all turns of each conversation it stages.

        A conversation is its project and its id (ids are not documented to be unique across
        projects). Turns that an earlier version loaded have no `project_id`: they are
        `legacy_project_id`'s, the one project that version loaded.
        """
        project = "turns.project_id"
        if legacy_project_id is not None:
            project = f"COALESCE(turns.project_id, {sql_text(legacy_project_id)})"
        # A correlated EXISTS, not `(a, b) IN (SELECT a, b ...)`: BigQuery compares a tuple
        # with a subquery only as a STRUCT, which its emulator cannot run. `turns` is the
        # table being deleted from (its implicit alias); the staged rows are aliased apart.
        return (
            f"EXISTS (SELECT 1 FROM {{staging_table}} AS staged WHERE staged.project_id = {project}"
            " AND staged.conversation_id = turns.conversation_id)"
        )


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
