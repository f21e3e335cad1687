"""HTTP front: GET /{v1|v2|v3}/{account_id}/{project_id}/conversations on 127.0.0.1 only."""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from .query import ApiError, parse_request
from .simulator import Simulator

PATH = re.compile(r"^/(v1|v2|v3)/([^/]+)/([^/]+)/conversations/?$")
CORRELATION_HEADER = "X-PolyAI-Correlation-Id"
# Query parameters whose values never reach the request log, should a client put a key there.
_SECRET_PARAM = re.compile(r"key|token|secret|password", re.IGNORECASE)
# What a proxy or captive portal sends instead of the API's answer, with status 200.
SIGN_IN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    b'<body><form action="/login"><input name="user"></form></body></html>\n'
)
_FAULT_ERRORS = {
    "rate_limit": (429, "RATE_LIMITED", "Too many requests."),
    "server_error": (503, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable."),
}


def error_body(status: int, code: str, message: str, correlation_id: str) -> bytes:
    """The documented envelope; `error_id` repeats the correlation header for support."""
    return orjson.dumps(
        {
            "success": False,
            "error": message,
            "error_id": correlation_id,
            "error_code": code,
            "error_message": message,
            "data": None,
        }
    )


def _loggable(params: dict[str, list[str]]) -> dict[str, Any]:
    return {
        name: "<redacted>" if _SECRET_PARAM.search(name) else (values[0] if len(values) == 1 else values)
        for name, values in params.items()
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    simulator: Simulator


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as clients with connection pools expect
    disable_nagle_algorithm = True  # headers and body go out in two writes: no delayed-ACK stall

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header from the simulated clock, as a real API's comes from its own clock."""
        if timestamp is None:
            timestamp = self.server.simulator.now().timestamp()
        return formatdate(timestamp, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read the stats, and a log line could carry query values

    def do_GET(self) -> None:
        simulator = self.server.simulator
        echoed = self.headers.get("x-api-key") if simulator.config.echo_api_key else None
        correlation_id = str(uuid.uuid4()) if echoed is None else f"{uuid.uuid4()}-{echoed}"
        url = urlsplit(self.path)
        params = parse_qs(url.query, keep_blank_values=True)
        entry: dict[str, Any] = {
            "version": None,
            "params": _loggable(params),
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
        elif fault == "html_page":
            simulator.record(entry)
            self._send(200, SIGN_IN_PAGE, correlation_id, content_type="text/html; charset=utf-8")
            return
        elif fault in _FAULT_ERRORS:
            status, code, message = _FAULT_ERRORS[fault]
            if echoed is not None:
                message = f"{message} (request with key {echoed})"
            entry["status"] = status
            simulator.record(entry)
            extra = {"Retry-After": faults.retry_after} if status == 429 else {}
            self._send(status, error_body(status, code, message, correlation_id), correlation_id, extra)
            return
        try:
            body = self._answer(simulator, url.path, params, entry)
            status = 200
        except ApiError as error:
            status = entry["status"] = error.status
            body = error_body(error.status, error.code, error.message, correlation_id)
        simulator.record(entry)
        if status == 200 and fault == "truncate":
            # Declares the whole body, sends half, hangs up: the client sees an incomplete read.
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header(CORRELATION_HEADER, correlation_id)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        if status == 200 and fault == "invalid_json":
            body = body[: max(1, len(body) // 2)]  # complete response, cut JSON: only parsing notices
        self._send(status, body, correlation_id)

    def _not_found(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # drain the body so the connection stays usable
        correlation_id = str(uuid.uuid4())
        body = error_body(404, "NOT_FOUND", "No such endpoint.", correlation_id)
        self._send(404, body, correlation_id, head_only=self.command == "HEAD")

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _not_found

    def _send(
        self,
        status: int,
        body: bytes,
        correlation_id: str,
        extra: dict[str, str] | None = None,
        head_only: bool = False,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header(CORRELATION_HEADER, correlation_id)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _answer(
        self, simulator: Simulator, path: str, params: dict[str, list[str]], entry: dict[str, Any]
    ) -> bytes:
        match = PATH.match(path)
        if match is None:
            raise ApiError(404, "NOT_FOUND", "No such endpoint.")
        version = match.group(1)
        account_id, project_id = unquote(match.group(2)), unquote(match.group(3))
        entry["version"] = version
        config = simulator.config
        key = self.headers.get("x-api-key")
        if not key:
            raise ApiError(401, "UNAUTHORIZED", "Missing API key: send it in the x-api-key header.")
        if key != config.api_key:
            quoted = f" '{key}'" if config.echo_api_key else ""
            raise ApiError(403, "FORBIDDEN", f"The API key{quoted} is not valid for this project and region.")
        if (account_id, project_id) != (config.account_id, config.project_id):
            raise ApiError(404, "PROJECT_NOT_FOUND", "Project ID does not exist.")
        request = parse_request(version, params, config.max_limit, config.v2_cursor)
        body, ids = simulator.page(request)
        entry["returned"] = len(ids)
        entry["ids"] = ids
        return body


class SimulatorServer:
    """The simulator in a daemon thread; `start()` returns the base URL (also `base_url`)."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the simulator serves on 127.0.0.1 only")
        self.simulator = simulator
        self._address = ("127.0.0.1", port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return int(self._server.server_address[1])

    def start(self) -> str:
        if self._server is not None:
            return self.base_url
        server = _Server(self._address, Handler)
        server.simulator = self.simulator
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="polyai-simulator", daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self.port}"
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
