"""Shape API conversations into the rows of `conversations` and `turns`: pure functions, no I/O.

Rows leave as Arrow tables, one per page, so that dlt writes Parquet without running its
JSON normalizer: data-dependent dicts (`metrics`, `state`, `entities`, ...) stay single JSON
values instead of becoming one column per key. Those values are JSON text in Arrow (which has
no JSON type dlt understands); `rows_with_json_values` turns a table back into Python rows
with the JSON parsed, for the destinations that cannot load JSON from Arrow text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import orjson
import pendulum
import pyarrow as pa

from ..settings import (
    CONVERSATION_COLUMN_TYPES,
    CONVERSATION_NESTED_FIELDS,
    CONVERSATION_TEXT_FIELDS,
    TURN_COLUMN_TYPES,
    TURN_FLAG_FIELDS,
    TURN_TEXT_FIELDS,
    TURN_TIMESTAMP_FIELDS,
)
from .typed_pages import is_typed, typed_columns

if TYPE_CHECKING:
    from dlt.common.data_types.typing import TDataType
    from dlt.common.schema.typing import (
        TColumnSchema,
        TDeleteInsertStrategyDict,
        TTableSchemaColumns,
        TWriteDisposition,
    )

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "json": pa.string(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": TIMESTAMP_TYPE,
}
# The same names as dlt's data types, typed as dlt's hints take them.
DLT_DATA_TYPES: dict[str, TDataType] = {
    "text": "text",
    "json": "json",
    "bigint": "bigint",
    "double": "double",
    "bool": "bool",
    "timestamp": "timestamp",
}
# Marks the Arrow string fields that hold JSON text, so a table says by itself which of its
# columns to parse back (new fields and `__v_json` variants included).
JSON_FIELD_METADATA: dict[bytes, bytes] = {b"polyai.data_type": b"json"}


def parse_timestamp(value: Any) -> datetime | None:
    """Any timestamp the API sends (v3 ISO 8601, v1's mixed formats) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            try:
                parsed = parsedate_to_datetime(text)
            except (TypeError, ValueError):
                parsed = pendulum.parse(text, tz="UTC")  # type: ignore[assignment]
    if parsed.tzinfo is None:
        # v1 writes some timestamps without an offset; they are UTC.
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def isoformat_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def normalize_v1_conversation(conversation: dict[str, Any]) -> dict[str, Any]:
    """v1 to v3 conventions: "" for empty text, false for null flags, timestamps in UTC ISO 8601."""
    normalized = dict(conversation)
    for name in CONVERSATION_TEXT_FIELDS:
        if name in normalized and normalized[name] is None:
            normalized[name] = ""
    if normalized.get("started_at") is not None:
        normalized["started_at"] = isoformat_utc(parse_timestamp(normalized["started_at"]))  # type: ignore[arg-type]
    normalized["turns"] = [_normalize_v1_turn(turn) for turn in conversation.get("turns") or []]
    return normalized


def _normalize_v1_turn(turn: dict[str, Any]) -> dict[str, Any]:
    normalized = dict(turn)
    for name in TURN_TEXT_FIELDS:
        if name in normalized and normalized[name] is None:
            normalized[name] = ""
    for name in TURN_FLAG_FIELDS:
        if name in normalized and normalized[name] is None:
            normalized[name] = False
    for name in TURN_TIMESTAMP_FIELDS:
        parsed = parse_timestamp(normalized.get(name))
        if parsed is not None:
            normalized[name] = isoformat_utc(parsed)
    return normalized


def normalized(conversations: list[dict[str, Any]], api_version: str) -> list[dict[str, Any]]:
    """v1 pages are brought to v3 conventions; started_at is made canonical UTC text for the state."""
    if api_version == "v1":
        return [normalize_v1_conversation(c) for c in conversations]
    for conversation in conversations:
        conversation["started_at"] = isoformat_utc(parse_timestamp(conversation["started_at"]))  # type: ignore[arg-type]
    return conversations


def has_hidden_transcript(conversation: dict[str, Any]) -> bool:
    """True when the API counts turns but sends none: the project's transcript toggle is off."""
    return not conversation.get("turns") and (conversation.get("num_turns") or 0) > 0


def conversations_table(page: Sequence[dict[str, Any]], types: dict[str, str] | None = None) -> ShapedTable:
    """Rows of `conversations`; `types` carries the column types learnt from earlier pages."""
    types = dict(CONVERSATION_COLUMN_TYPES) if types is None else types
    columns = _collect_columns(page, types, skip=CONVERSATION_NESTED_FIELDS)
    return _build_table(columns, types)


# Columns of `turns` that come from the conversation, not from the turn object.
TURN_CONTEXT_COLUMNS = (
    "conversation_id",
    "turn_index",
    "conversation_started_at",
    "account_id",
    "project_id",
)


# Columns of `turns` copied from each turn's conversation, and the fields they come from.
CONVERSATION_CONTEXT = {
    "conversation_id": "id",
    "conversation_started_at": "started_at",
    "account_id": "account_id",
    "project_id": "project_id",
}


def turns_table(page: Sequence[dict[str, Any]], types: dict[str, str] | None = None) -> ShapedTable:
    """Rows of `turns`, one per turn; `types` carries the column types learnt from earlier pages.

    Conversations whose transcript is hidden have no turns here, so the turns already loaded
    for them are kept rather than replaced by nothing. Columns are built straight from the
    turn objects (no row dict per turn: a page has ~10k turns).
    """
    types = dict(TURN_COLUMN_TYPES) if types is None else types
    context: dict[str, list[Any]] = {name: [] for name in CONVERSATION_CONTEXT}
    positions: list[int] = []
    turns: list[Any] = []
    for conversation in page:
        conversation_turns = conversation.get("turns") or []
        count = len(conversation_turns)
        for column, field in CONVERSATION_CONTEXT.items():
            context[column] += [conversation.get(field)] * count
        positions += range(count)
        turns += conversation_turns
    columns = _collect_columns(turns, types, skip=TURN_CONTEXT_COLUMNS)
    columns.update(context)
    columns["turn_index"] = positions
    latency = columns["latency"]
    if any(isinstance(value, (dict, list)) for value in latency):
        columns["latency_detail"] = [v if isinstance(v, (dict, list)) else None for v in latency]
        columns["latency"] = [None if isinstance(v, (dict, list)) else v for v in latency]
    return _build_table(columns, types)


def _collect_columns(
    rows: Sequence[dict[str, Any]], known: dict[str, str], skip: Iterable[str]
) -> dict[str, list[Any]]:
    """Column name -> values, known columns first; a field missing from a row is None."""
    names = {name: None for name in known if not name.endswith(VARIANT_SUFFIX)}
    if is_typed(rows):
        # Typed records only have known fields (their page failed to decode otherwise), and
        # their values already have the column's type: scalars go to Arrow as they are.
        arrow_types = {name: ARROW_TYPES[known[name]] for name in names if known[name] in CHECKED_TYPES}
        return typed_columns(rows, names, arrow_types)  # type: ignore[arg-type]
    skipped = set(skip)
    for row in rows:
        for name in row:
            if name not in names and name not in skipped:
                names[name] = None
    return {name: [row.get(name) for row in rows] for name in names}


class ShapedTable(NamedTuple):
    table: pa.Table
    # Types of the columns the connector did not know before this page, for dlt's hints.
    new_columns: dict[str, str]


# Python types a column of each type takes as they are; bool is not an int here.
ACCEPTED_TYPES: dict[str, tuple[type, ...] | None] = {
    "text": (str,),
    "bigint": (int,),
    "double": (int, float),
    "bool": (bool,),
    "timestamp": (str, datetime),
    "json": None,
}


VARIANT_SUFFIX = "__v_json"
# Column types whose values typed records (typed_pages) bring already checked.
CHECKED_TYPES = ("text", "bigint", "double", "bool")


def variant_column(name: str) -> str:
    """Where values that do not fit a column's type go, as exact JSON (dlt's variant naming)."""
    return f"{name}{VARIANT_SUFFIX}"


def types_from_schema(known: dict[str, str], schema_columns: TTableSchemaColumns) -> dict[str, str]:
    """The known column types plus those an earlier run learnt and dlt keeps in its schema."""
    types = dict(known)
    for name, column in schema_columns.items():
        data_type = column.get("data_type")
        if name not in types and data_type in ARROW_TYPES and not name.startswith("_dlt"):
            types[name] = data_type
    return types


def _build_table(columns: dict[str, list[Any]], types: dict[str, str]) -> ShapedTable:
    """One Arrow table; `types` (column -> type) learns the columns it had not seen."""
    arrays = []
    fields = []
    new_columns = {}
    for name, values in columns.items():
        data_type = types.get(name)
        if data_type is None:
            data_type = types[name] = new_columns[name] = infer_data_type(values)
        fitting, misfits = _split_misfits(values, data_type)
        arrays.append(_to_arrow(fitting, data_type))
        fields.append(_arrow_field(name, data_type))
        if misfits is not None:
            variant = variant_column(name)
            if types.get(variant) != "json":
                types[variant] = new_columns[variant] = "json"
            arrays.append(_to_arrow(misfits, "json"))
            fields.append(_arrow_field(variant, "json"))
    return ShapedTable(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), new_columns)


