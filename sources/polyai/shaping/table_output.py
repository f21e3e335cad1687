"""One table's rows as the pipeline's destination takes them, with the hints dlt needs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import dlt
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.schema.typing import TDeleteInsertStrategyDict, TWriteDisposition

from ..config import ConnectorSettings
from ..destinations import DestinationFit, current_fit
from ..planning import replace_bound
from .privacy import PrivacyRules
from .records import dlt_column_hints, rows_with_json_values, types_from_schema
from .typed_pages import page_decoder

# The merge of a table for the rows it stages: the oldest time they hold, or None without rows.
MergeFor = Callable[[datetime | None], TDeleteInsertStrategyDict]


class TableOutput:
    """Column types, destination fit and merge of one table for one extraction of the source.

    Types and fit are read on the first page, from the pipeline that extracts: a field that
    arrived in an earlier run keeps its type (a value that does not fit goes to the field's
    `__v_json` column), and the destination decides the file format and how JSON reaches dlt.
    Hints that dlt keeps on the resource once merged are sent with the first page only: dlt
    validates a resource's column hints again for every item that carries them. The merge
    depends on every row staged (its time bound): an item without rows carries it after the
    last page (close).
    """

    def __init__(self, table: str, known: dict[str, str], time_column: str) -> None:
        self.table = table
        self.known = known
        self.time_column = time_column
        self._types: dict[str, str] | None = None
        self._fit: DestinationFit | None = None
        self._hinted = False
        self._last_schema: pa.Schema | None = None
        self._oldest: datetime | None = None
        # Set by the run: the merge for the oldest time staged (ProjectsReading.start), and once
        # every page is read, whether that merge would replace no loaded row (written_once).
        self.merge: MergeFor | None = None
        self.replaces_nothing: Callable[[datetime], bool] | None = None

    def current(self) -> dict[str, str]:
        if self._types is None:
            schema = dlt.current.source_schema()
            columns = schema.tables.get(self.table, {}).get("columns", {})
            self._types = types_from_schema(self.known, columns)
        return self._types

    def fit(self) -> DestinationFit:
        if self._fit is None:
            self._fit = current_fit()
        return self._fit

    def hand_over(self, table: pa.Table, new_columns: dict[str, str]) -> Iterator[Any]:
        """`table` as dlt should receive it; its oldest time counts for the merge (close)."""
        if not table.num_rows:
            return
        oldest = pc.min(table[self.time_column]).as_py()
        if oldest is not None and (self._oldest is None or oldest < self._oldest):
            self._oldest = oldest
        self._last_schema = table.schema
        yield self._item(table, new_columns, merge=None)

    def close(self) -> Iterator[Any]:
        """After the last page, no rows: the merge for every row staged, as a hint dlt keeps, or
        an append where that merge would replace no loaded row."""
        if self._last_schema is not None and self.merge is not None:
            since = replace_bound(self._oldest)
            disposition: TDeleteInsertStrategyDict | TWriteDisposition = self.merge(since)
            if since is not None and self.replaces_nothing is not None and self.replaces_nothing(since):
                disposition = "append"
            yield self._item(self._last_schema.empty_table(), {}, merge=disposition)

    def _item(
        self,
        table: pa.Table,
        new_columns: dict[str, str],
        merge: TDeleteInsertStrategyDict | TWriteDisposition | None,
    ) -> Any:
        """`table` as dlt should receive it: Arrow, or Python rows where JSON must be objects."""
        first, self._hinted = not self._hinted, True
        fit = self.fit()
        items: Any = rows_with_json_values(table) if fit.json_as_objects else table
        columns = dict(new_columns)
        if first and fit.json_as_objects:
            # Python rows carry no schema: every known column is declared, as the Arrow schema
            # does for the other destinations.
            columns = {**self.known, **columns}
        file_format = fit.file_format if first else None
        if not columns and file_format is None and merge is None:
            return items
        hints = dlt.mark.make_hints(
            columns=dlt_column_hints(columns) if columns else None,
            file_format=file_format,
            write_disposition=merge,
        )
        return dlt.mark.with_hints(items, hints)


def typed_page_decoder(
    settings: ConnectorSettings,
    privacy: PrivacyRules,
    conversation_output: TableOutput,
    turn_output: TableOutput,
) -> msgspec.json.Decoder[Any] | None:
    """The fast path's decoder (typed_pages), where it applies: v2/v3 pages loaded as they are.

    v1 pages are rewritten to v3 conventions and privacy options rewrite values: both work on
    dicts, so they take the general path.
    """
    if settings.api_version == "v1" or privacy.active:
        return None
    return page_decoder(conversation_output.current(), turn_output.current())
