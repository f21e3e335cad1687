"""`status`: per project, the cursor and its lag, pending conversations, the last run, rows, a verdict."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

import dlt

from pipelines.commands_common import configured_projects
from sources.polyai.status import PipelineStatus, ProjectStatus, pipeline_status

HELP = "where each project stands: cursor and lag, pending conversations, last run, rows, freshness"
DEFAULT_LATE_AFTER_HOURS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document (for monitoring)")
    parser.add_argument(
        "--late-after",
        type=float,
        default=DEFAULT_LATE_AFTER_HOURS,
        metavar="HOURS",
        help=f"a cursor further behind now than this is late (default {DEFAULT_LATE_AFTER_HOURS:g})",
    )


def run(args: argparse.Namespace, pipeline: dlt.Pipeline) -> int:
    now = datetime.now(UTC)
    status = pipeline_status(pipeline, configured_projects(now), now, timedelta(hours=args.late_after))
    print(json.dumps(status.as_json(), indent=2) if args.json else render(status))
    return 0


def render(status: PipelineStatus) -> str:
    lines = [
        f"pipeline {status.pipeline_name}, dataset {status.dataset_name}, "
        f"destination {status.destination or 'not set'}, now {status.now}"
    ]
    if status.run_going_on:
        lines.append("a run is going on: its state as of its last committed part; rows not counted")
    for project in status.projects:
        lines += render_project(project)
    return "\n".join(lines)


def render_project(project: ProjectStatus) -> list[str]:
    removed = "" if project.configured else " (no longer in the settings: its rows and state are kept)"
    lines = [f"{project.label} [{project.state_key}]: {project.verdict}{removed}"]
    if project.cursor is None:
        lines.append("  cursor: not set (the first run starts at start_date)")
    else:
        lines.append(f"  cursor: {project.cursor}, {describe_lag(project.lag_seconds or 0.0)} behind now")
    oldest = f", the oldest started {project.oldest_pending}" if project.oldest_pending else ""
    lines.append(f"  in progress, re-pulled on later runs: {project.pending}{oldest}")
    run = project.last_run
    if run["outcome"] is None:
        lines.append("  last run: none")
    else:
        lines.append(
            f"  last run: {run['ran_at'] or 'time unknown'}, {run['outcome']}: {run['conversations']} "
            f"conversations, {run['turns']} turns, {run['requests']} requests, {run['retries']} retries"
        )
    if run["failure"]:
        lines.append(f"  failure: {run['failure'].get('message')}")
    rows = project.rows
    if rows.get("conversations") is not None:
        lines.append(f"  rows: {rows['conversations']} conversations, {rows['turns']} turns")
    resync = project.resync
    if resync and not resync.get("done"):
        lines.append(
            f"  resync [{resync['start']}, {resync['end']}) unfinished, read up to {resync['read_to']}: "
            "run the same resync again to finish it"
        )
    if project.verdict == "late":
        lines.append("  late: is the schedule running, did the last run fail? (README, 'Operating it')")
    return lines


def describe_lag(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
