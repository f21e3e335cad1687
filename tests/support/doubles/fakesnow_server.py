"""Starts fakesnow's Snowflake server on HOST PORT, adjusted to take what dlt sends.

Run with fakesnow's own virtualenv (see tests/support/destination_doubles.py); stops on SIGTERM.
Real Snowflake accepts every statement below as dlt writes it; fakesnow 0.12 does not, so:
- PUT/COPY/REMOVE name the stage as a quoted literal (`'@"SCHEMA"."%TABLE"/"load"'`): fakesnow
  wants it bare;
- PUT options and FILE_FORMAT options are comma-separated and MATCH_BY_COLUMN_NAME's value
  quoted: fakesnow's parser wants neither;
- COPY of JSON files with MATCH_BY_COLUMN_NAME (dlt's Snowflake jsonl load) is not implemented
  in fakesnow: it is added here, one column per top-level key, cast to the column's type,
  JSON null loading as SQL NULL;
- snowflake-connector-python 5 (what `dlt[snowflake]` installs) wants more in the login answer
  (master token, session id) and in the PUT answer (the stage's region and flags) than
  fakesnow sends, and an overwriting upload as dlt's PUT asks for.
(dlt's statements go one per request: the test passes `supports_multiple_statements=False`.)
"""

from __future__ import annotations

import contextvars
import importlib
import itertools
import json
import re
import signal
import sys
import threading
from typing import Any

import fakesnow
import fakesnow.copy_into as copy_into_module
import fakesnow.cursor as cursor_module
from sqlglot import exp
from starlette.responses import JSONResponse
from starlette.routing import Route

# `fakesnow.server` is a function until the module of the same name is imported over it.
run_fake_server = fakesnow.server

# --------------------------------------------------------------------------- statement text

QUOTED_STAGE = re.compile(r"'(@[^']*)'")
COMMA_OPTIONS = re.compile(r"(OVERWRITE\s*=\s*\w+)\s*,\s*(AUTO_COMPRESS)", re.IGNORECASE)
FILE_FORMAT = re.compile(r"FILE_FORMAT\s*=\s*\(([^)]*)\)", re.IGNORECASE | re.DOTALL)
MATCH_BY_NAME = re.compile(r"MATCH_BY_COLUMN_NAME\s*=\s*'(\w+)'", re.IGNORECASE)


def adjusted(sql: str) -> str:
    """dlt's PUT/COPY/REMOVE in the spelling fakesnow parses; other statements unchanged."""
    head = sql.lstrip()[:6].upper()
    if not head.startswith(("PUT", "COPY", "REMOVE")):
        return sql
    sql = QUOTED_STAGE.sub(lambda match: match.group(1), sql)
    sql = COMMA_OPTIONS.sub(r"\1 \2", sql)
    sql = FILE_FORMAT.sub(lambda match: f"FILE_FORMAT = ({match.group(1).replace(',', ' ')})", sql)
    return MATCH_BY_NAME.sub(r"MATCH_BY_COLUMN_NAME = \1", sql)


def with_adjusted_sql(function: Any) -> Any:
    def call(self_or_sql: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self_or_sql, str):  # a module function: parse_one(sql)
            return function(adjusted(self_or_sql), *args, **kwargs)
        return function(self_or_sql, adjusted(args[0]), *args[1:], **kwargs)

    return call


# --------------------------------------------------------------------------- COPY of JSON by name

# The connection and target table of the COPY being run, for the JSON insert builder below.
copy_target: contextvars.ContextVar[tuple[Any, str, list[tuple[str, str]]]] = contextvars.ContextVar("copy")


def copy_into_recording_target(
    duck_conn: Any, current_database: Any, current_schema: Any, expr: Any, *args: Any, **kwargs: Any
) -> str:
    table = copy_into_module._extract_table(expr.this)
    schema = table.db or current_schema
    columns = copy_into_module._describe_table(table, duck_conn, current_database, schema)
    qualified = f"{table.catalog or current_database}.{schema}.{table.name}"
    token = copy_target.set((duck_conn, qualified, columns))
    try:
        return original_copy_into(duck_conn, current_database, current_schema, expr, *args, **kwargs)
    finally:
        copy_target.reset(token)


