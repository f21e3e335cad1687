"""Build the dlt pipeline, run one load and summarize it: shared by the CLI, the demo and tests."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException, ConfigurationException
from dlt.common.pipeline import LoadInfo
from dlt.common.runtime.collector import NULL_COLLECTOR
from dlt.common.runtime.collector_base import Collector
from dlt.common.storages import FileStorage
from dlt.extract.source import DltSource
from dlt.pipeline.trace import PipelineTrace

from sources.polyai import (
    ConfigurationError,
    InvalidResponseError,
    PolyAIAPIError,
    ProjectsFailed,
    iter_load_parts,
)
from sources.polyai.live import LiveCounters
from sources.polyai.loading import current_run_progress
from sources.polyai.operations import DestinationBusy, DestinationRefused, PipelineBusy, duckdb_lock_message
from sources.polyai.reset import NothingToReset
from sources.polyai.settings import CONVERSATION_COLUMN_TYPES, TURN_COLUMN_TYPES
from sources.polyai.state import SourceState

logger = logging.getLogger(__name__)

DEFAULT_PIPELINE_NAME = "polyai_conversations"
DEFAULT_DATASET = "polyai"

# dlt's steps of a load, in the order they run (one after the other, for every part).
TIMED_STEPS = ("extract", "normalize", "load")


# DuckDB's own limits for this connector's connection. By default DuckDB may take 80% of RAM and
# keeps every loaded block in memory until it runs out. A small limit with one thread makes it
# spill to its file instead; half of this one ran out on large merges (docs/performance.md).
# Set in code, not in .dlt/config.toml: dlt treats every key under
# `destination.duckdb.credentials` as a secret and fails the run when config.toml holds one.
DUCKDB_GLOBAL_CONFIG: dict[str, Any] = {"memory_limit": "64MB", "threads": 1}
# Where a user replaces those limits (DuckDB's defaults with '{}'), read by dlt itself.
DUCKDB_GLOBAL_CONFIG_ENV = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"


def make_pipeline(
    pipeline_name: str,
    destination: Any,
    dataset_name: str = DEFAULT_DATASET,
    pipelines_dir: str | None = None,
    progress: Collector = NULL_COLLECTOR,
) -> dlt.Pipeline:
    """`progress`: dlt's own progress of its steps (the CLI's --verbose logs it)."""
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=with_duckdb_limits(destination),
        dataset_name=dataset_name,
        # dlt types pipelines_dir as str, though its default is None (dlt's own folder).
        pipelines_dir=cast(str, pipelines_dir),
        progress=progress,
    )


def with_duckdb_limits(destination: Any) -> Any:
    """`destination` with DUCKDB_GLOBAL_CONFIG if it is DuckDB and no one set its global_config.

    The file stays wherever dlt's own settings put it (`DESTINATION__DUCKDB__CREDENTIALS`,
    secrets.toml, or `<pipeline_name>.duckdb` in the working directory): the limits are passed as
    a mapping of credential fields, which dlt completes from its providers. A global_config set
    in the environment or in secrets.toml replaces them, as dlt would use it; credentials given
    as an object or a connection are the caller's and stay as they are.
    """
    if isinstance(destination, str) and destination == "duckdb":
        destination = dlt.destinations.duckdb()
    if not isinstance(destination, dlt.destinations.duckdb):
        return destination
    params = dict(destination.config_params)
    database = params.pop("credentials", None)
    if not (database is None or isinstance(database, str)) or configured_global_config(destination):
        return destination
    credentials: dict[str, Any] = {"global_config": dict(DUCKDB_GLOBAL_CONFIG)}
    if database is not None:
        credentials["database"] = database
    return dlt.destinations.duckdb(credentials=credentials, **params, **destination.caps_params)


def configured_global_config(destination: dlt.destinations.duckdb) -> bool:
    """Whether dlt's providers (environment, secrets.toml) set DuckDB's global_config."""
    try:
        fresh = dlt.destinations.duckdb(destination_name=destination.destination_name)
        resolved = fresh.configuration(fresh.spec(), accept_partial=True)
    except ConfigurationException:
        # A broken DuckDB setting: left to dlt, whose error at the run names it.
        return True
    return resolved.credentials is not None and resolved.credentials.global_config is not None


@dataclass
class ProjectLine:
    """One project's part of a run: what it loaded, where its state stands, or why it failed."""

    conversations: int = 0
    turns: int = 0
    requests: int = 0
    pending: int = 0
    cursor: str | None = None
    # The failure report (sources.polyai.runs.failure_report) when the project failed.
    failure: dict[str, Any] | None = None

    def render(self, label: str) -> str:
        if self.failure is not None:
            return f"  {label}: FAILED, not loaded in this run: {self.failure['message']}"
        return (
            f"  {label}: {self.conversations} conversations, {self.turns} turns, "
            f"{self.pending} in progress, cursor {self.cursor or 'not set'}"
        )

    def then(self, later: ProjectLine) -> ProjectLine:
        """This part followed by `later`: counts added up, state as `later` left it."""
        return ProjectLine(
            conversations=self.conversations + later.conversations,
            turns=self.turns + later.turns,
            requests=self.requests + later.requests,
            pending=later.pending,
            cursor=later.cursor,
            failure=later.failure or self.failure,
        )


