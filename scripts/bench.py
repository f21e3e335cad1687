"""Benchmark: this pipeline vs a plain fetch + parse baseline vs dlt's generic rest_api source.

    python scripts/bench.py                                   # 10k and 100k, then the latency case
    python scripts/bench.py --sizes 300 --skip-rest-api --latency-size 300   # smoke (tests/)

Every contender runs in its own process (working directory: the repository, so `.dlt/config.toml`
applies as it does for users) against a simulator in another process, so peak RSS is the
contender's own (the kernel's maximum resident set, read when the child is reaped). Cases:

- `<size>, 0 ms`: what an import alone costs (the memory and time floor of any dlt + DuckDB +
  pyarrow process); sequential fetch + orjson parse of every page (the baseline); the pipeline
  with 1 and with `--concurrency` connections into DuckDB; the pipeline with DuckDB's own
  defaults instead of `.dlt/config.toml`'s limits (what those limits cost in time); a second
  run with nothing new (incremental); dlt's generic `rest_api` source under a memory and time cap.
- `<latency-size>, 200 ms`: every response delayed, small pages (`--latency-limit`) so that the
  run is bound by latency, not by parsing: sequential paging with the same page size and delay
  (the baseline) vs the pipeline's concurrent windows.
- `<large-page-size>, 500 ms`: pages of 1000 behind a slow API, where a page's decoding and
  shaping are no longer small beside its latency: sequential paging vs the pipeline with the
  default connections (`--large-page-size 0` skips it).

It prints one table (`x baseline` compares with the baseline of the same case; `extract / load s`
are the seconds of dlt's steps in the pipeline's runs), then a verdict on each target of the
performance issue, judged from the rows (`bench_report.py`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_report import (  # noqa: E402  (scripts/ is on the path: this file's folder)
    BASELINE,
    FLOOR,
    FLOOR_CASE,
    INCREMENTAL,
    SEQUENTIAL,
    Result,
    connections_label,
    render_table,
    target_verdicts,
)

ACCOUNT, PROJECT, KEY = "acc-bench", "proj-bench", "bench-key"
START = datetime(2026, 10, 1, tzinfo=UTC)
# One simulated week holds ~16k conversations, as in shared/dlt-notes.md.
CONVERSATIONS_PER_DAY = 16_000 / 7
# DuckDB's own defaults (memory_limit 80% of RAM, one thread per core), overriding the
# limits the command sets (pipelines/runner.py, DUCKDB_GLOBAL_CONFIG): the variable replaces them.
DUCKDB_DEFAULTS_ENV = {"DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG": "{}"}


@dataclass
class Contender:
    name: str
    command: list[str]
    memory_cap_mb: float
    time_cap: float
    env: dict[str, str] | None = None


# --- the simulator, in its own process -------------------------------------------------------


def serve(conversations: int, days: float, latency: float) -> None:
    from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer

    end = START + timedelta(days=days)
    config = SimConfig(
        seed=42,
        n_conversations=conversations,
        start=START,
        end=end,
        account_id=ACCOUNT,
        project_id=PROJECT,
        api_key=KEY,
    )
    simulator = Simulator(config, SimClock(end + timedelta(days=1)))
    simulator.faults.latency_seconds = latency
    # Render every conversation once so that no contender pays for the simulator's first rendering.
    simulator.warm_cache()
    server = SimulatorServer(simulator)
    print(json.dumps({"base_url": server.start()}), flush=True)
    threading.Event().wait()


# --- contenders, each run as `bench.py <command> <json options>` in a child process ------------


def imports_only(options: dict[str, Any]) -> None:
    """The floor: what importing dlt, DuckDB, pyarrow and this connector costs, and nothing else."""
    import dlt  # noqa: F401
    import duckdb  # noqa: F401
    import pyarrow  # noqa: F401

    import pipelines.runner  # noqa: F401
    import sources.polyai  # noqa: F401

    print(json.dumps({"requests": 0, "conversations": 0, "turns": 0}))


def baseline(options: dict[str, Any]) -> None:
    """Sequential paging and orjson parse of every page: the floor a loader can reach."""
    import orjson
    import requests

    session = requests.Session()
    session.headers["x-api-key"] = KEY
    params = {
        "start_time": START.isoformat(),
        "end_time": (START + timedelta(days=400)).isoformat(),
        "limit": options["limit"],
        "client_env": "live",
    }
    url = f"{options['base_url']}/v3/{ACCOUNT}/{PROJECT}/conversations"
    requests_made = conversations = turns = 0
    while True:
        body = orjson.loads(session.get(url, params=params, timeout=120).content)
        requests_made += 1
        conversations += len(body["conversations"])
        turns += sum(len(c.get("turns") or []) for c in body["conversations"])
        if not body.get("cursor"):
            break
        params["cursor"] = body["cursor"]
    print(json.dumps({"requests": requests_made, "conversations": conversations, "turns": turns}))


def pipeline(options: dict[str, Any]) -> None:
    """This connector, set up as `pipelines/polyai_pipeline.py` sets up its process."""
    from pipelines.process_tuning import tune_process

    tune_process()  # first, as the command does: before anything imports pyarrow

    import dlt

    from pipelines.lean_imports import loading_without_pandas
    from pipelines.runner import make_pipeline, run_load
    from sources.polyai import polyai_source

    workdir = options["workdir"]
    now = datetime.fromisoformat(options["now"])
    target = make_pipeline("bench", dlt.destinations.duckdb(f"{workdir}/bench.duckdb"), "polyai", workdir)
    with loading_without_pandas():
        summary = run_load(
            target,
            functools.partial(
                polyai_source,
                api_key=KEY,
                account_id=ACCOUNT,
                project_id=PROJECT,
                base_url=options["base_url"],
                start_date=START.isoformat(),
                concurrency=options["concurrency"],
                limit=options["limit"],
                # The simulator's clock, not the wall clock: a backfill spans start_date to now with
                # traffic all along, as for a real project, and time windows split real traffic.
                clock=lambda: now,
            ),
        )
    print(
        json.dumps(
            {
                "requests": summary.requests,
                "conversations": summary.conversations,
                "turns": summary.turns,
                "extract_seconds": summary.step_seconds.get("extract"),
                "load_seconds": summary.step_seconds.get("load"),
            }
        )
    )


def rest_api(options: dict[str, Any]) -> None:
    """dlt's generic rest_api source, configured the obvious way."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": f"{options['base_url']}/v3/{ACCOUNT}/{PROJECT}/",
                "headers": {"x-api-key": KEY},
                "paginator": {"type": "cursor", "cursor_path": "cursor", "cursor_param": "cursor"},
            },
            "resources": [
                {
                    "name": "conversations",
                    "primary_key": "id",
                    "write_disposition": "merge",
                    "endpoint": {
                        "path": "conversations",
                        "data_selector": "conversations",
                        "params": {
                            "start_time": START.isoformat(),
                            "end_time": (START + timedelta(days=400)).isoformat(),
                            "limit": options["limit"],
                        },
                    },
                }
            ],
        }
    )
    workdir = options["workdir"]
    target = dlt.pipeline(
        "bench_rest",
        destination=dlt.destinations.duckdb(f"{workdir}/rest.duckdb"),
        dataset_name="polyai",
        pipelines_dir=workdir,
    )
    info = target.run(source)
    counts = target.last_trace.last_normalize_info.row_counts if target.last_trace else {}
    print(
        json.dumps(
            {
                "requests": -1,
                "conversations": counts.get("conversations", 0),
                "turns": counts.get("conversations__turns", 0),
                "tables": len(target.default_schema.data_table_names()),
                "columns": sum(len(t["columns"]) for t in target.default_schema.data_tables()),
                "loaded": bool(info),
            }
        )
    )


