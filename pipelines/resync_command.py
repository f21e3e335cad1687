"""`resync`: read a `started_at` range again and replace what it holds; the cursor stays where it is."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dlt

from pipelines.commands_common import chosen_state_keys, configured_settings
from pipelines.lean_imports import loading_without_pandas
from pipelines.progress import shown_progress
from sources.polyai import ProjectsFailed, ResyncRange, iter_load_parts, polyai_source
from sources.polyai.operations import DestinationBusy, duckdb_lock_message
from sources.polyai.redaction import redact
from sources.polyai.resync import ResyncProgress, iso
from sources.polyai.resync_preview import ProjectPreview, preview_resync
from sources.polyai.state import SourceState

HELP = "read a started_at range again and replace what it holds (the cursor stays where it is)"
EXIT_FAILED = 1
EXIT_REFUSED = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from", dest="start", required=True, metavar="ISO", help="started_at from (inclusive)"
    )
    parser.add_argument(
        "--to", dest="end", required=True, metavar="ISO", help="started_at to (exclusive); capped at now"
    )
    parser.add_argument(
        "--project",
        action="append",
        metavar="P",
        help="only this project (its project_id, label or state key); repeat for several; default: all",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="write nothing: say what would be new, changed, no longer served",
    )


def run(args: argparse.Namespace, pipeline: dlt.Pipeline) -> int:
    now = datetime.now(UTC)
    settings = configured_settings()
    projects = settings.project_settings(now=now)
    resync = ResyncRange.parse(args.start, args.end, chosen_state_keys(projects, args.project))
    resync.check(now)
    heading = describe_range(resync, now)
    if args.dry_run:
        with loading_without_pandas():
            previews = preview_resync(pipeline, resync, projects, settings.privacy_rules(), now)
        print(render_previews(f"dry run of the {heading} in pipeline {pipeline.pipeline_name}", previews))
        return 0
    failures: dict[str, dict[str, Any]] = {}
    labels = {project.state_key: project.label for project in projects if resync.selects(project.state_key)}
    try:
        make_source = functools.partial(polyai_source, resync=resync)
        with loading_without_pandas(), shown_progress(args) as live:
            for _ in iter_load_parts(pipeline, make_source, pipeline.run, live):
                pass
    except ProjectsFailed as failed:
        failures = dict(failed.failures)
    except Exception as error:
        held = duckdb_lock_message(error)
        if held is None:
            raise
        raise DestinationBusy(held) from error
    print(render_done(f"{heading} in pipeline {pipeline.pipeline_name}", pipeline, labels, failures))
    return report_failures(failures)


def describe_range(resync: ResyncRange, now: datetime) -> str:
    capped = f" (--to {iso(resync.end)} is after now: read up to now)" if resync.end > now else ""
    return f"resync of started_at [{iso(resync.start)}, {iso(resync.end_at(now))}){capped}"


def render_done(
    heading: str, pipeline: dlt.Pipeline, labels: dict[str, str], failed: dict[str, dict[str, Any]]
) -> str:
    states = SourceState.projects_of_pipeline(pipeline.state)
    lines = [heading]
    for key, label in labels.items():
        if label in failed:
            lines.append(
                f"{label}: FAILED (below); what its committed parts read stays, run it again to go on"
            )
            continue
        state = states.get(key, SourceState({}))
        progress = ResyncProgress.read(state.resync)
        if progress is not None:
            lines += render_progress(label, progress, state)
    return "\n".join(lines)


def render_progress(label: str, progress: ResyncProgress, state: SourceState) -> list[str]:
    status = "done" if progress.done else f"read up to {progress.read_to}, not done"
    replaced = progress.conversations - progress.new
    lines = [
        f"{label}: {status} in {progress.parts} load(s): read {progress.conversations} conversations "
        f"and {progress.turns} turns in {progress.requests} API requests",
        f"  replaced {replaced}, new (not loaded before) {progress.new}, "
        f"no longer served by the API (kept) {progress.not_served}",
        f"  cursor unchanged: {state.cursor or 'not set'}; in progress, re-pulled by the next run: "
        f"{len(state.pending)}",
    ]
    if progress.continued_from:
        lines.append(f"  went on with the unfinished resync from {progress.continued_from}")
    if progress.replaced:
        lines.append(f"  replaced the unfinished resync {progress.replaced}")
    if progress.hidden_transcripts:
        lines.append(
            f"  {progress.hidden_transcripts} conversations came without their transcript (the "
            "project's 'Conversation transcript' setting is off): their loaded turns were kept"
        )
    return lines


def render_previews(heading: str, previews: Sequence[ProjectPreview]) -> str:
    lines = [f"{heading}: nothing was written"]
    for preview in previews:
        lines += render_preview(preview)
    return "\n".join(lines)


def render_preview(preview: ProjectPreview) -> list[str]:
    fields = ", ".join(f"{name} {count}" for name, count in preview.changed_fields.most_common())
    lines = [
        f"{preview.label}: would read {preview.conversations} conversations and {preview.turns} turns "
        f"({preview.requests} API requests)",
        f"  new (not loaded yet): {preview.new}{examples(preview, 'new')}",
        f"  changed: {preview.changed}{f' ({fields})' if fields else ''}{examples(preview, 'changed')}",
        f"  unchanged: {preview.unchanged}",
        f"  no longer served by the API (would be kept): {preview.not_served}"
        f"{examples(preview, 'not_served')}",
    ]
    if preview.turns_kept or preview.hidden_transcripts:
        lines.append(
            f"  served without turns ({preview.hidden_transcripts} with a hidden transcript): the turns "
            f"loaded for {preview.turns_kept} of them would be kept"
        )
    if preview.unfinished:
        lines.append(f"  {preview.unfinished}")
    return lines


def examples(preview: ProjectPreview, kind: str) -> str:
    ids = preview.examples.get(kind)
    return f", e.g. {', '.join(ids)}" if ids else ""


def report_failures(failures: dict[str, dict[str, Any]]) -> int:
    """As a run: exit 2 when a project was refused (a person must act), 1 otherwise."""
    for label, failure in failures.items():
        print(redact(f"error: {label} was not read again: {failure.get('message')}"), file=sys.stderr)
    if not failures:
        return 0
    return EXIT_REFUSED if any(failure.get("refused") for failure in failures.values()) else EXIT_FAILED
