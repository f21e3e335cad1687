"""Read the loaded tables back from any dlt destination, through dlt's own SQL client.

JSON columns come back as the JSON text the destination holds, so that a value stored as a
JSON *string* (`"{\\"a\\": 1}"`, the classic quoted-JSON bug) reads differently from an object
and fails the comparison with the truth instead of being parsed into one by a driver.
"""

from __future__ import annotations

from typing import Any

import dlt

# How each destination's SQL renders a JSON column as the JSON text of its value. Snowflake's
# connector already returns VARIANT as JSON text; PostgreSQL's driver would parse jsonb.
JSON_AS_TEXT: dict[str, str] = {
    "postgres": "{column}::text",
    "bigquery": "TO_JSON_STRING({column})",
}


def json_columns(pipeline: dlt.Pipeline, table: str) -> set[str]:
    columns = pipeline.default_schema.get_table_columns(table)
    return {name for name, column in columns.items() if column.get("data_type") == "json"}


def read_rows(pipeline: dlt.Pipeline, table: str, order_by: str) -> list[dict[str, Any]]:
    """Every row of the table as {column: value}, columns named as in dlt's schema."""
    names = list(pipeline.default_schema.get_table_columns(table))
    as_text = JSON_AS_TEXT.get(pipeline.destination.destination_name, "{column}")
    json_names = json_columns(pipeline, table)
    with pipeline.sql_client() as client:
        select = ", ".join(
            as_text.format(column=client.escape_column_name(name))
            if name in json_names
            else client.escape_column_name(name)
            for name in names
        )
        sql = f"SELECT {select} FROM {client.make_qualified_table_name(table)} ORDER BY {order_by}"
        with client.execute_query(sql) as cursor:
            rows = cursor.fetchall()
    return [dict(zip(names, row, strict=True)) for row in rows]


def column_types(pipeline: dlt.Pipeline, table: str) -> dict[str, str]:
    """Column name (lower case) -> the destination's type name, from its INFORMATION_SCHEMA."""
    with pipeline.sql_client() as client:
        *_, schema_name, table_name = client.make_qualified_table_name_path(table, quote=False)
        if pipeline.destination.destination_name == "bigquery":
            # BigQuery keeps INFORMATION_SCHEMA per dataset.
            sql = (
                f"SELECT column_name, data_type FROM {client.fully_qualified_dataset_name()}"
                ".INFORMATION_SCHEMA.COLUMNS WHERE table_name = %s"
            )
            parameters: tuple[str, ...] = (table_name,)
        else:
            sql = (
                "SELECT column_name, data_type FROM INFORMATION_SCHEMA.COLUMNS "
                "WHERE table_schema = %s AND table_name = %s"
            )
            parameters = (schema_name, table_name)
        rows = client.execute_sql(sql, *parameters) or []
    return {str(name).lower(): str(kind).upper() for name, kind in rows}
