"""`reset`: forget the cursor and pending set, so that the next run reads again from start_date."""

from __future__ import annotations

import argparse
import sys

import dlt

from pipelines.commands_common import chosen_state_keys, configured_projects
from sources.polyai.reset import reset_projects

HELP = "forget the cursor and pending set: the next run reads again from start_date"
EXIT_REFUSED = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project",
        action="append",
        metavar="P",
        help="only this project (its project_id, label or state key); repeat for several; default: all",
    )
    parser.add_argument("--yes", action="store_true", help="do it (without it, reset says what it would do)")


def run(args: argparse.Namespace, pipeline: dlt.Pipeline) -> int:
    projects = configured_projects()
    keys = chosen_state_keys(projects, args.project)
    which = ", ".join(keys) if keys else "every project"
    plan = (
        f"reset forgets the cursor and the pending set of {which} in pipeline {pipeline.pipeline_name}: "
        "the next run reads again from start_date and replaces the rows it reads (merge, no "
        "duplicates); rows already loaded stay"
    )
    if not args.yes:
        print(f"{plan}.\nNothing was changed: run it again with --yes to do it.", file=sys.stderr)
        return EXIT_REFUSED
    done = reset_projects(pipeline, keys)
    names = ", ".join(key or "the single project" for key in done)
    print(f"reset {names}: the next run starts at start_date")
    return 0