COMMANDS = {"imports": imports_only, "baseline": baseline, "pipeline": pipeline, "rest_api": rest_api}


# --- measuring -------------------------------------------------------------------------------


def measure(case: str, contender: Contender) -> Result:
    """Run one contender in a child process; kill it past its memory or time cap.

    Time runs from process start to exit (the load is committed by then); peak RSS is the
    child's own maximum resident set, as the kernel reports it when the child is reaped.
    """
    env = {**os.environ, **(contender.env or {})}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            [sys.executable, __file__, *contender.command], stdout=out, stderr=err, cwd=ROOT, env=env
        )
        status, usage, note = _wait_within_caps(child, started, contender)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    exit_code = os.waitstatus_to_exitcode(status)
    data: dict[str, Any] = {}
    if exit_code == 0 and stdout.strip():
        data = json.loads(stdout.strip().splitlines()[-1])
    elif not note:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {exit_code}"
        note = f"failed: {last[:80]}"
    return Result(
        case,
        contender.name,
        seconds,
        usage.ru_maxrss / 1024,
        data.get("requests", 0),
        data.get("conversations", 0),
        data.get("turns", 0),
        note or _describe(data),
        data.get("extract_seconds"),
        data.get("load_seconds"),
    )


def _wait_within_caps(child: subprocess.Popen, started: float, contender: Contender) -> tuple[int, Any, str]:
    """Wait for the child; kill it once past the memory or the time cap (the note says which)."""
    note = ""
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            return status, usage, note
        if not note:
            rss = _rss_mb(child.pid)
            if rss > contender.memory_cap_mb:
                note = f"killed at {rss:.0f} MB (memory cap)"
                child.kill()
            elif time.perf_counter() - started > contender.time_cap:
                note = f"killed after {contender.time_cap:.0f} s (time cap)"
                child.kill()
        time.sleep(0.02)


