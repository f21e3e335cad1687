"""The run summary: dlt's step times read from a trace and added up over the loads of a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from pipelines.runner import RunSummary, combine, step_seconds

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def step(name: str, start_seconds: float, seconds: float | None) -> SimpleNamespace:
    finished = None if seconds is None else T0 + timedelta(seconds=start_seconds + seconds)
    return SimpleNamespace(step=name, started_at=T0 + timedelta(seconds=start_seconds), finished_at=finished)


def summary(**step_times: float) -> RunSummary:
    return RunSummary(
        conversations=1,
        turns=2,
        pending=0,
        cursor=None,
        requests=1,
        expired=0,
        hidden_transcripts=0,
        new_columns=[],
        load_info=None,
        step_seconds=step_times,
    )


def test_step_seconds_come_from_the_trace_in_dlts_order() -> None:
    # A run that first finished a pending package (normalize, load) and then did its own load.
    trace = SimpleNamespace(
        steps=[
            step("normalize", 0, 0.25),
            step("load", 0.25, 1.0),
            step("extract", 1.25, 2.0),
            step("normalize", 3.25, 0.5),
            step("load", 3.75, 1.5),
            step("run", 0, 5.25),
            step("load", 6, None),  # not finished: not counted
        ]
    )
    assert step_seconds(trace) == {"extract": 2.0, "normalize": 0.75, "load": 2.5}  # type: ignore[arg-type]
    assert step_seconds(None) == {}


def test_combine_adds_up_the_steps_of_every_load() -> None:
    combined = combine([summary(extract=2.0, normalize=0.5, load=1.0), summary(extract=1.0, load=0.5)])
    assert combined.step_seconds == {"extract": 3.0, "normalize": 0.5, "load": 1.5}
    assert combined.loads == 2
    assert "time in dlt's steps: extract 3.00 s, normalize 0.50 s, load 1.50 s" in combined.render()
    assert "time in dlt's steps" not in summary().render()
