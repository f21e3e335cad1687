"""The benchmark's verdicts on the issue's targets, judged from rows (pure: no process is run)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bench_report import (
    BASELINE,
    FLOOR,
    FLOOR_CASE,
    INCREMENTAL,
    SEQUENTIAL,
    Result,
    render_table,
    target_verdicts,
)


def row(case: str, name: str, seconds: float, peak: float = 250.0, note: str = "", **steps: float) -> Result:
    return Result(case, name, seconds, peak, 1, 1000, 10_000, note, steps.get("extract"), steps.get("load"))


def run_rows(**overrides: Result) -> list[Result]:
    rows = {
        "floor": row(FLOOR_CASE, FLOOR, 1.0, 110),
        "10k base": row("10k, 0 ms", BASELINE, 1.5, 99),
        "10k p1": row("10k, 0 ms", "pipeline, 1 connection", 4.5, 260, extract=2.0, load=1.0),
        "10k p10": row("10k, 0 ms", "pipeline, 10 connections", 4.4, 257, extract=1.9, load=1.0),
        "10k inc": row("10k, 0 ms", INCREMENTAL, 2.0, 157),
        "10k defaults": row("10k, 0 ms", "pipeline, 10 conn., DuckDB defaults", 3.9, 548),
        "100k base": row("100k, 0 ms", BASELINE, 10.0, 99),
        "100k p1": row("100k, 0 ms", "pipeline, 1 connection", 11.0, 282, extract=8.0, load=2.0),
        "100k p10": row("100k, 0 ms", "pipeline, 10 connections", 20.0, 288, extract=9.0, load=5.0),
        "100k inc": row("100k, 0 ms", INCREMENTAL, 2.1, 157),
        "lat seq": row("10k, 200 ms", SEQUENTIAL, 34.0, 99),
        "lat p10": row("10k, 200 ms", "pipeline, 10 connections", 7.7, 246),
    }
    rows.update(overrides)
    return list(rows.values())


def test_each_target_is_judged_from_the_rows() -> None:
    verdicts = "\n".join(target_verdicts(run_rows(), concurrency=10))
    # 10k: 4.4 / 1.5; a run that loads nothing already took 2.0 / 1.5.
    assert "10k, 0 ms: NOT MET, 2.93x" in verdicts
    assert "a run that loads nothing took 1.33x: out of reach here" in verdicts
    assert "100k, 0 ms: met, 1.10x" in verdicts
    assert "dlt's extract step alone 0.80x" in verdicts  # 8.0 / 10.0, the faster extract
    # DuckDB's defaults (548 MB) are reported in the table, not judged against the target.
    assert "peak RSS at most 300 MB at every size: met (10k, 0 ms 260 MB, 100k, 0 ms 288 MB" in verdicts
    assert "10k, 200 ms, at least 4x faster than sequential paging: met, 4.4x with 10 connections" in verdicts
    assert "10k, 0 ms: met, 1 request(s), 1.00 s beyond the imports" in verdicts


def test_a_capped_run_does_not_count_and_a_missed_target_says_so() -> None:
    killed = "killed at 4100 MB (memory cap)"
    results = run_rows(
        **{
            "100k p1": row("100k, 0 ms", "pipeline, 1 connection", 5.0, 4100, note=killed),
            "100k p10": row("100k, 0 ms", "pipeline, 10 connections", 20.0, 290),
            "lat p10": row("10k, 200 ms", "pipeline, 10 connections", 9.0, 246),
            "10k inc": row("10k, 0 ms", INCREMENTAL, 3.5, 157),
        }
    )
    verdicts = "\n".join(target_verdicts(results, concurrency=10))
    assert "100k, 0 ms: NOT MET, 2.00x" in verdicts  # the run killed after 5 s is not a backfill
    # ... but its peak counts against the memory target.
    assert "peak RSS at most 300 MB at every size: NOT MET" in verdicts and "100k, 0 ms 4100 MB" in verdicts
    assert "NOT MET, 3.8x with 10 connections" in verdicts
    assert "10k, 0 ms: NOT MET, 1 request(s), 2.50 s beyond the imports" in verdicts


def test_the_table_shows_the_step_times_where_a_run_reported_them() -> None:
    table = render_table(run_rows())
    assert "| 2.00 / 1.00 " in table  # 10k, 1 connection: extract / load
    baseline_line = next(line for line in table.splitlines() if "10k, 0 ms" in line and BASELINE in line)
    assert "| - " in baseline_line


def test_a_size_where_every_pipeline_run_was_capped_is_not_met() -> None:
    capped = "killed after 600 s (time cap)"
    results = run_rows(
        **{
            "100k p1": row("100k, 0 ms", "pipeline, 1 connection", 600.0, 280, note=capped),
            "100k p10": row("100k, 0 ms", "pipeline, 10 connections", 600.0, 280, note=capped),
        }
    )
    verdicts = target_verdicts(results, concurrency=10)
    assert "  100k, 0 ms: NOT MET, no run of the pipeline finished within the caps" in verdicts