def _describe(data: dict[str, Any]) -> str:
    if "columns" in data:
        return f"{data['tables']} tables / {data['columns']} columns"
    return ""


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def simulated_days(conversations: int) -> float:
    return max(1.0, conversations / CONVERSATIONS_PER_DAY)


def simulator_now(conversations: int) -> str:
    """The simulator's (fixed) clock: a day after its last conversation started."""
    return (START + timedelta(days=simulated_days(conversations) + 1)).isoformat()


def start_simulator(conversations: int, latency: float) -> tuple[subprocess.Popen, str]:
    days = simulated_days(conversations)
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", str(conversations), str(days), str(latency)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = server.stdout.readline()  # type: ignore[union-attr]
    return server, json.loads(line)["base_url"]


ContenderFactory = Callable[[argparse.Namespace, str, str, str], list[Contender]]


# --- cases -----------------------------------------------------------------------------------


def child(command: str, **options: Any) -> list[str]:
    return [command, json.dumps(options)]


def throughput_contenders(args: argparse.Namespace, base_url: str, workdir: str, now: str) -> list[Contender]:
    """The contenders of one size without added latency, in the order they run."""
    caps = (args.memory_cap_mb, args.time_cap)
    limit = 1000
    many = args.concurrency

    def run_pipeline(folder: str, concurrency: int) -> list[str]:
        return child(
            "pipeline",
            base_url=base_url,
            workdir=f"{workdir}/{folder}",
            concurrency=concurrency,
            limit=limit,
            now=now,
        )

    contenders = [
        Contender(BASELINE, child("baseline", base_url=base_url, limit=limit), *caps),
        Contender(connections_label(1), run_pipeline("p1", 1), *caps),
        Contender(connections_label(many), run_pipeline(f"p{many}", many), *caps),
        # Same working folder and database: the cursor is at the end, nothing is new.
        Contender(INCREMENTAL, run_pipeline(f"p{many}", many), *caps),
    ]
    if not args.skip_duckdb_defaults:
        contenders.append(
            Contender(
                f"pipeline, {many} conn., DuckDB defaults",
                run_pipeline("defaults", many),
                *caps,
                env=DUCKDB_DEFAULTS_ENV,
            )
        )
    if not args.skip_rest_api:
        contenders.append(
            Contender(
                "dlt rest_api (generic)",
                child("rest_api", base_url=base_url, workdir=workdir, limit=limit),
                args.rest_api_memory_cap_mb,
                args.rest_api_time_cap,
            )
        )
    return contenders


