"""The demo: the bundled simulator on localhost, loaded into a local DuckDB file. No credentials."""

from __future__ import annotations

import argparse
import functools
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dlt
import duckdb

from pipelines.dbt_runner import run_dbt
from pipelines.progress import dlt_progress, shown_progress
from pipelines.runner import make_pipeline, run_load
from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
from sources.polyai import polyai_source

DEMO_PIPELINE_NAME = "polyai_demo"
DEMO_DATABASE = "polyai_demo.duckdb"
DEMO_PIPELINES_DIR = ".polyai_demo"
DEMO_API_KEY = "demo-key-not-secret"

EXAMPLE_QUERIES = (
    (
        "Conversations per day and channel",
        "SELECT date_trunc('day', started_at) AS day, channel, count(*) AS conversations\n"
        "FROM {dataset}.conversations GROUP BY ALL ORDER BY day, channel",
    ),
    (
        "Handoff rate by variant",
        "SELECT variant_name, round(avg(handoff::int), 3) AS handoff_rate, count(*) AS conversations\n"
        "FROM {dataset}.conversations WHERE NOT in_progress GROUP BY ALL ORDER BY conversations DESC",
    ),
    (
        "A transcript, turn by turn",
        "SELECT turn_index, user_input, agent_response FROM {dataset}.turns\n"
        "WHERE conversation_id = (SELECT id FROM {dataset}.conversations ORDER BY num_turns DESC LIMIT 1)\n"
        "ORDER BY turn_index",
    ),
    (
        "Most frequent intents (JSON lists unnested)",
        "SELECT intent, count(*) AS turns FROM (\n"
        "  SELECT unnest(from_json(intents, '[\"VARCHAR\"]')) AS intent FROM {dataset}.turns)\n"
        "GROUP BY ALL ORDER BY turns DESC LIMIT 5",
    ),
)


def demo_simulator(conversations: int) -> Simulator:
    """Simulated traffic from three days ago until one day ahead, on the real clock.

    The data is anchored to midnight UTC so that running the demo again the same day sees the
    same conversations, later in their lives: a real incremental run.
    """
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    config = SimConfig(
        seed=7,
        n_conversations=conversations,
        start=midnight - timedelta(days=3),
        end=midnight + timedelta(days=1),
        api_key=DEMO_API_KEY,
    )
    return Simulator(config, SimClock())


def run_demo(args: argparse.Namespace) -> int:
    simulator = demo_simulator(args.demo_conversations)
    with SimulatorServer(simulator) as server:
        print(f"simulator serving PolyAI's API on {server.base_url}")
        # Both in the current folder, as absolute paths: dlt resolves a relative DuckDB path
        # against the folder where the pipeline first ran, and keeps its state (the cursor) in
        # ~/.dlt/pipelines, so a demo in a second clone would write into the first one's file.
        pipeline = make_pipeline(
            args.pipeline_name or DEMO_PIPELINE_NAME,
            dlt.destinations.duckdb(str(Path(DEMO_DATABASE).resolve())),
            args.dataset_name,
            args.pipelines_dir or str(Path(DEMO_PIPELINES_DIR).resolve()),
            dlt_progress(args.verbose),
        )
        source = functools.partial(
            polyai_source,
            api_key=DEMO_API_KEY,
            account_id=simulator.config.account_id,
            project_id=simulator.config.project_id,
            base_url=server.base_url,
            start_date=simulator.config.start.isoformat(),
            include_latency=True,
        )
        with shown_progress(args) as live:
            summary = run_load(pipeline, source, live)
    print(summary.render())
    print(f"\nDuckDB file: {DEMO_DATABASE} (dataset {args.dataset_name})")
    show_examples(DEMO_DATABASE, args.dataset_name)
    if args.run_dbt:
        print(f"\n{run_dbt(pipeline).render()}")
    return 0


def show_examples(database: str, dataset: str) -> None:
    with duckdb.connect(database, read_only=True) as connection:
        for title, template in EXAMPLE_QUERIES:
            sql = template.format(dataset=dataset)
            print(f"\n-- {title}\n{sql};")
            print(connection.sql(sql).limit(8))
    print(f"Open it yourself: {duckdb_shell()} -readonly {database}")


def duckdb_shell() -> str:
    """The DuckDB shell that `duckdb-cli` (a dependency) put beside this interpreter, as typed here."""
    shell = Path(sys.executable).parent / "duckdb"
    if not shell.exists():
        return "duckdb"
    try:
        return str(shell.relative_to(Path.cwd()))
    except ValueError:
        return str(shell)
