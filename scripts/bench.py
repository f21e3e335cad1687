"""Benchmark: this pipeline vs a plain fetch + parse baseline vs dlt's generic rest_api source.

    python scripts/bench.py                         # 10k and 100k conversations
    python scripts/bench.py --sizes 10000 --latency 0.2 --skip-rest-api

Every contender runs in its own process against the same simulator process on localhost, so
peak RSS is the contender's own (read from the kernel at exit). It prints one table per size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ACCOUNT, PROJECT, KEY = "acc-bench", "proj-bench", "bench-key"
START = datetime(2026, 10, 1, tzinfo=UTC)


@dataclass
class Result:
    name: str
    seconds: float
    peak_rss_mb: float
    requests: int
    conversations: int
    turns: int
    note: str = ""


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
    # Render every page once so that no contender pays for the simulator's first rendering.
    truth_turns = sum(len(c["turns"]) for c in simulator.truth())
    simulator.warm_cache()
    server = SimulatorServer(simulator)
    print(json.dumps({"base_url": server.start(), "turns": truth_turns}), flush=True)
    threading.Event().wait()


# --- contenders, each run as `bench.py <name> ...` in a child process --------------------------


def baseline(base_url: str) -> None:
    """Sequential paging and orjson parse of every page: the floor a loader can reach."""
    import orjson
    import requests

    session = requests.Session()
    session.headers["x-api-key"] = KEY
    params = {
        "start_time": START.isoformat(),
        "end_time": (START + timedelta(days=400)).isoformat(),
        "limit": 1000,
        "client_env": "live",
    }
    url = f"{base_url}/v3/{ACCOUNT}/{PROJECT}/conversations"
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


def pipeline(base_url: str, workdir: str, concurrency: int) -> None:
    import dlt

    from pipelines.runner import make_pipeline, run_load
    from sources.polyai import polyai_source

    target = make_pipeline("bench", dlt.destinations.duckdb(f"{workdir}/bench.duckdb"), "polyai", workdir)
    summary = run_load(
        target,
        polyai_source(
            api_key=KEY,
            account_id=ACCOUNT,
            project_id=PROJECT,
            base_url=base_url,
            start_date=START.isoformat(),
            concurrency=concurrency,
        ),
    )
    print(
        json.dumps(
            {"requests": summary.requests, "conversations": summary.conversations, "turns": summary.turns}
        )
    )


def rest_api(base_url: str, workdir: str) -> None:
    """dlt's generic rest_api source, configured the obvious way."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": f"{base_url}/v3/{ACCOUNT}/{PROJECT}/",
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
                            "limit": 1000,
                        },
                    },
                }
            ],
        }
    )
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
                "tables": len([t for t in target.default_schema.data_table_names()]),
                "columns": sum(len(t["columns"]) for t in target.default_schema.data_tables()),
                "loaded": bool(info),
            }
        )
    )


# --- measuring -------------------------------------------------------------------------------


def measure(name: str, args: list[str], memory_cap_mb: float, time_cap: float) -> Result:
    """Run one contender in a child process; kill it past the memory or time cap.

    Time runs from process start to exit (the load is committed by then); peak RSS is the
    child's own maximum resident set, as the kernel reports it when the child is reaped.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, __file__, *args], stdout=out, stderr=err, text=True)
        note = ""
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            rss = _rss_mb(child.pid)
            if rss > memory_cap_mb and not note:
                note = f"killed at {rss:.0f} MB (memory cap)"
                child.kill()
            elif time.perf_counter() - started > time_cap and not note:
                note = f"killed after {time_cap:.0f} s (time cap)"
                child.kill()
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    data: dict = {}
    if child.returncode == 0 and stdout.strip():
        data = json.loads(stdout.strip().splitlines()[-1])
    elif not note:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {child.returncode}"
        note = f"failed: {last[:80]}"
    return Result(
        name,
        seconds,
        usage.ru_maxrss / 1024,
        data.get("requests", 0),
        data.get("conversations", 0),
        data.get("turns", 0),
        note or _describe(data),
    )


def _describe(data: dict) -> str:
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


def start_simulator(conversations: int, days: float, latency: float) -> tuple[subprocess.Popen, str, int]:
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", str(conversations), str(days), str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = server.stdout.readline()  # type: ignore[union-attr]
    info = json.loads(line)
    return server, info["base_url"], info["turns"]


def print_table(title: str, results: list[Result], baseline_seconds: float) -> None:
    print(f"\n{title}")
    header = (
        f"| {'contender':<28} | {'seconds':>8} | {'x baseline':>10} | {'conv/s':>9} | "
        f"{'turns/s':>10} | {'peak RSS MB':>11} | {'requests':>8} | note"
    )
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|---")
    for r in results:
        print(
            f"| {r.name:<28} | {r.seconds:>8.2f} | {r.seconds / baseline_seconds:>10.2f} | "
            f"{r.conversations / r.seconds:>9.0f} | {r.turns / r.seconds:>10.0f} | "
            f"{r.peak_rss_mb:>11.0f} | {r.requests:>8} | {r.note}"
        )


def run_size(args: argparse.Namespace, conversations: int, latency: float) -> list[Result]:
    days = max(1.0, conversations / 16000 * 7)  # one week ~ 16k conversations, as measured
    server, base_url, truth_turns = start_simulator(conversations, days, latency)
    results = []
    try:
        with tempfile.TemporaryDirectory() as workdir:
            caps = (args.memory_cap_mb, args.time_cap)
            results.append(measure("baseline fetch + parse", ["baseline", base_url], *caps))
            results.append(
                measure("pipeline, 1 connection", ["pipeline", base_url, f"{workdir}/p1", "1"], *caps)
            )
            results.append(
                measure(
                    f"pipeline, {args.concurrency} connections",
                    ["pipeline", base_url, f"{workdir}/p{args.concurrency}", str(args.concurrency)],
                    *caps,
                )
            )
            if not args.skip_rest_api:
                results.append(measure("dlt rest_api (generic)", ["rest_api", base_url, workdir], *caps))
    finally:
        server.kill()
    title = f"{conversations} conversations, {truth_turns} turns, {latency * 1000:.0f} ms added latency"
    print_table(title, results, results[0].seconds)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    parser.add_argument("--latency-size", type=int, default=10_000, help="size of the latency-bound run")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--skip-rest-api", action="store_true")
    parser.add_argument("--memory-cap-mb", type=float, default=4096)
    parser.add_argument("--time-cap", type=float, default=600)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    for size in args.sizes:
        run_size(args, size, args.latency)
    if args.latency == 0 and args.latency_size:
        args.skip_rest_api = True
        run_size(args, args.latency_size, 0.2)


if __name__ == "__main__":
    commands = {"serve", "baseline", "pipeline", "rest_api"}
    if len(sys.argv) > 1 and sys.argv[1] in commands:
        command, *rest = sys.argv[1:]
        if command == "serve":
            serve(int(rest[0]), float(rest[1]), float(rest[2]))
        elif command == "baseline":
            baseline(rest[0])
        elif command == "pipeline":
            pipeline(rest[0], rest[1], int(rest[2]))
        else:
            rest_api(rest[0], rest[1])
    else:
        main()
