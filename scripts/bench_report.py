"""The benchmark's report: one row per contender, and the issue's targets judged from the rows.

Kept apart from `bench.py`, which measures; nothing here imports more than the standard library,
so that the baseline's child process pays for nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Result:
    case: str
    name: str
    seconds: float
    peak_rss_mb: float
    requests: int
    conversations: int
    turns: int
    note: str = ""
    # Seconds in dlt's extract and load steps (this pipeline's runs only).
    extract_seconds: float | None = None
    load_seconds: float | None = None


def connections_label(concurrency: int) -> str:
    return f"pipeline, {concurrency} connection{'s' if concurrency > 1 else ''}"


# --- the table -------------------------------------------------------------------------------


FLOOR_CASE = "-"
FLOOR = "imports only (floor)"
COLUMNS = (
    "case",
    "contender",
    "seconds",
    "x baseline",
    "conv/s",
    "turns/s",
    "peak RSS MB",
    "requests",
    "extract / load s",
    "note",
)


def table_rows(results: list[Result]) -> list[tuple[str, ...]]:
    """One row per result; `x baseline` divides by the first result of the same case."""
    baselines: dict[str, float] = {}
    rows = []
    for r in results:
        base = baselines.setdefault(r.case, r.seconds) if r.case != FLOOR_CASE else 0.0
        rows.append(
            (
                r.case,
                r.name,
                f"{r.seconds:.2f}",
                f"{r.seconds / base:.2f}" if base else "-",
                f"{r.conversations / r.seconds:,.0f}" if r.conversations else "-",
                f"{r.turns / r.seconds:,.0f}" if r.turns else "-",
                f"{r.peak_rss_mb:.0f}",
                str(r.requests) if r.requests >= 0 else "-",
                _steps(r),
                r.note,
            )
        )
    return rows


def _steps(result: Result) -> str:
    if result.extract_seconds is None or result.load_seconds is None:
        return "-"
    return f"{result.extract_seconds:.2f} / {result.load_seconds:.2f}"


def render_table(results: list[Result]) -> str:
    rows = [COLUMNS, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


# --- the targets, judged from the results --------------------------------------------

BASELINE = "baseline fetch + parse"
SEQUENTIAL = "sequential paging + parse"
INCREMENTAL = "incremental, nothing new"
TIME_TARGET, MEMORY_TARGET_MB, LATENCY_TARGET, INCREMENTAL_TARGET_S = 1.2, 300.0, 4.0, 2.0
# Large pages behind a slow API (issue 19, "both cores"): the pipeline's time over sequential paging's.
LARGE_PAGE_TARGET = 0.3
# A backfill whose rows are written once (issue 19, "written once"), against the same baseline.
WRITTEN_ONCE_TARGET = 1.5


def _met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def _by_case(results: list[Result]) -> dict[str, dict[str, Result]]:
    cases: dict[str, dict[str, Result]] = {}
    for result in results:
        cases.setdefault(result.case, {})[result.name] = result
    return cases


def _pipeline_runs(rows: dict[str, Result]) -> list[Result]:
    """The pipeline's runs with this repository's settings (not DuckDB's defaults), capped or not."""
    return [
        result
        for name, result in rows.items()
        if (name.startswith("pipeline, ") and "defaults" not in name) or name == INCREMENTAL
    ]


def _backfills(rows: dict[str, Result]) -> list[Result]:
    """The pipeline's backfills that finished within the caps."""
    return [result for result in _pipeline_runs(rows) if result.name != INCREMENTAL and not result.note]


def time_verdict(case: str, rows: dict[str, Result], target: float = TIME_TARGET) -> str:
    backfills = _backfills(rows)
    if not backfills:
        return f"  {case}: NOT MET, no run of the pipeline finished within the caps"
    base = rows[BASELINE].seconds
    best = min(r.seconds for r in backfills) / base
    line = f"  {case}: {_met(best <= target)}, {best:.2f}x (the faster of the pipeline's runs)"
    if INCREMENTAL in rows and rows[INCREMENTAL].seconds / base > target:
        # A backfill does all that a run with nothing new does, and more.
        line += f"; a run that loads nothing took {rows[INCREMENTAL].seconds / base:.2f}x: out of reach here"
    extracts = [r.extract_seconds for r in backfills if r.extract_seconds is not None]
    if extracts:
        line += f"; dlt's extract step alone {min(extracts) / base:.2f}x"
    return line


def memory_verdict(cases: dict[str, dict[str, Result]]) -> list[str]:
    # A run killed at the memory cap counts with the memory it had reached.
    runs = {case: _pipeline_runs(rows) for case, rows in cases.items()}
    peaks = {case: max(run.peak_rss_mb for run in case_runs) for case, case_runs in runs.items() if case_runs}
    if not peaks:
        return []
    top = max(peaks.values())
    spread = ", ".join(f"{case} {peak:.0f} MB" for case, peak in peaks.items())
    verdict = _met(top <= MEMORY_TARGET_MB)
    return [f"- peak RSS at most {MEMORY_TARGET_MB:.0f} MB at every size: {verdict} ({spread})"]


def _finished_run(rows: dict[str, Result], concurrency: int) -> Result | None:
    """The pipeline's run with `concurrency` connections, if it finished within the caps."""
    run = rows.get(connections_label(concurrency))
    return run if run is not None and not run.note else None


def latency_verdict(case: str, rows: dict[str, Result], concurrency: int) -> str:
    target = f"- {case}, at least {LATENCY_TARGET:.0f}x faster than sequential paging"
    run = _finished_run(rows, concurrency)
    if run is None:
        return f"{target}: NOT MET, no finished run with {concurrency} connections"
    speedup = rows[SEQUENTIAL].seconds / run.seconds
    return f"{target}: {_met(speedup >= LATENCY_TARGET)}, {speedup:.1f}x with {concurrency} connections"


def large_page_verdict(case: str, rows: dict[str, Result], concurrency: int) -> str:
    target = f"- {case}, pages of 1000, at most {LARGE_PAGE_TARGET}x sequential paging"
    run = _finished_run(rows, concurrency)
    if run is None:
        return f"{target}: NOT MET, no finished run with {concurrency} connections"
    ratio = run.seconds / rows[SEQUENTIAL].seconds
    extract = run.extract_seconds
    detail = f"; dlt's extract step {extract / rows[SEQUENTIAL].seconds:.2f}x" if extract else ""
    verdict = _met(ratio <= LARGE_PAGE_TARGET)
    return f"{target}: {verdict}, {ratio:.2f}x with {concurrency} connections{detail}"


def incremental_verdict(case: str, rows: dict[str, Result], floor: Result | None) -> str:
    run = rows[INCREMENTAL]
    beyond = run.seconds - (floor.seconds if floor else 0.0)
    return (
        f"  {case}: {_met(beyond < INCREMENTAL_TARGET_S and not run.note)}, {run.requests} request(s), "
        f"{beyond:.2f} s beyond the imports"
    )


def target_verdicts(
    results: list[Result], concurrency: int, large_page_cases: frozenset[str] = frozenset()
) -> list[str]:
    """The issue's targets, each judged from this run's rows (the destination path is tested, not timed)."""
    cases = _by_case(results)
    floor = cases.get(FLOOR_CASE, {}).get(FLOOR)
    throughput = {case: rows for case, rows in cases.items() if BASELINE in rows and _pipeline_runs(rows)}
    lines = ["Targets, judged from this run:"]
    if throughput:
        lines.append(f"- backfill at most {TIME_TARGET}x the fetch + parse baseline:")
        lines += [time_verdict(case, rows) for case, rows in throughput.items()]
        lines.append(f"- backfill written once, at most {WRITTEN_ONCE_TARGET}x the same baseline:")
        lines += [time_verdict(case, rows, WRITTEN_ONCE_TARGET) for case, rows in throughput.items()]
    lines += memory_verdict(cases)
    for case, rows in cases.items():
        if SEQUENTIAL in rows:
            verdict = large_page_verdict if case in large_page_cases else latency_verdict
            lines.append(verdict(case, rows, concurrency))
    incremental = {case: rows for case, rows in cases.items() if INCREMENTAL in rows}
    if incremental:
        target = f"under {INCREMENTAL_TARGET_S:.0f} s beyond the imports"
        lines.append(f"- incremental run with nothing new, {target}:")
        lines += [incremental_verdict(case, rows, floor) for case, rows in incremental.items()]
    return lines
