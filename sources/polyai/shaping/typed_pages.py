"""Decode pages straight into typed records: the fast path for pages whose fields are all known.

orjson builds a dict per conversation and per turn and a Python object per value. msgspec
decodes into slotted structs generated from the column types, and keeps the JSON fields
(`metrics`, `state`, `intents`, `entities`) as the bytes the API sent, so they stay exact
without being parsed and dumped again. It decodes a page several times faster than orjson, and
the rows are shaped from it faster too (docs/performance.md).

A page that does not fit (a field the connector has not learnt, a value of another type than
its column's, an integer beyond 64 bits) fails validation and goes down the general path
(orjson dicts) instead, which learns new columns and keeps misfits in `__v_json` columns:
nothing is lost either way. Pure functions, no I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Annotated, Any, NamedTuple

import msgspec
import pyarrow as pa

from ..settings import CONVERSATION_NESTED_FIELDS

# Columns of `turns` that are not fields of the API's turn object.
TURN_DERIVED_COLUMNS = (
    "conversation_id",
    "turn_index",
    "conversation_started_at",
    "account_id",
    "project_id",
    "latency_detail",
)
RAW_NULL = msgspec.Raw(b"null")
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
FIELD_TYPES: dict[str, Any] = {
    "text": str | None,
    "timestamp": str | None,
    "bigint": Int64 | None,
    "double": float | None,
    "bool": bool | None,
}
# `latency` is a number (the spec) or an object (the migration guide); records.turns_table
# sends each to its own column.
LATENCY_TYPE = float | dict[str, Any] | list[Any] | None


class TypedRecord(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A decoded conversation or turn, read like the dicts of the general path (`c["id"]`).

    Not tracked by Python's cycle collector (decoded JSON has no cycles): with ~10k records
    per page alive, every collection would walk them all.
    """

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def __setitem__(self, name: str, value: Any) -> None:
        setattr(self, name, value)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)


class DecodedPage(NamedTuple):
    conversations: list[Any]
    cursor: str | None
    next_offset: int | None


def _record_fields(column_types: dict[str, str], skip: Iterable[str]) -> list[tuple[str, Any, Any]]:
    skipped = set(skip)
    fields: list[tuple[str, Any, Any]] = []
    for name, data_type in column_types.items():
        if name in skipped or name.endswith("__v_json"):
            continue
        if name == "latency":
            fields.append((name, LATENCY_TYPE, None))
        elif data_type == "json":
            fields.append((name, msgspec.Raw, RAW_NULL))
        else:
            fields.append((name, FIELD_TYPES[data_type], None))
    return fields


@functools.lru_cache(maxsize=8)
def _decoder(
    conversation_types: tuple[tuple[str, str], ...], turn_types: tuple[tuple[str, str], ...]
) -> msgspec.json.Decoder[Any]:
    turn = msgspec.defstruct(
        "TypedTurn",
        _record_fields(dict(turn_types), TURN_DERIVED_COLUMNS),
        bases=(TypedRecord,),
        forbid_unknown_fields=True,
        gc=False,
    )
    conversation_fields = _record_fields(dict(conversation_types), CONVERSATION_NESTED_FIELDS)
    conversation = msgspec.defstruct(
        "TypedConversation",
        [*conversation_fields, ("turns", list[turn] | None, None)],  # type: ignore[valid-type]
        bases=(TypedRecord,),
        forbid_unknown_fields=True,
        gc=False,
    )
    # Other top-level keys (v1's `descriptions`) are not data: the body ignores them.
    body = msgspec.defstruct(
        "TypedBody",
        [
            ("conversations", list[conversation] | None, None),  # type: ignore[valid-type]
            ("cursor", str | None, None),
            ("next_offset", int | None, None),
        ],
    )
    return msgspec.json.Decoder(body)


def page_decoder(conversation_types: dict[str, str], turn_types: dict[str, str]) -> msgspec.json.Decoder[Any]:
    """A decoder of whole page bodies into typed records for these column types."""
    return _decoder(tuple(conversation_types.items()), tuple(turn_types.items()))


def decode_typed_page(decoder: msgspec.json.Decoder[Any], content: bytes) -> DecodedPage | None:
    """The page as typed records, or None when it does not fit them (the general path reads it)."""
    try:
        body = decoder.decode(content)
    except msgspec.DecodeError:  # also raised for a page that parses but does not validate
        return None
    return DecodedPage(body.conversations or [], body.cursor, body.next_offset)


def is_typed(rows: Sequence[Any]) -> bool:
    return bool(rows) and isinstance(rows[0], TypedRecord)


def typed_columns(
    rows: Sequence[TypedRecord], names: Iterable[str], arrow_types: dict[str, pa.DataType]
) -> dict[str, Any]:
    """Column name -> values for `names`, as Arrow arrays where the decoder checked the type.

    JSON fields become Arrow strings of the raw JSON; columns in `arrow_types` become arrays of
    that type; the others (timestamps, `latency`) stay lists for records to convert. A name
    that is not a field of the records (a derived column) gets all None.
    """
    fields = set(type(rows[0]).__struct_fields__)
    columns: dict[str, Any] = {}
    for name in names:
        if name not in fields:
            columns[name] = [None] * len(rows)
            continue
        # One list per field and no tuple per record: containers wake the cycle collector.
        values = list(map(attrgetter(name), rows))
        if isinstance(values[0], msgspec.Raw):
            columns[name] = raw_json_array(values)
        elif name in arrow_types and name != "latency":
            columns[name] = pa.array(values, type=arrow_types[name])
        else:
            columns[name] = values
    return columns


def raw_json_array(values: Iterable[msgspec.Raw]) -> pa.Array:
    """Raw JSON values as Arrow strings, the JSON text exactly as sent; JSON null is NULL."""
    texts = [None if raw == RAW_NULL else bytes(raw) for raw in values]
    return pa.array(texts, type=pa.binary()).cast(pa.string())
