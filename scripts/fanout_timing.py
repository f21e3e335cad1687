"""Two projects loaded one after the other, then at once, into one PostgreSQL dataset.

    .venv/bin/python scripts/fanout_timing.py [--latency 0.2] [--conversations 600] [--limit 50]

Each project has its own simulator answering every request after `--latency` seconds; each
load is the fan-out DAG's task (examples/airflow/polyai_fanout_dag.py) in a process of its own,
on a fresh dataset. Prints the seconds of each task and the wall time of each way
(docs/fan-out.md).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.destination_doubles import postgres_bin_dir, postgres_server
from tests.support.fanout import fanout_env, project_simulators, run_workers

TIMES = re.compile(r"task seconds (?P<seconds>[\d.]+) ended (?P<ended>[\d.]+)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--conversations", type=int, default=600)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fanout-timing-"))
    simulators = project_simulators([61, 62], args.conversations)
    with postgres_server(postgres_bin_dir()) as url, simulators as projects:
        for project in projects:
            project.simulator.faults.latency_seconds = args.latency
        ids = [project.project_id for project in projects]
        for parallel in (False, True):
            env = fanout_env(projects, url, work / f"dlt_{parallel}")
            env["SOURCES__POLYAI__LIMIT"] = str(args.limit)
            results = run_workers(ids, f"timing_{uuid.uuid4().hex[:6]}", env, parallel=parallel)
            times = []
            for result in results:
                match = TIMES.search(result.output)
                assert result.returncode == 0 and match, result.output[-2000:]
                loaded = next(line for line in result.output.splitlines() if "conversation rows" in line)
                times.append((float(match["seconds"]), float(match["ended"])))
                print(f"  {result.project_id}: {match['seconds']} s; {loaded.split(': ', 1)[1]}")
            if parallel:
                wall = max(ended for _, ended in times) - min(ended - seconds for seconds, ended in times)
            else:
                wall = sum(seconds for seconds, _ in times)
            print(f"{'parallel' if parallel else 'sequential'}: {wall:.2f} s for {len(ids)} projects")


if __name__ == "__main__":
    main()