@dataclass
class RunSummary:
    conversations: int
    turns: int
    pending: int
    cursor: str | None
    requests: int
    expired: int
    hidden_transcripts: int
    new_columns: list[str]
    load_info: LoadInfo | None
    # Loads this run took: a backfill beyond max_conversations_per_load takes several.
    loads: int = 1
    caught_up: bool = True
    # Seconds spent in each of dlt's steps (TIMED_STEPS), added up over the loads.
    step_seconds: dict[str, float] = field(default_factory=dict)
    # `table.column` -> values whose characters the destination cannot hold were replaced.
    replaced_text: dict[str, int] = field(default_factory=dict)
    # Per project (by label), when the run loaded several or one failed.
    projects: dict[str, ProjectLine] = field(default_factory=dict)

    @property
    def failures(self) -> dict[str, dict[str, Any]]:
        return {label: line.failure for label, line in self.projects.items() if line.failure is not None}

    def render(self) -> str:
        in_loads = f" in {self.loads} loads" if self.loads > 1 else ""
        lines = [f"loaded {self.conversations} conversation rows and {self.turns} turn rows{in_loads}"]
        if len(self.projects) > 1:
            lines += [line.render(label) for label, line in self.projects.items()]
        lines += [
            f"in progress, re-pulled on later runs: {self.pending}",
            f"cursor (started_at read up to): {self.cursor or 'not set'}",
            f"API requests: {self.requests}",
        ]
        if self.step_seconds:
            steps = ", ".join(f"{step} {seconds:.2f} s" for step, seconds in self.step_seconds.items())
            lines.append(f"time in dlt's steps: {steps}")
        if self.expired:
            lines.append(f"gave up on {self.expired} conversations still in progress past max_pending_hours")
        if self.new_columns:
            lines.append(f"schema changes: new columns {', '.join(self.new_columns)}")
        if self.hidden_transcripts:
            lines.append(
                f"{self.hidden_transcripts} conversations had no transcript (the project's "
                "'Conversation transcript' setting is off)"
            )
        if self.replaced_text:
            columns = ", ".join(f"{column} {count}" for column, count in self.replaced_text.items())
            lines.append(
                f"replaced by U+FFFD in {sum(self.replaced_text.values())} values (lone surrogates; "
                f"NUL where the destination cannot hold it): {columns}"
            )
        return "\n".join(lines)


def run_load(
    pipeline: dlt.Pipeline, make_source: Callable[[], DltSource], live: LiveCounters | None = None
) -> RunSummary:
    """Load until the cursor has caught up with now (sources.polyai.load_until_caught_up), summarized.

    `live`: counters the source keeps up to date meanwhile, for a progress display (progress.py).
    """
    summaries: list[RunSummary] = []
    try:
        for load_info in iter_load_parts(pipeline, make_source, pipeline.run, live):
            # Summarized as each part is committed: the trace holds only the last run.
            summaries.append(summarize(pipeline, load_info))
    except ProjectsFailed:
        # The others are loaded; the summary names the failed ones (RunSummary.failures).
        pass
    except Exception as error:
        held = duckdb_lock_message(error)
        if held is None:
            raise
        raise DestinationBusy(held) from error
    return combine(summaries)


def source_state(pipeline: dlt.Pipeline) -> SourceState:
    return SourceState.of_pipeline(pipeline.state)


def caught_up(pipeline: dlt.Pipeline) -> bool:
    """Whether the pipeline's last load read everything up to its clock (see run_load)."""
    return source_state(pipeline).last_run.caught_up


def cursor(pipeline: dlt.Pipeline) -> str | None:
    """How far `started_at` has been read (ISO 8601 UTC), None before the first load."""
    return source_state(pipeline).cursor


def combine(summaries: list[RunSummary]) -> RunSummary:
    """One summary for the loads of one run: counts added up, state as the last load left it."""
    last = summaries[-1]
    projects: dict[str, ProjectLine] = {}
    for summary in summaries:
        for label, line in summary.projects.items():
            projects[label] = projects[label].then(line) if label in projects else line
    return RunSummary(
        conversations=sum(summary.conversations for summary in summaries),
        turns=sum(summary.turns for summary in summaries),
        pending=last.pending,
        cursor=last.cursor,
        requests=sum(summary.requests for summary in summaries),
        expired=sum(summary.expired for summary in summaries),
        hidden_transcripts=sum(summary.hidden_transcripts for summary in summaries),
        new_columns=sorted({column for summary in summaries for column in summary.new_columns}),
        load_info=last.load_info,
        loads=len(summaries),
        caught_up=last.caught_up,
        step_seconds={
            step: sum(summary.step_seconds.get(step, 0.0) for summary in summaries)
            for step in TIMED_STEPS
            if any(step in summary.step_seconds for summary in summaries)
        },
        replaced_text=dict(
            sorted(sum((Counter(summary.replaced_text) for summary in summaries), Counter()).items())
        ),
        projects=projects,
    )


