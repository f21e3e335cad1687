"""The benchmark still runs end to end and prints its table and verdicts (tiny sizes, numbers unchecked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_ROWS = [
    ("-", "imports only (floor)"),
    ("300, 0 ms", "baseline fetch + parse"),
    ("300, 0 ms", "pipeline, 1 connection"),
    ("300, 0 ms", "pipeline, 4 connections"),
    ("300, 0 ms", "incremental, nothing new"),
    ("300, 200 ms", "sequential paging + parse"),
    ("300, 200 ms", "pipeline, 4 connections"),
    ("300, 50 ms", "sequential paging + parse"),
    ("300, 50 ms", "pipeline, 4 connections"),
]


def table_cells(output: str) -> list[list[str]]:
    """The table's data rows as lists of cells (header and separator left out)."""
    rows = [line for line in output.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_bench_prints_one_row_per_contender_and_every_load_succeeds() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench.py"),
            "--sizes",
            "300",
            "--skip-rest-api",
            "--skip-duckdb-defaults",
            "--latency-size",
            "300",
            "--concurrency",
            "4",
            "--latency-concurrency",
            "4",
            "--large-page-size",
            "300",
            "--large-page-latency",
            "0.05",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    cells = table_cells(completed.stdout)
    assert [(row[0], row[1]) for row in cells] == EXPECTED_ROWS
    notes = [row[-1] for row in cells]
    assert notes == [""] * len(EXPECTED_ROWS), notes  # no contender failed or hit a cap
    loaded = {(row[0], row[1]): row for row in cells}
    # Every backfill read every conversation the baseline read; the incremental run none.
    for case in ("300, 0 ms", "300, 200 ms", "300, 50 ms"):
        conversations_per_second = [
            row[4]
            for (row_case, name), row in loaded.items()
            if row_case == case and "incremental" not in name
        ]
        assert "-" not in conversations_per_second
    assert loaded[("300, 0 ms", "incremental, nothing new")][4] == "-"
    # The pipeline's rows carry dlt's extract and load times; the baseline's do not.
    assert loaded[("300, 0 ms", "pipeline, 1 connection")][-2] != "-"
    assert loaded[("300, 0 ms", "baseline fetch + parse")][-2] == "-"
    # After the table, a verdict for each target the bench measures.
    verdicts = completed.stdout.split("Targets, judged from this run:", 1)[1]
    for target in (
        "backfill at most 1.2x the fetch + parse baseline",
        "backfill written once, at most 1.5x the same baseline",
        "  300, 0 ms: ",
        "peak RSS at most 300 MB at every size: ",
        "300, 200 ms, at least 4x faster than sequential paging: ",
        "300, 50 ms, pages of 1000, at most 0.3x sequential paging: ",
        "incremental run with nothing new, under 2 s beyond the imports",
    ):
        assert target in verdicts, verdicts


def test_the_history_bench_prints_a_row_per_history_size_and_the_verdict() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_history.py"), "--history", "0", "20000",
         "--per-hour", "100", "--timed-hours", "1", "--skip-unbounded"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    rows = [
        line.split() for line in completed.stdout.splitlines() if line.strip().split(" ")[0][:1].isdigit()
    ]
    assert [row[:2] for row in rows] == [["0", "bounded"], ["20,000", "bounded"]], completed.stdout
    assert all(float(row[2]) > 0 for row in rows)
    assert rows[0][3] == "1.00", completed.stdout
