"""HTTP front of the simulator: GET /{v1|v2|v3}/{account_id}/{project_id}/conversations on 127.0.0.1."""

from __future__ import annotations

import base64
import binascii
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from .simulator import Query, Simulator
from .views import parse_time

PATH = re.compile(r"^/(v1|v2|v3)/([^/]+)/([^/]+)/conversations/?$")
SEARCH_PARAMS = ("query_type", "query", "turn_type", "sample")
ENVS = ("sandbox", "pre-release", "live")
V1_DESCRIPTIONS = {"conversations": {"id": "Unique ID for this conversation.", "turns": "Ordered turns."}}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": last_id})).decode().rstrip("=")


def decode_cursor(token: str) -> str:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after = data["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise ApiError(400, "INVALID_CURSOR", "The cursor is malformed.") from None
    if not isinstance(after, str):
        raise ApiError(400, "INVALID_CURSOR", "The cursor is malformed.")
    return after


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _boolean(params: dict[str, list[str]], name: str) -> bool | None:
    value = _one(params, name)
    if value is None:
        return None
    if value.lower() not in ("true", "false"):
        raise ApiError(400, "INVALID_PARAMETER", f"`{name}` must be true or false.")
    return value.lower() == "true"


def _integer(params: dict[str, list[str]], name: str, default: int, low: int, high: int | None) -> int:
    value = _one(params, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, "INVALID_PARAMETER", f"`{name}` must be an integer.") from None
    if number < low or (high is not None and number > high):
        raise ApiError(400, "INVALID_PARAMETER", f"`{name}` must be between {low} and {high}.")
    return number


def _time(params: dict[str, list[str]], name: str) -> Any:
    value = _one(params, name)
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise ApiError(400, "INVALID_PARAMETER", f"`{name}` is not an ISO 8601 date-time.") from None


def parse_query(version: str, params: dict[str, list[str]]) -> Query:
    for name in SEARCH_PARAMS:
        if name in params:
            raise ApiError(400, "UNSUPPORTED_PARAMETER", f"`{name}` is not supported by the simulator.")
    client_env = _one(params, "client_env") or "live"
    if client_env not in ENVS:
        raise ApiError(400, "INVALID_PARAMETER", "`client_env` must be sandbox, pre-release or live.")
    if _one(params, "variant_id") and _one(params, "variant_name"):
        raise ApiError(400, "INVALID_PARAMETER", "Specify only one of variant_id or variant_name.")
    return Query(
        start=_time(params, "start_time"),
        end=_time(params, "end_time"),
        client_env=client_env,
        channels=tuple(params.get("channel", ())) if version != "v1" else (),
        variant_id=_one(params, "variant_id"),
        variant_name=_one(params, "variant_name"),
        in_progress=_boolean(params, "in_progress"),
    )


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read the stats, not the log

    def do_GET(self) -> None:
        simulator = self.server.simulator
        correlation_id = str(uuid.uuid4())
        url = urlsplit(self.path)
        params = parse_qs(url.query, keep_blank_values=True)
        entry: dict[str, Any] = {
            "version": None,
            "params": {k: (v[0] if len(v) == 1 else v) for k, v in params.items()},
            "status": 200,
            "returned": 0,
            "ids": [],
        }
        faults = simulator.faults
        if faults.latency_seconds:
            time.sleep(faults.latency_seconds)
        fault = faults.draw()
        entry["fault"] = fault
        if fault == "slow":
            time.sleep(faults.slow_seconds)
        elif fault == "reset":
            simulator.record(entry)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        elif fault in ("rate_limit", "server_error"):
            simulator.record({**entry, "status": 429 if fault == "rate_limit" else 503})
            self.send_error_envelope(fault, correlation_id)
            return
        try:
            body = self.answer(simulator, url.path, params, entry)
            status = 200
        except ApiError as error:
            status = entry["status"] = error.status
            body = orjson.dumps(
                {
                    "success": False,
                    "error": error.message,
                    "error_id": correlation_id,
                    "error_code": error.code,
                    "error_message": error.message,
                    "data": None,
                }
            )
        simulator.record(entry)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-PolyAI-Correlation-Id", correlation_id)
        if status == 200 and fault == "truncate":
            # Declares the whole body, sends half of it, hangs up: an incomplete read.
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        if status == 200 and fault == "invalid_json":
            # A complete response whose body is cut JSON: only parsing notices.
            body = body[: max(1, len(body) // 2)]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_error_envelope(self, fault: str, correlation_id: str) -> None:
        status, code = (429, "RATE_LIMITED") if fault == "rate_limit" else (503, "SERVICE_UNAVAILABLE")
        message = "Too many requests." if status == 429 else "The service is temporarily unavailable."
        body = orjson.dumps(
            {
                "success": False,
                "error": message,
                "error_id": correlation_id,
                "error_code": code,
                "error_message": message,
                "data": None,
            }
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-PolyAI-Correlation-Id", correlation_id)
        if status == 429:
            self.send_header("Retry-After", self.server.simulator.faults.retry_after)
        self.end_headers()
        self.wfile.write(body)

    def answer(self, simulator: Simulator, path: str, params: dict[str, list[str]], entry: dict) -> bytes:
        match = PATH.match(path)
        if match is None:
            raise ApiError(404, "NOT_FOUND", "No such endpoint.")
        version, account_id, project_id = match.groups()
        entry["version"] = version
        key = self.headers.get("x-api-key")
        if not key:
            raise ApiError(401, "UNAUTHORIZED", "Missing API key.")
        if key != simulator.config.api_key:
            raise ApiError(403, "FORBIDDEN", "The API key is not valid for this project and region.")
        if (account_id, project_id) != (simulator.config.account_id, simulator.config.project_id):
            raise ApiError(404, "PROJECT_NOT_FOUND", "Project ID does not exist.")
        query = parse_query(version, params)
        limit = _integer(params, "limit", 5, 1, simulator.config.max_limit)
        offset = _integer(params, "offset", 0, 0, None)
        options = simulator.options(
            version,
            include_latency=version != "v1" and bool(_boolean(params, "include_latency")),
            include_context_state=bool(_boolean(params, "include_context_state")),
            include_turn_metadata=bool(_boolean(params, "include_turn_metadata")),
        )
        now = simulator.now()
        selected = simulator.select(query, now)
        cursor_token = _one(params, "cursor")
        uses_cursor = version == "v3" or (version == "v2" and simulator.config.v2_cursor)
        if version != "v1":
            selected.sort(key=lambda c: c.id)  # keyset order, deliberately not chronological
        if uses_cursor and cursor_token:
            after = decode_cursor(cursor_token)
            selected = [c for c in selected if c.id > after]
            offset = 0
        page = selected[offset : offset + limit]
        more = len(selected) > offset + limit
        entry["returned"] = len(page)
        entry["ids"] = [c.id for c in page]
        parts = [b'{"conversations":[', b",".join(simulator.view_bytes(c, now, options) for c in page), b"]"]
        if more:
            parts.append(b',"next_offset":' + str(offset + limit).encode())
        if uses_cursor:
            cursor = encode_cursor(page[-1].id) if more and page else None
            parts.append(b',"cursor":' + orjson.dumps(cursor))
        if version == "v1":
            parts.append(b',"descriptions":' + orjson.dumps(V1_DESCRIPTIONS))
        parts.append(b"}")
        return b"".join(parts)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: Simulator


class SimulatorServer:
    """The simulator on 127.0.0.1 in a background thread; `start()` returns its base URL."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the simulator serves on localhost only")
        self.simulator = simulator
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def start(self) -> str:
        self._server = _Server(self._address, Handler)
        self._server.simulator = self.simulator
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
