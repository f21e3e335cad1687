"""Text exactly as the API sent it, wherever the destination can hold it: NUL and lone surrogates.

A lone UTF-16 surrogate (`\\ud800` in the JSON) is no character: no destination stores it, and
it is replaced by U+FFFD everywhere. NUL is kept where the destination stores it (DuckDB,
BigQuery and Snowflake, here through their emulators) and replaced by U+FFFD on PostgreSQL,
whose `text` drops it and whose `jsonb` refuses it. Either way the change is counted in the
run summary and a warning, and the next runs go on.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from polyai_simulator import Faults, SimClock, SimConfig
from sources.polyai.shaping.text_repair import destination_keeps_nul
from tests.support.harness import T0, make_harness
from tests.support.truth import compare_tables
from tests.support.warehouses import Warehouse, destination_harness

LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Where the simulator's odd_text mode puts its characters (polyai_simulator/odd_text.py).
ODD_COLUMNS = (
    "conversations.handoff_reason",
    "conversations.metrics",
    "conversations.state",
    "turns.user_input",
)


def as_loaded(value: Any, keep_nul: bool) -> Any:
    """A value of the truth as the destination should hold it: odd characters as U+FFFD."""
    if isinstance(value, str):
        value = LONE_SURROGATE.sub("\ufffd", value)
        return value if keep_nul else value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {as_loaded(key, keep_nul): as_loaded(item, keep_nul) for key, item in value.items()}
    if isinstance(value, list):
        return [as_loaded(item, keep_nul) for item in value]
    return value


def odd_values(truth: list[dict[str, Any]], keep_nul: bool) -> Counter[str]:
    """Per column, the values of the truth that the destination cannot hold as they are."""
    counts: Counter[str] = Counter()
    for conversation in truth:
        for name, value in conversation.items():
            if name == "turns":
                for turn in value:
                    counts.update(f"turns.{k}" for k, v in turn.items() if as_loaded(v, keep_nul) != v)
            elif as_loaded(value, keep_nul) != value:
                counts[f"conversations.{name}"] += 1
    return counts


# --------------------------------------------------------------------------- end to end, DuckDB


def odd_world(mode: str) -> tuple[SimConfig, SimClock]:
    config = SimConfig(
        seed=29, n_conversations=80, start=T0, end=T0 + timedelta(hours=2), odd_text=mode, odd_text_every=3
    )
    return config, SimClock(T0 + timedelta(hours=14))  # everything finished: each read once


@pytest.mark.parametrize("mode", ["nul", "lone_surrogate"])
def test_duckdb_keeps_nul_and_replaces_lone_surrogates_and_the_next_run_goes_on(
    tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    config, clock = odd_world(mode)
    for harness in make_harness(tmp_path, config, clock, name=f"odd_{mode}", limit=7):
        # Broken bodies on top: a page cut short is fetched again, with or without odd text.
        harness.simulator.faults = Faults(seed=3)
        harness.simulator.faults.set_rates(invalid_json=0.2, truncate=0.1)
        with caplog.at_level(logging.WARNING, logger="sources.polyai"):
            summary = harness.run()
        truth = harness.simulator.truth()
        expected = odd_values(truth, keep_nul=True)
        assert set(expected) == (set(ODD_COLUMNS) if mode == "lone_surrogate" else set())
        assert summary.replaced_text == dict(expected)
        warnings = [r.getMessage() for r in caplog.records if "U+FFFD" in r.getMessage()]
        if expected:
            assert len(warnings) == 1 and f"in {sum(expected.values())} values" in warnings[0]
            assert "turns.user_input" in warnings[0] and "U+FFFD" in summary.render()
        else:
            assert warnings == []
        assert any(entry["fault"] for entry in harness.simulator.stats.request_log)
        check_loaded(harness, truth, keep_nul=True)
        harness.clock.advance(timedelta(minutes=5))
        again = harness.run(lookback_minutes=24 * 60)  # the same pages read again: not stuck
        assert again.conversations == len(truth)
        assert again.replaced_text == summary.replaced_text
        check_loaded(harness, truth, keep_nul=True)


def check_loaded(harness: Any, truth: list[dict[str, Any]], keep_nul: bool) -> None:
    odd = [c for c in truth if as_loaded(c, keep_nul=False) != c]
    assert len(odd) >= 8, "the scenario has too few conversations with odd text"
    problems = compare_tables(
        as_loaded(truth, keep_nul),
        harness.rows("conversations", "id"),
        harness.rows("turns", "conversation_id, turn_index"),
    )
    assert not problems, "\n".join(problems[:20])


# --------------------------------------------------------------------------- the warehouses


@pytest.mark.parametrize("mode", ["nul", "lone_surrogate"])
def test_warehouses_hold_the_text_they_can_and_the_rest_is_replaced_and_counted(
    tmp_path: Path,
    warehouse: Warehouse,
    mode: str,
) -> None:
    for harness in destination_harness(tmp_path, warehouse, f"polyai_odd_{mode}"):
        harness.simulator.config.odd_text = mode
        harness.simulator.config.odd_text_every = 3
        harness.clock.advance(timedelta(hours=14))  # everything finished: each read once
        summary = harness.run()
        keep_nul = destination_keeps_nul(warehouse.name)
        truth = harness.simulator.truth(include_latency=True)
        assert summary.replaced_text == dict(odd_values(truth, keep_nul))
        if mode == "nul":
            assert bool(summary.replaced_text) == (warehouse.name == "postgres")
        check_loaded(harness, truth, keep_nul)
        harness.clock.advance(timedelta(minutes=5))
        again = harness.run(lookback_minutes=24 * 60)  # the same rows merged again: not stuck
        assert again.conversations == len(truth)
        assert again.replaced_text == summary.replaced_text
        check_loaded(harness, truth, keep_nul)