def summarize(pipeline: dlt.Pipeline, load_info: LoadInfo | None) -> RunSummary:
    """The part just loaded, over the projects it ran (those it failed included)."""
    trace = pipeline.last_trace
    row_counts = loaded_row_counts(trace, load_info)
    progress = current_run_progress()
    labels = progress.labels if progress is not None else {}
    failures = progress.failures if progress is not None else {}
    all_states = SourceState.projects_of_pipeline(pipeline.state)
    states = {labels[key]: all_states[key] for key in labels if key in all_states}
    loaded = [state for label, state in states.items() if not states[label].last_run.failure]
    runs = [state.last_run for state in loaded]
    return RunSummary(
        conversations=row_counts.get("conversations", 0),
        turns=row_counts.get("turns", 0),
        pending=sum(len(state.pending) for state in loaded),
        cursor=min((state.cursor for state in loaded if state.cursor), default=None),
        requests=sum(run.requests for run in runs),
        expired=sum(run.expired for run in runs),
        hidden_transcripts=sum(run.hidden_transcripts for run in runs),
        new_columns=new_columns(load_info),
        load_info=load_info,
        caught_up=all(run.caught_up for run in runs),
        step_seconds=step_seconds(trace),
        replaced_text=dict(sum((Counter(run.replaced_text) for run in runs), Counter())),
        projects={
            label: project_line(state, failures.get(key))
            for key, label in labels.items()
            if (state := all_states.get(key)) is not None
        },
    )


def project_line(state: SourceState, failure: dict[str, Any] | None) -> ProjectLine:
    if failure is not None:
        return ProjectLine(requests=state.last_run.requests, failure=failure)
    last_run = state.last_run
    return ProjectLine(
        conversations=last_run.conversations,
        turns=last_run.turns,
        requests=last_run.requests,
        pending=len(state.pending),
        cursor=state.cursor,
    )


def loaded_row_counts(trace: PipelineTrace | None, load_info: LoadInfo | None) -> dict[str, int]:
    """Rows per table in the packages this run loaded.

    The normalize step counts the packages it normalized. A package that an earlier run left
    normalized (killed or failed in its load) is only loaded by this run, so its rows are
    counted from its job files.
    """
    normalized = trace.last_normalize_info if trace is not None else None
    counts = dict(normalized.row_counts) if normalized is not None else {}
    counted = set(normalized.loads_ids) if normalized is not None else set()
    for package in load_info.load_packages if load_info is not None else []:
        if package.load_id in counted:
            continue
        for job in package.jobs.get("completed_jobs", []):
            rows = job_file_rows(job.file_path, job.job_file_info.file_format)
            if rows is not None:
                table = job.job_file_info.table_name
                counts[table] = counts.get(table, 0) + rows
    return counts


def job_file_rows(path: str, file_format: str) -> int | None:
    """Rows in one of dlt's load files; None for files that hold no rows (merge SQL, references)."""
    if file_format == "parquet":
        import pyarrow.parquet

        return int(pyarrow.parquet.read_metadata(path).num_rows)
    if file_format not in ("jsonl", "insert_values"):
        return None
    # jsonl: one row per line; insert_values: one `(...)` per line (dlt escapes newlines in values).
    with FileStorage.open_zipsafe_ro(path, "rt", encoding="utf-8") as rows:
        return sum(1 for line in rows if file_format == "jsonl" or line.startswith("("))


def step_seconds(trace: PipelineTrace | None) -> dict[str, float]:
    """How long each of dlt's steps took in the pipeline's last run, from its trace."""
    seconds: dict[str, float] = {}
    for step in trace.steps if trace is not None else []:
        if step.step in TIMED_STEPS and step.finished_at is not None:
            elapsed = (step.finished_at - step.started_at).total_seconds()
            seconds[step.step] = seconds.get(step.step, 0.0) + elapsed
    return {step: seconds[step] for step in TIMED_STEPS if step in seconds}


KNOWN_COLUMNS = {"conversations": CONVERSATION_COLUMN_TYPES, "turns": TURN_COLUMN_TYPES}


def new_columns(load_info: LoadInfo | None) -> list[str]:
    """Columns this load added beyond the documented ones: new API fields and `__v_json` variants."""
    if load_info is None:
        return []
    added = []
    for package in load_info.load_packages:
        for table, update in (package.schema_update or {}).items():
            known = KNOWN_COLUMNS.get(table)
            if known is None:
                continue
            added += [
                f"{table}.{column}"
                for column in update.get("columns", {})
                if column not in known and not column.startswith("_dlt")
            ]
    return sorted(set(added))


def expected_error(error: BaseException) -> BaseException | None:
    """The user-facing cause (bad setting, API refusal) inside dlt's wrapped exceptions, if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            (
                ConfigurationError,
                ConfigFieldMissingException,
                PolyAIAPIError,
                InvalidResponseError,
                PipelineBusy,
                NothingToReset,
                DestinationBusy,
                DestinationRefused,
            ),
        ):
            return current
        current = current.__cause__ or current.__context__
    return None