def inserts_with_json_by_name(expr: Any, params: Any, urls: list[str], parquet_info: Any = None) -> list[Any]:
    by_name = params.match_by_column_name != copy_into_module.MatchByColumnName.NONE
    if not (isinstance(params.file_format, copy_into_module.ReadJSON) and by_name):
        return original_inserts(expr, params, urls, parquet_info)
    duck_conn, table, columns = copy_target.get()
    return [
        exp.maybe_parse(json_insert_sql(duck_conn, table, columns, url), dialect="duckdb") for url in urls
    ]


def json_insert_sql(duck_conn: Any, table: str, columns: list[tuple[str, str]], url: str) -> str:
    source = f"read_json_objects('{url}')"
    keys = [
        row[0]
        for row in duck_conn.execute(f"SELECT DISTINCT unnest(json_keys(json)) FROM {source}").fetchall()
    ]
    key_by_upper = {key.upper(): key for key in keys}
    selects = []
    for name, duck_type in columns:
        key = key_by_upper.get(name.upper())
        if key is None:
            selects.append(f'NULL AS "{name}"')
            continue
        path = "'$.\"" + key.replace("'", "''") + "\"'"
        if duck_type == "JSON":
            value = (
                f"CASE WHEN json_type(json, {path}) = 'NULL' THEN NULL ELSE json_extract(json, {path}) END"
            )
        else:
            value = f"CAST(json_extract_string(json, {path}) AS {duck_type})"
        selects.append(f'{value} AS "{name}"')
    return f"INSERT INTO {table} BY NAME SELECT {', '.join(selects)} FROM {source}"


# --------------------------------------------------------------------------- start-up

original_copy_into = cursor_module.copy_into
original_inserts = copy_into_module._inserts


session_ids = itertools.count(1)


def with_master_token(login: Any) -> Any:
    """Login answers with the session fields connector 5's login requires (master token, id)."""

    async def login_request(request: Any) -> Any:
        response = await login(request)
        body = json.loads(response.body)
        if body.get("success"):
            body["data"].update(
                masterToken=body["data"]["token"],
                validityInSeconds=3600,
                masterValidityInSeconds=14400,
                sessionId=next(session_ids),
            )
        return JSONResponse(body)

    return login_request


def with_full_stage_info(stage_info: Any) -> Any:
    """PUT answers with the stage fields connector 5's uploader requires.

    fakesnow answers `overwrite: false` whatever the PUT says; dlt's says OVERWRITE = TRUE, and
    connector 5 refuses a conditional (no-overwrite) upload to a presigned URL.
    """

    def gcs_stage_info(request: Any, expr: Any, put_stage_data: dict[str, Any]) -> dict[str, Any]:
        put_stage_data["overwrite"] = True
        return {
            "region": "us-central1",
            "endPoint": None,
            "storageAccount": None,
            "isClientSideEncrypted": False,
            "useRegionalUrl": False,
            "useVirtualUrl": False,
            **stage_info(request, expr, put_stage_data),
        }

    return gcs_stage_info


def install_adjustments() -> None:
    server_module = importlib.import_module("fakesnow.server")
    server_module.gcs_stage_info = with_full_stage_info(server_module.gcs_stage_info)
    for index, route in enumerate(server_module.app.router.routes):
        if getattr(route, "path", None) == "/session/v1/login-request":
            server_module.app.router.routes[index] = Route(
                route.path, with_master_token(route.endpoint), methods=["POST"]
            )
    server_module.parse_one = with_adjusted_sql(server_module.parse_one)
    cursor_module.FakeSnowflakeCursor.execute = with_adjusted_sql(cursor_module.FakeSnowflakeCursor.execute)
    cursor_module.copy_into = copy_into_recording_target
    copy_into_module._inserts = inserts_with_json_by_name


def serve(host: str, port: int) -> None:
    install_adjustments()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with run_fake_server(host=host, port=port):
        stop.wait()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
