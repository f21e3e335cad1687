"""Bad settings: named in the message with an example, before any request is sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
from sources.polyai import ConfigurationError, polyai_source
from tests.support.harness import T0


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Simulator, str]]:
    simulator = Simulator(SimConfig(n_conversations=10, start=T0, end=T0 + timedelta(hours=1)), SimClock(T0))
    server = SimulatorServer(simulator)
    yield simulator, server.start()
    server.stop()


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"api_key": ""}, "api_key"),
        ({"account_id": " "}, "account_id"),
        ({"project_id": ""}, "project_id"),
        ({"base_url": None, "region": "eu-2"}, "region"),
        ({"base_url": "ftp://example.com"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"start_date": "yesterday-ish"}, "start_date"),
        ({"start_date": "2999-01-01T00:00:00Z"}, "start_date"),
        ({"client_env": "prod"}, "client_env"),
        ({"api_version": "v4"}, "api_version"),
        ({"variant_id": "v1", "variant_name": "Main"}, "variant_name"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"lookback_minutes": -5}, "lookback_minutes"),
        ({"max_pending_hours": -1}, "max_pending_hours"),
        ({"window_hours": -2}, "window_hours"),
        ({"concurrency": 0}, "concurrency"),
        ({"max_conversations_per_load": -5}, "max_conversations_per_load"),
        ({"max_conversations_per_load": "lots"}, "max_conversations_per_load"),
        ({"phone_numbers": "hash"}, "pii_salt"),
    ],
)
def test_bad_setting_is_named_and_nothing_is_requested(
    served: tuple[Simulator, str], override: dict[str, Any], setting: str
) -> None:
    simulator, base_url = served
    simulator.reset_stats()
    options: dict[str, Any] = {
        "api_key": simulator.config.api_key,
        "account_id": simulator.config.account_id,
        "project_id": simulator.config.project_id,
        "base_url": base_url,
        "start_date": T0.isoformat(),
        "clock": simulator.clock.now,
        **override,
    }
    with pytest.raises(ConfigurationError) as raised:
        polyai_source(**options)
    message = str(raised.value)
    assert f"`{setting}`" in message
    assert "Example:" in message
    assert simulator.stats.requests == 0
