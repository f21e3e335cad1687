"""The fixtures every test module can ask for by name (a pytest plugin, see tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
from tests.support.harness import T0, Harness, make_harness


@pytest.fixture
def world() -> Iterator[tuple[Simulator, str]]:
    """200 conversations over 4 hours, the clock standing 2 hours in (crash and CLI tests)."""
    config = SimConfig(seed=23, n_conversations=200, start=T0, end=T0 + timedelta(hours=4))
    with SimulatorServer(Simulator(config, SimClock(T0 + timedelta(hours=2)))) as server:
        yield server.simulator, server.base_url


@pytest.fixture
def small_world() -> tuple[SimConfig, SimClock]:
    config = SimConfig(
        seed=11,
        n_conversations=300,
        start=T0,
        end=T0 + timedelta(hours=6),
        late_arrival_fraction=0.1,
        long_running_fraction=0.05,
    )
    return config, SimClock(T0 + timedelta(hours=1))


@pytest.fixture
def harness(tmp_path: Path, small_world: tuple[SimConfig, SimClock]) -> Iterator[Harness]:
    config, clock = small_world
    yield from make_harness(tmp_path, config, clock, include_latency=True)
