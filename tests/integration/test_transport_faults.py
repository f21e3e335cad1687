"""What is not the API: a proxy's web page with status 200, a host that cannot be reached.

Both are settings or network problems: the CLI says so within seconds and exits 2, where it
used to retry for minutes. A slow or flaky API that is there keeps the whole retry policy.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.runner import expected_error
from sources.polyai.http.retries import connection_failure
from tests.support.command import run_cli
from tests.support.harness import Harness, finished_traffic, scheduled_env

# Python's start, dlt's imports and the few attempts a refused connection gets, with the
# default backoff; the retry policy these used to go through took minutes.
CLI_SECONDS = 45


def closed_port() -> int:
    """A local port nobody listens on: a connection to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_web_page_with_status_200_fails_at_once_naming_base_url(tmp_path: Path) -> None:
    with finished_traffic(seed=3, n_conversations=50, hours=3) as (simulator, base_url):
        simulator.faults.set_rates(html_page=1.0)
        started = time.monotonic()
        result = run_cli(tmp_path, env=scheduled_env(simulator, base_url, tmp_path / "proxy.duckdb"))
        seconds = time.monotonic() - started
        requests_made = simulator.stats.requests
    assert result.returncode == 2, result.stdout + result.stderr
    assert seconds < CLI_SECONDS and requests_made == 1, (seconds, requests_made)
    [line] = error_lines(result.stderr)
    assert "proxy" in line and "base_url" in line and base_url in line and "text/html" in line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("host", ["closed-port", "nonexistent.invalid"])
def test_an_api_that_cannot_be_reached_fails_in_seconds_naming_base_url(tmp_path: Path, host: str) -> None:
    """A refused connection and a name that does not resolve: `.invalid` never resolves."""
    base_url = f"http://127.0.0.1:{closed_port()}" if host == "closed-port" else f"http://{host}"
    env = {
        "SOURCES__POLYAI__API_KEY": "k-unreachable-1",
        "SOURCES__POLYAI__ACCOUNT_ID": "acc",
        "SOURCES__POLYAI__PROJECT_ID": "proj",
        "SOURCES__POLYAI__BASE_URL": base_url,
        "DESTINATION__DUCKDB__CREDENTIALS": str(tmp_path / "unreachable.duckdb"),
    }
    started = time.monotonic()
    result = run_cli(tmp_path, env=env)
    seconds = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    assert seconds < CLI_SECONDS, seconds
    [line] = error_lines(result.stderr)
    why = "no connection could be made" if host == "closed-port" else "does not resolve"
    assert why in line and "cannot be reached" in line and base_url in line, line
    assert "`base_url`" in line and "network" in line and "SOURCES__POLYAI__BASE_URL" in line
    assert "Traceback" not in result.stderr and "k-unreachable-1" not in result.stderr


def test_resets_after_connecting_keep_the_whole_retry_policy(harness: Harness) -> None:
    """The API is there but drops every connection: retried max_attempts times, not cut short."""
    harness.simulator.faults.set_rates(reset=1.0)
    with pytest.raises(PipelineStepFailed) as failure:
        harness.run(max_attempts=5, backoff_factor=0.01, concurrency=1)
    assert harness.simulator.stats.requests == 5
    assert expected_error(failure.value) is None  # a transient failure: exit 1, run again


def test_only_a_host_that_is_not_there_counts_as_unreachable() -> None:
    with pytest.raises(requests.ConnectionError) as refused:
        requests.get(f"http://127.0.0.1:{closed_port()}/", timeout=5)
    assert connection_failure(refused.value) == "no connection could be made (Connection refused)"
    with pytest.raises(requests.ConnectionError) as unresolved:
        requests.get("http://nonexistent.invalid/", timeout=5)
    assert connection_failure(unresolved.value) == "its host name does not resolve (DNS)"
    proxy = {"http": f"http://127.0.0.1:{closed_port()}"}
    with pytest.raises(requests.ConnectionError) as no_proxy:
        requests.get("http://api.example.invalid/", proxies=proxy, timeout=5)
    refused_by_proxy = "no connection could be made to the proxy (Connection refused)"
    assert connection_failure(no_proxy.value) == refused_by_proxy
    assert connection_failure(requests.ConnectTimeout("slow to accept")) is None
    assert connection_failure(requests.ConnectionError("Connection aborted.")) is None
