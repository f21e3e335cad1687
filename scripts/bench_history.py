"""Benchmark: an hourly run into tables that already hold years of history, on DuckDB.

    python scripts/bench_history.py                          # 0, 1M and 10M conversations
    python scripts/bench_history.py --history 0 100000       # smaller, faster
    python scripts/bench_history.py --history 0 3000 --per-hour 300 --timed-hours 2 --skip-unbounded  # smoke

A simulated busy project (~2.5k conversations and ~21k turns an hour) is loaded for one hour;
the tables then get synthetic history before it, built with SQL (copies of that hour's rows
under other ids, an hour earlier per copy, inserted oldest first as hourly runs would have),
and the next hours are loaded as hourly runs would load them, each timed. The same is done with
the merge's time bound removed (as dlt's own key-based delete would run), for comparison.
Every run uses the command's DuckDB limits (pipelines/runner.py). It prints one row per
history size and bound, then the verdict on the target: the hourly run into 1M and 10M
conversations within 10% of the same run into empty tables.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.process_tuning import tune_process  # noqa: E402

tune_process()  # first, as the command does: before anything imports pyarrow

import dlt  # noqa: E402
import duckdb  # noqa: E402

from pipelines.runner import make_pipeline, run_load  # noqa: E402
from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer  # noqa: E402
from sources.polyai import destinations, polyai_source  # noqa: E402

ACCOUNT, PROJECT, KEY = "acc-bench", "proj-bench", "bench-key"
START = datetime(2026, 10, 1, tzinfo=UTC)
TOLERANCE = 1.10


def world(per_hour: int, timed_hours: int) -> Simulator:
    hours = 1 + timed_hours
    config = SimConfig(
        seed=42,
        n_conversations=per_hour * hours,
        start=START,
        end=START + timedelta(hours=hours),
        account_id=ACCOUNT,
        project_id=PROJECT,
        api_key=KEY,
    )
    simulator = Simulator(config, SimClock(START + timedelta(hours=1)))
    simulator.warm_cache()
    return simulator


def add_history(database: Path, conversations: int) -> None:
    """About `conversations` conversations before the loaded hour, with their turns."""
    with duckdb.connect(str(database)) as connection:
        hourly = connection.sql("SELECT count(*) FROM polyai.conversations").fetchone()
        copies = round(conversations / hourly[0]) if hourly and hourly[0] else 0
        batch = 200
        for newest in range(copies, 0, -batch):  # oldest hours first, as runs would have added them
            hours = f"range({max(newest - batch, 0) + 1}, {newest + 1}) AS h(k)"
            connection.execute(
                "INSERT INTO polyai.conversations SELECT c.* REPLACE (c.id || '-' || k AS id,"
                f" c.started_at - to_hours(k) AS started_at) FROM polyai.conversations AS c, {hours}"
                " WHERE c.id NOT LIKE '%-%' ORDER BY k DESC, c.started_at"
            )
            connection.execute(
                "INSERT INTO polyai.turns SELECT t.* REPLACE"
                " (t.conversation_id || '-' || k AS conversation_id,"
                f" t.conversation_started_at - to_hours(k) AS conversation_started_at)"
                f" FROM polyai.turns AS t, {hours} WHERE t.conversation_id NOT LIKE '%-%'"
                " ORDER BY k DESC, t.conversation_started_at"
            )
        connection.execute("CHECKPOINT")


def hourly_runs(history: int, bounded: bool, folder: Path, args: argparse.Namespace) -> list[float]:
    """Seconds of each timed hourly run into tables holding `history` earlier conversations."""
    simulator = world(args.per_hour, args.timed_hours)
    server = SimulatorServer(simulator)
    base_url = server.start()
    database = folder / "history.duckdb"
    pipeline = make_pipeline("bench_history", dlt.destinations.duckdb(str(database)), "polyai", str(folder))
    source = functools.partial(
        polyai_source,
        api_key=KEY,
        account_id=ACCOUNT,
        project_id=PROJECT,
        base_url=base_url,
        start_date=START.isoformat(),
        clock=simulator.clock.now,
    )
    literals = dict(destinations.TIME_LITERALS)
    try:
        run_load(pipeline, source)
        add_history(database, history)
        if not bounded:
            destinations.TIME_LITERALS.clear()
        seconds = []
        for _ in range(args.timed_hours):
            simulator.clock.advance(timedelta(hours=1))
            started = time.perf_counter()
            run_load(pipeline, source)
            seconds.append(time.perf_counter() - started)
        return seconds
    finally:
        destinations.TIME_LITERALS.update(literals)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", type=int, nargs="+", default=[0, 1_000_000, 10_000_000])
    parser.add_argument("--per-hour", type=int, default=2_500, help="conversations per simulated hour")
    parser.add_argument("--timed-hours", type=int, default=5, help="hourly runs timed per history size")
    parser.add_argument("--skip-unbounded", action="store_true", help="only the connector as it is")
    args = parser.parse_args()
    rows: dict[tuple[int, bool], float] = {}
    print(
        f"{'history':>12} {'merge':>10} {f'hourly run s (median of {args.timed_hours})':>32} {'x empty':>8}"
    )
    for bounded in (True, False) if not args.skip_unbounded else (True,):
        for history in args.history:
            folder = Path(tempfile.mkdtemp(prefix="bench_history."))
            try:
                rows[history, bounded] = statistics.median(hourly_runs(history, bounded, folder, args))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            empty = rows.get((min(args.history), bounded))
            ratio = f"{rows[history, bounded] / empty:.2f}" if empty else "-"
            name = "bounded" if bounded else "unbounded"
            print(f"{history:>12,} {name:>10} {rows[history, bounded]:>32.2f} {ratio:>8}", flush=True)
    empty = rows.get((0, True))
    for history in (h for h in args.history if h >= 1_000_000):
        if empty is None:
            break
        ratio = rows[history, True] / empty
        verdict = "met" if ratio <= TOLERANCE else "NOT MET"
        print(
            f"target: hourly run into {history:,} conversations within 10% of empty tables:"
            f" {ratio:.2f}x, {verdict}"
        )


if __name__ == "__main__":
    main()