def _arrow_field(name: str, data_type: str) -> pa.Field:
    metadata = JSON_FIELD_METADATA if data_type == "json" else None
    return pa.field(name, ARROW_TYPES[data_type], metadata=metadata)


def _split_misfits(values: list[Any] | pa.Array, data_type: str) -> tuple[Any, list[Any] | None]:
    """Values that fit the column's type, and (if any do not) the others, so nothing is lost."""
    if isinstance(values, pa.Array):
        return values, None
    if data_type == "timestamp":
        return _parse_timestamps(values)
    accepted = ACCEPTED_TYPES[data_type]
    if accepted is None:
        return values, None
    kinds = {type(value) for value in values}
    kinds.discard(type(None))
    if kinds <= set(accepted):
        return values, None
    fitting = [value if type(value) in accepted else None for value in values]
    misfits = [None if value is None or type(value) in accepted else value for value in values]
    return fitting, misfits


def _parse_timestamps(values: list[Any]) -> tuple[Any, list[Any] | None]:
    """Timestamps as an Arrow array: Arrow's own ISO 8601 parser first, Python's where it gives up."""
    try:
        return pa.array(values, type=pa.string()).cast(TIMESTAMP_TYPE), None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    parsed: list[datetime | None] = []
    misfits: list[Any] = []
    any_misfit = False
    for value in values:
        try:
            parsed.append(parse_timestamp(value))
            misfits.append(None)
        except (ValueError, TypeError, OverflowError, AttributeError):
            parsed.append(None)
            misfits.append(value)
            any_misfit = True
    return parsed, misfits if any_misfit else None


