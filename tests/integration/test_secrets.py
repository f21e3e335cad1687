"""A server that quotes the key back: the key never reaches output, logs, dlt's trace or files.

The simulator's `echo_api_key` mode puts the key it received into its 403 and 5xx messages and
into the correlation id header of every answer, so each error path carries it.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from polyai_simulator import Simulator
from sources.polyai import PolyAIAPIError
from sources.polyai.redaction import MASK
from tests.support.command import run_cli
from tests.support.harness import finished_traffic, make_harness

KEY = "sk-live-9d4e2a7c1b3f5e80-echo-marker"
SALT = "salt-6c1f8e3a2d9b-echo-marker"


@pytest.fixture
def echoing_simulator() -> Iterator[tuple[Simulator, str]]:
    with finished_traffic(seed=4, n_conversations=80, hours=5) as (simulator, base_url):
        simulator.config.api_key = KEY
        simulator.config.echo_api_key = True
        yield simulator, base_url


def leaks(secret: str, texts: list[str], folder: Path) -> list[str]:
    """Where the secret shows: which of the texts, which files (bytes, pickles included)."""
    found = [f"output #{index}" for index, text in enumerate(texts) if secret in text]
    found += [
        str(path) for path in folder.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()
    ]
    return found


def test_a_key_quoted_back_by_the_server_is_masked_in_every_output_trace_and_file(
    tmp_path: Path, echoing_simulator: tuple[Simulator, str]
) -> None:
    simulator, base_url = echoing_simulator
    env = {
        "SOURCES__POLYAI__API_KEY": KEY,
        "SOURCES__POLYAI__ACCOUNT_ID": simulator.config.account_id,
        "SOURCES__POLYAI__PROJECT_ID": simulator.config.project_id,
        "SOURCES__POLYAI__BASE_URL": base_url,
        "SOURCES__POLYAI__START_DATE": simulator.config.start.isoformat(),
        "SOURCES__POLYAI__PHONE_NUMBERS": "hash",
        "SOURCES__POLYAI__PII_SALT": SALT,
        "SOURCES__POLYAI__MAX_ATTEMPTS": "2",
        "SOURCES__POLYAI__BACKOFF_FACTOR": "0.01",
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "echo.duckdb"),
        "RUNTIME__LOG_LEVEL": "INFO",
    }
    outputs: list[str] = []

    def run(expected_code: int, *expected: str) -> None:
        result = run_cli(tmp_path, "--verbose", env=env)
        outputs.extend([result.stdout, result.stderr])
        assert result.returncode == expected_code, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        for text in expected:
            assert text in result.stderr, result.stderr[-3000:]

    run(0)  # every answer's correlation id carries the key
    simulator.faults.set_rates(invalid_json=1.0)
    run(2, "not a JSON object", "correlation id", MASK)  # the id of a 200 that did not parse
    simulator.faults.set_rates(invalid_json=0.0, server_error=1.0)
    run(2, "503", f"request with key {MASK}")  # the 5xx message quotes it
    simulator.faults.set_rates(server_error=0.0)
    simulator.config.api_key = "rotated-key-of-the-server"
    run(2, "403", f"The API key '{MASK}' is not valid")  # the refusal quotes it
    trace = dlt_command(tmp_path, "pipeline", "--pipelines-dir", str(tmp_path / "pipelines"))
    outputs += [trace.stdout, trace.stderr]
    assert trace.returncode == 0 and "403" in trace.stdout, trace.stdout + trace.stderr

    assert (tmp_path / "pipelines" / "polyai_conversations" / "trace.pickle").exists()
    for secret in (KEY, SALT):
        assert leaks(secret, outputs, tmp_path) == [], f"{secret} leaked"


def dlt_command(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`dlt pipeline … polyai_conversations trace`: what dlt shows of the last run's trace."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    environment["DLT_DATA_DIR"] = str(cwd / "dlt_data")
    command = [sys.executable, "-m", "dlt", *args, "polyai_conversations", "trace"]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def test_a_library_run_raises_and_traces_the_refusal_without_the_key(
    tmp_path: Path, echoing_simulator: tuple[Simulator, str]
) -> None:
    """Without the CLI's last-line masking: the error is built without the key."""
    simulator, _ = echoing_simulator
    config, clock = simulator.config, simulator.clock
    for harness in make_harness(tmp_path, config, clock, name="echo_lib", max_attempts=2):
        harness.run()
        config.api_key = "rotated-key-of-the-server"
        with pytest.raises(Exception) as raised:
            harness.run(api_key=KEY)
        chain, current = [], raised.value
        while current is not None:
            chain.append(current)
            current = current.__cause__ or current.__context__
        [refusal] = [error for error in chain if isinstance(error, PolyAIAPIError)]
        assert refusal.status == 403 and MASK in refusal.error_message  # type: ignore[operator]
        assert MASK in (refusal.correlation_id or "")
        messages = [str(error) for error in chain] + [repr(vars(refusal))]
        trace = harness.pipeline.last_trace
        assert trace is not None
        messages.append(repr(pickle.dumps(trace)))
        assert leaks(KEY, messages, tmp_path) == []


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    """Answers a redirect to `location` (when set) or a 401, recording each request's headers."""

    location: str | None = None
    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append(dict(self.headers))
        if self.location is not None:
            self.send_response(307)
            self.send_header("Location", self.location + self.path)
        else:
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[RecordingHandler]) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_to_another_host_does_not_take_the_key_along(tmp_path: Path) -> None:
    """requests drops `Authorization` on a redirect to another host, not the API's own key header."""

    class Elsewhere(RecordingHandler):
        seen: ClassVar[list[dict[str, str]]] = []

    class Redirector(RecordingHandler):
        seen: ClassVar[list[dict[str, str]]] = []

    with serving(Elsewhere) as other_port, serving(Redirector) as port:
        Redirector.location = f"http://localhost:{other_port}"
        with finished_traffic(seed=4, n_conversations=10, hours=2) as (simulator, _):
            for harness in make_harness(tmp_path, simulator.config, simulator.clock, name="redirect"):
                with pytest.raises(Exception, match="401"):
                    harness.run(api_key=KEY, base_url=f"http://127.0.0.1:{port}", max_attempts=1)
    assert Redirector.seen and Elsewhere.seen, "the redirect should have been followed"
    assert all(headers.get("x-api-key") == KEY for headers in Redirector.seen)
    assert not [headers for headers in Elsewhere.seen if KEY in repr(headers)], Elsewhere.seen
