"""The command's progress on stderr (a live line on a terminal, plain lines on a pipe) and
--verbose's log of every request: end to end, against simulators slowed down to last seconds."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
from polyai_simulator.faults import Faults
from tests.support.command import run_cli
from tests.support.terminal import run_on_terminal

ACCOUNT = "acc-progress"
KEYS = {"proj-a": "sk-progress-a-5c1e9f0b7d", "proj-b": "sk-progress-b-83aa02e6f4"}
# Each answer waits this long: with small pages, a run lasts a few seconds.
LATENCY = 0.25
PAGE = "100"

SUMMARY = re.compile(r"loaded (\d+) conversation rows and (\d+) turn rows")
PLAIN = re.compile(
    r"^progress: (\d+)% of the run's span, (?:started_at read to [\d-]+ [\d:]+ UTC, )?(\d+) conversations, "
    r"(\d+) turns, (\d+) conversations/s, (\d+) requests, (\d+) retries, (.+)$"
)
FRAME = re.compile(r"(\d+)%\|.*\| (.+?), .*?(\d+) conv, (\d+) turns, \d+ conv/s, (\d+) req, (\d+) retries")


@dataclass
class Projects:
    simulators: dict[str, Simulator]
    base_urls: dict[str, str]

    def env(self, database: Path, **settings: str) -> dict[str, str]:
        first = next(iter(self.simulators.values()))
        entries = [
            {"project_id": project, "api_key": KEYS[project], "base_url": self.base_urls[project]}
            for project in self.simulators
        ]
        return {
            "SOURCES__POLYAI__PROJECTS": json.dumps(entries),
            "SOURCES__POLYAI__ACCOUNT_ID": ACCOUNT,
            "SOURCES__POLYAI__START_DATE": first.config.start.isoformat(),
            "SOURCES__POLYAI__LIMIT": PAGE,
            "SOURCES__POLYAI__BACKOFF_FACTOR": "0.01",
            "DESTINATION__DUCKDB__CREDENTIALS": str(database),
            **{f"SOURCES__POLYAI__{name.upper()}": value for name, value in settings.items()},
        }

    def requests(self) -> int:
        return sum(simulator.stats.requests for simulator in self.simulators.values())


@pytest.fixture
def projects() -> Iterator[Projects]:
    """Two projects on the real clock, whose traffic ended an hour ago: counts do not race it."""
    clock = SimClock()
    now = clock.now()
    with ExitStack() as stack:
        simulators, base_urls = {}, {}
        for seed, project in enumerate(KEYS, start=5):
            config = SimConfig(
                seed=seed,
                n_conversations=700,
                start=now - timedelta(hours=30),
                end=now - timedelta(hours=1),
                account_id=ACCOUNT,
                project_id=project,
                api_key=KEYS[project],
            )
            server = stack.enter_context(SimulatorServer(Simulator(config, clock)))
            server.simulator.faults.latency_seconds = LATENCY
            simulators[project], base_urls[project] = server.simulator, server.base_url
        yield Projects(simulators, base_urls)


def summary_figures(stdout: str) -> tuple[int, int, int]:
    """Conversations, turns and requests of the command's summary."""
    loaded = SUMMARY.search(stdout)
    requests = re.search(r"^API requests: (\d+)$", stdout, re.MULTILINE)
    assert loaded is not None and requests is not None, stdout
    return int(loaded[1]), int(loaded[2]), int(requests[1])


def rows(database: Path) -> int:
    with duckdb.connect(str(database), read_only=True) as connection:
        return int(connection.sql("SELECT count(*) FROM polyai.conversations").fetchall()[0][0])


def non_decreasing(values: list[int]) -> bool:
    return all(earlier <= later for earlier, later in itertools.pairwise(values))