def latency_contenders(
    args: argparse.Namespace,
    base_url: str,
    workdir: str,
    now: str,
    limit: int | None = None,
    concurrencies: list[int] | None = None,
) -> list[Contender]:
    """Sequential paging vs concurrent windows, all with the same page size and added delay."""
    caps = (args.memory_cap_mb, args.time_cap)
    limit = limit or args.latency_limit
    contenders = [Contender(SEQUENTIAL, child("baseline", base_url=base_url, limit=limit), *caps)]
    for concurrency in concurrencies or args.latency_concurrency:
        contenders.append(
            Contender(
                connections_label(concurrency),
                child(
                    "pipeline",
                    base_url=base_url,
                    workdir=f"{workdir}/lat{concurrency}",
                    concurrency=concurrency,
                    limit=limit,
                    now=now,
                ),
                *caps,
            )
        )
    return contenders


def run_case(
    case: str, conversations: int, latency: float, contenders_of: ContenderFactory, args: argparse.Namespace
) -> list[Result]:
    """Start a simulator for the case, measure its contenders one after the other, stop it."""
    server, base_url = start_simulator(conversations, latency)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            contenders = contenders_of(args, base_url, workdir, simulator_now(conversations))
            results = [measure(case, contender) for contender in contenders]
    finally:
        server.kill()
        server.wait()
    for result in results:
        print(f"  {case}: {result.name} {result.seconds:.2f} s, {result.peak_rss_mb:.0f} MB", file=sys.stderr)
    return results


def label(conversations: int, latency: float) -> str:
    size = (
        f"{conversations // 1000}k"
        if conversations >= 1000 and conversations % 1000 == 0
        else str(conversations)
    )
    return f"{size}, {latency * 1000:.0f} ms"


def parse_args() -> argparse.Namespace:
    # Here, not at the top: contenders run this file too, and the baseline must not pay for
    # importing dlt (which `sources.polyai` does).
    from sources.polyai.settings import DEFAULT_CONCURRENCY

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--skip-rest-api", action="store_true")
    parser.add_argument("--skip-duckdb-defaults", action="store_true")
    parser.add_argument(
        "--latency", type=float, default=0.2, help="seconds added to every response (latency case)"
    )
    parser.add_argument(
        "--latency-size", type=int, default=10_000, help="conversations of the latency case; 0 skips it"
    )
    parser.add_argument("--latency-limit", type=int, default=50, help="page size in the latency case")
    parser.add_argument("--latency-concurrency", type=int, nargs="+", default=[1, 4, DEFAULT_CONCURRENCY])
    parser.add_argument(
        "--large-page-size", type=int, default=30_000, help="conversations of the large-page case; 0 skips it"
    )
    parser.add_argument("--large-page-latency", type=float, default=0.5)
    parser.add_argument("--memory-cap-mb", type=float, default=4096)
    parser.add_argument("--time-cap", type=float, default=600)
    parser.add_argument("--rest-api-memory-cap-mb", type=float, default=2048)
    parser.add_argument("--rest-api-time-cap", type=float, default=90)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}", flush=True)
    floor = Contender(FLOOR, child("imports"), args.memory_cap_mb, args.time_cap)
    results = [measure(FLOOR_CASE, floor)]
    for size in args.sizes:
        results += run_case(label(size, 0), size, 0.0, throughput_contenders, args)
    if args.latency_size:
        results += run_case(
            label(args.latency_size, args.latency), args.latency_size, args.latency, latency_contenders, args
        )
    large_pages: frozenset[str] = frozenset()
    if args.large_page_size:
        case = label(args.large_page_size, args.large_page_latency)
        concurrencies = args.latency_concurrency[-1:]
        contenders = functools.partial(latency_contenders, limit=1000, concurrencies=concurrencies)
        results += run_case(case, args.large_page_size, args.large_page_latency, contenders, args)
        large_pages = frozenset({case})
    print(render_table(results))
    print()
    print("\n".join(target_verdicts(results, args.latency_concurrency[-1], large_pages)))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        COMMANDS[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
    else:
        main()