def infer_data_type(values: Iterable[Any]) -> str:
    """The column type of a field the connector does not know: scalars keep theirs, the rest is JSON."""
    kinds = {type(value) for value in values if value is not None}
    if not kinds:
        return "text"
    if kinds == {bool}:
        return "bool"
    if kinds == {int}:
        return "bigint"
    if kinds <= {int, float}:
        return "double"
    if kinds == {str}:
        return "text"
    return "json"


def _dump_json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _to_arrow(values: list[Any] | pa.Array, data_type: str) -> pa.Array:
    """Values already checked against the type (timestamps already parsed) as an Arrow array."""
    if isinstance(values, pa.Array):
        return values
    if data_type == "json":
        values = [_dump_json(value) for value in values]
    return pa.array(values, type=ARROW_TYPES[data_type])


def is_json_field(field: pa.Field) -> bool:
    metadata = field.metadata or {}
    return all(metadata.get(key) == value for key, value in JSON_FIELD_METADATA.items())


def rows_with_json_values(table: pa.Table) -> list[dict[str, Any]]:
    """The table as Python rows, its JSON objects and lists parsed back from their text.

    For destinations whose loaders cannot take JSON from Arrow text: BigQuery refuses `json`
    columns in Parquet, Snowflake keeps Parquet text as a VARIANT string. From Python objects
    and lists dlt writes nested JSON into its `jsonl` files, which both load as JSON. Scalars
    (a number in a `__v_json` column) stay JSON text: dlt's normalizer parses text into a
    `json` column itself, whereas it would move a bare number to a new variant column. The
    standard library parser keeps integers beyond 64 bits exact (orjson makes them floats).
    """
    json_columns = [field.name for field in table.schema if is_json_field(field)]
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        for name in json_columns:
            text = row[name]
            if text is not None and text[:1] in ("{", "["):
                row[name] = json.loads(text)
    return rows


def arrow_column_hints(column_types: dict[str, str], keys: Iterable[str]) -> TTableSchemaColumns:
    """The hints the Arrow tables cannot carry themselves: which text columns hold JSON, and
    that the key columns stay nullable as they always were (dlt makes keys NOT NULL otherwise).

    Every other type comes with the table's Arrow schema. Fewer hints matter: dlt validates a
    resource's column hints again for every table it receives, two tables per page, at a
    cost per column (docs/performance.md). Rows that reach dlt as Python values (BigQuery,
    Snowflake) need all of them: pipelines/runner.py applies `dlt_column_hints` there.
    """
    key_columns = set(keys)
    return dlt_column_hints(
        {name: kind for name, kind in column_types.items() if kind == "json" or name in key_columns}
    )


def dlt_column_hints(column_types: dict[str, str]) -> TTableSchemaColumns:
    """dlt column hints for the known columns, so that tables have them from the first load."""
    hints: TTableSchemaColumns = {}
    for name, data_type in column_types.items():
        hint: TColumnSchema = {"data_type": DLT_DATA_TYPES[data_type], "nullable": True}
        if data_type == "timestamp":
            hint["timezone"] = True
        hints[name] = hint
    return hints


def without_merge_key(hints: TTableSchemaColumns, name: str) -> TTableSchemaColumns:
    """Says so explicitly: dlt keeps a merge key stored by an earlier version otherwise."""
    return {**hints, name: {**hints[name], "merge_key": False}}


def transformer_disposition(merge: TDeleteInsertStrategyDict) -> TWriteDisposition:
    """`merge` as dlt.transformer's `write_disposition` is typed.

    dlt.transformer declares a bare disposition name but hands the value to dlt.resource, which
    takes the merge strategy's dict as well: only dlt's annotation is narrower.
    """
    return cast("TWriteDisposition", merge)