def test_a_terminal_shows_a_live_line_that_ends_on_the_figures_loaded(
    tmp_path: Path, projects: Projects
) -> None:
    """Both projects, in several loads: the line's counts add up over all of them."""
    database = tmp_path / "terminal.duckdb"
    run = run_on_terminal(tmp_path, env=projects.env(database, max_conversations_per_load="500"))
    assert run.returncode == 0, run.terminal
    conversations, turns, requests = summary_figures(run.stdout)
    assert re.search(r"in [2-9]\d* loads", run.stdout), run.stdout
    frames = [match for frame in run.frames() if (match := FRAME.search(frame))]
    assert len(frames) >= 3, run.terminal
    assert non_decreasing([int(frame[1]) for frame in frames])
    for figure in (3, 4, 5):
        assert non_decreasing([int(frame[figure]) for frame in frames]), run.terminal
    last = frames[-1]
    assert last[2].startswith("done in") and last[1] == "100", run.terminal
    assert (int(last[3]), int(last[4]), int(last[5])) == (conversations, turns, requests)
    # Loads overlap by the lookback: the rows loaded include the ones read twice.
    assert conversations >= rows(database) > 0
    assert int(last[6]) == projects.requests() - requests
    assert any(frame[2].startswith("ETA ") for frame in frames), run.terminal
    for key in KEYS.values():
        assert key not in run.stdout + run.terminal


def test_a_pipe_gets_a_plain_line_at_each_interval_and_quiet_gets_none(
    tmp_path: Path, projects: Projects
) -> None:
    started = time.monotonic()
    result = run_cli(tmp_path, "--progress-every", "0.5", env=projects.env(tmp_path / "plain.duckdb"))
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("progress:")]
    matches = [PLAIN.match(line) for line in lines]
    assert lines and all(matches), result.stderr
    figures = [[int(value) for value in match.groups()[:6]] for match in matches if match]
    assert 3 <= len(figures) <= seconds / 0.5 + 2, (seconds, lines)
    for column in range(6):
        if column != 3:  # the rate goes up and down
            assert non_decreasing([figure[column] for figure in figures]), lines
    *periodic, last = matches
    assert last is not None and last[7].startswith("done in") and last[1] == "100"
    assert all(match is not None and not match[7].startswith("done") for match in periodic)
    conversations, turns, requests = summary_figures(result.stdout)
    assert figures[-1][1:3] == [conversations, turns] and figures[-1][4] == requests
    assert conversations == rows(tmp_path / "plain.duckdb")

    quiet = run_cli(
        tmp_path, "--quiet", "--progress-every", "0.5", env=projects.env(tmp_path / "quiet.duckdb")
    )
    assert quiet.returncode == 0, quiet.stderr
    assert summary_figures(quiet.stdout)[0] == conversations
    assert "progress" not in quiet.stderr

    # A run shorter than the interval (the default, 10 s) prints no line.
    for simulator in projects.simulators.values():
        simulator.faults.latency_seconds = 0
    again = run_cli(tmp_path, env=projects.env(tmp_path / "plain.duckdb"))
    assert again.returncode == 0, again.stderr
    assert "progress" not in again.stderr and SUMMARY.search(again.stdout)


def test_verbose_logs_each_request_with_its_retries_and_never_the_key(
    tmp_path: Path, projects: Projects
) -> None:
    for seed, simulator in enumerate(projects.simulators.values()):
        simulator.faults = Faults(seed=seed)
        simulator.faults.set_rates(server_error=0.2)
    result = run_cli(tmp_path, "--verbose", env=projects.env(tmp_path / "verbose.duckdb"))
    assert result.returncode == 0, result.stderr
    _, _, requests = summary_figures(result.stdout)
    attempts = [line for line in result.stderr.splitlines() if " GET /v3/" in line]
    served = [entry for simulator in projects.simulators.values() for entry in simulator.stats.request_log]
    assert len(attempts) == len(served) > requests, result.stderr
    failed = [entry for entry in served if entry["status"] == 503]
    assert failed and sum(": 503 in " in line for line in attempts) == len(failed)
    assert all(re.search(r": \d{3} in \d+ ms", line) for line in attempts), attempts
    for entry in served:  # each request the simulators answered is in the log, as sent
        start = entry["params"]["start_time"].replace(":", "%3A")
        assert any(f"start_time={start}" in line for line in attempts), entry
    retries = [line for line in result.stderr.splitlines() if "retrying a request" in line]
    assert len(retries) == len(served) - requests
    assert "Extract polyai" in result.stderr and "Load polyai" in result.stderr  # dlt's progress
    for key in KEYS.values():
        assert key not in result.stdout + result.stderr
