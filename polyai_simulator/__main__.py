"""`python -m polyai_simulator`: serve simulated PolyAI traffic on the real clock until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from .clock import SimClock
from .config import SimConfig
from .odd_text import ODD_TEXT_MODES
from .server import SimulatorServer
from .simulator import Simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m polyai_simulator",
        description="A local PolyAI Conversations API (v1, v2, v3) on 127.0.0.1 with simulated traffic.",
    )
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--conversations", type=int, default=1000, help="conversations to generate")
    parser.add_argument("--days", type=float, default=3.0, help="days of traffic before now")
    parser.add_argument(
        "--ahead-minutes",
        type=float,
        default=60.0,
        help="traffic keeps starting for this long after launch, so new conversations arrive",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--api-key", default="sim-secret-key", help="the key clients must send")
    parser.add_argument("--account-id", default="acc-demo")
    parser.add_argument("--project-id", default="proj-demo")
    parser.add_argument("--no-transcripts", action="store_true", help="serve turns: [] (toggle off)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    parser.add_argument(
        "--odd-text",
        choices=[mode for mode in ODD_TEXT_MODES if mode],
        default="",
        help="put NUL or lone UTF-16 surrogates into every fifth conversation's text and JSON",
    )
    parser.add_argument(
        "--echo-api-key", action="store_true", help="quote the client's key in errors and correlation ids"
    )
    args = parser.parse_args(argv)
    if args.days <= 0 or args.conversations < 0 or args.ahead_minutes < 0:
        parser.error("--days must be > 0, --conversations and --ahead-minutes >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    now = datetime.now(UTC)
    config = SimConfig(
        seed=args.seed,
        n_conversations=args.conversations,
        start=now - timedelta(days=args.days),
        end=now + timedelta(minutes=args.ahead_minutes),
        account_id=args.account_id,
        project_id=args.project_id,
        api_key=args.api_key,
        transcripts_enabled=not args.no_transcripts,
        odd_text=args.odd_text,
        echo_api_key=args.echo_api_key,
    )
    simulator = Simulator(config, SimClock())
    simulator.faults.latency_seconds = args.latency
    server = SimulatorServer(simulator, port=args.port)
    try:
        base_url = server.start()
    except OSError as error:
        print(f"cannot listen on 127.0.0.1:{args.port}: {error.strerror}", file=sys.stderr)
        return 2
    stop = threading.Event()
    # SIGTERM ends as cleanly as Ctrl-C: a supervisor stopping the simulator is not an error.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"base url:   {base_url}", flush=True)
    print(f"account id: {config.account_id}", flush=True)
    print(f"project id: {config.project_id}", flush=True)
    print(f"endpoint:   {base_url}/v3/{config.account_id}/{config.project_id}/conversations", flush=True)
    print("send the key given by --api-key in the x-api-key header; Ctrl-C stops", flush=True)
    try:
        while not stop.is_set():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    stats = simulator.stats
    print(f"stopped after {stats.requests} requests, {stats.conversations_served} conversations served")
    return 0


if __name__ == "__main__":
    sys.exit(main())
