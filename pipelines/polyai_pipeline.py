"""Load PolyAI conversations and turns into a warehouse: one incremental run per call.

python pipelines/polyai_pipeline.py                 # settings from .dlt/ and the environment
python pipelines/polyai_pipeline.py --demo          # no credentials, no network: local simulator
python pipelines/polyai_pipeline.py --run-dbt       # then build and test the dbt project in dbt/
python pipelines/polyai_pipeline.py status [--json] # per project: cursor, lag, pending, last run
python pipelines/polyai_pipeline.py reset --yes     # the next run starts again at start_date
python pipelines/polyai_pipeline.py resync --from ISO --to ISO [--project P] [--dry-run]
                                                    # read a started_at range again, replace it
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":
    # Run as the command, the process is the connector's own. First: the imports below load
    # pyarrow, which fixes Arrow's allocator then.
    from pipelines.process_tuning import tune_process

    tune_process()

import argparse
import contextlib
import logging
import signal
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException, LookupTrace
from dlt.common.exceptions import SignalReceivedException
from dlt.load.exceptions import LoadClientJobFailed
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines import reset_command, resync_command, status_command
from pipelines.dbt_runner import DbtFailed, run_dbt
from pipelines.demo import run_demo
from pipelines.lean_imports import loading_without_pandas
from pipelines.progress import add_progress_options, dlt_progress, shown_progress
from pipelines.runner import (
    DEFAULT_DATASET,
    DEFAULT_PIPELINE_NAME,
    DUCKDB_GLOBAL_CONFIG_ENV,
    expected_error,
    make_pipeline,
    run_load,
)
from sources.polyai import polyai_source
from sources.polyai.projects import project_api_keys
from sources.polyai.redaction import install_log_redaction, redact, register_secrets

SECRET_SETTINGS = ("api_key", "pii_salt")
# The subcommands, each a module with HELP, add_arguments(parser) and run(args, pipeline) -> exit code.
COMMANDS: dict[str, Any] = {"status": status_command, "reset": reset_command, "resync": resync_command}
EXIT_FAILED = 1
DISK_FULL_HINT = (
    "The disk is full (the destination's file, or dlt's working folder: --pipelines-dir, by "
    "default ~/.dlt/pipelines, /var/dlt/pipelines for root). Free some space, then run again: "
    "dlt finishes the load."
)
EXIT_EXPECTED_ERROR = 2
EXIT_DBT_FAILED = 3
# What a shell reports for a process ended by SIGTERM (128 + 15), kept with the message below.
EXIT_TERMINATED = 128 + signal.SIGTERM
# DuckDB's own message names `SET memory_limit`, which a user of this command cannot run.
DUCKDB_MEMORY_HINT = (
    "DuckDB ran out of its memory_limit (this command sets 64MB, enough to merge a load of "
    "400k conversations again over full tables). Lower max_conversations_per_load, or raise "
    f'the limit for this run: {DUCKDB_GLOBAL_CONFIG_ENV}=\'{{"memory_limit": "1GB"}}\''
)
TERMINATED_MESSAGE = (
    "error: stopped by SIGTERM before the run finished. Loads already committed stay; the next "
    "run finishes a load left pending and goes on from the last committed cursor: run it again."
)
# The connector's documented names of its settings (README, "Configuration").
SOURCE_SETTING_ENV = "SOURCES__POLYAI__{}"


class Terminated(BaseException):
    """SIGTERM arrived: a BaseException, so that no `except Exception` on the way swallows it."""


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def add_pipeline_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """The options that name the pipeline, for the run and for every subcommand.

    A subcommand's copy defaults to SUPPRESS so that an option given before the subcommand's
    name is not reset by the subcommand's default.
    """

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--destination",
        default=default(None),
        help="dlt destination: duckdb (default), bigquery, snowflake, postgres, motherduck",
    )
    parser.add_argument("--pipeline-name", default=default(None), help=f"default {DEFAULT_PIPELINE_NAME}")
    parser.add_argument("--dataset-name", default=default(DEFAULT_DATASET), help=f"default {DEFAULT_DATASET}")
    parser.add_argument(
        "--pipelines-dir", default=default(None), help="where dlt keeps the pipeline's working state"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=default(False),
        help="log every API request (path, status, ms; never the key), each retry, and dlt's progress",
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", action="store_true", help="load simulated data into a local DuckDB file")
    add_pipeline_options(parser)
    parser.add_argument(
        "--demo-conversations", type=int, default=3000, help="conversations the demo simulator generates"
    )
    parser.add_argument(
        "--run-dbt",
        action="store_true",
        help="after the load, build and test the dbt project (dbt/) in the same destination",
    )
    add_progress_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for name, command in COMMANDS.items():
        subparser = commands.add_parser(name, help=command.HELP, description=command.HELP)
        add_pipeline_options(subparser, suppress=True)
        command.add_arguments(subparser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Without a handler a SIGTERM (a scheduler's timeout, `docker stop`) ends the process
    # silently; dlt intercepts it only inside its normalize and load steps.
    signal.signal(signal.SIGTERM, raise_terminated)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    install_log_redaction()
    register_configured_secrets()
    if not args.verbose:
        logging.getLogger("dlt").addFilter(without_traceback)
    try:
        if args.demo:
            return run_demo(args)
        pipeline = make_pipeline(
            args.pipeline_name or DEFAULT_PIPELINE_NAME,
            args.destination or "duckdb",
            args.dataset_name,
            args.pipelines_dir,
            dlt_progress(args.verbose),
        )
        if args.command is not None:
            exit_code: int = COMMANDS[args.command].run(args, pipeline)
            return exit_code
        with loading_without_pandas(), shown_progress(args) as live:
            summary = run_load(pipeline, polyai_source, live)
        print(summary.render())
        if summary.failures:
            return report_failed_projects(summary.failures)
        if args.run_dbt:
            print(run_dbt(pipeline).render())
        return 0
    except Terminated:
        print(TERMINATED_MESSAGE, file=sys.stderr)
        return EXIT_TERMINATED
    except (Exception, SignalReceivedException) as error:
        return report_failure(error, args.pipeline_name or DEFAULT_PIPELINE_NAME)


def report_failed_projects(failures: dict[str, dict[str, Any]]) -> int:
    """The projects a run could not load (the others were): exit 2 if one was refused, else 1."""
    for label, failure in failures.items():
        print(redact(f"error: {label} was not loaded: {failure['message']}"), file=sys.stderr)
    print(
        "The other projects were loaded and committed; the failed ones keep their cursor, and the "
        "next run catches them up.",
        file=sys.stderr,
    )
    refused = any(failure.get("refused") for failure in failures.values())
    return EXIT_EXPECTED_ERROR if refused else EXIT_FAILED


TRACEBACK_START = "Traceback (most recent call last)"


def without_quoted_traceback(message: str) -> str:
    """dlt quotes a job's whole traceback in its message: the text before it and its last line
    (the exception itself) say what failed."""
    quoted = message.find(TRACEBACK_START)
    if quoted < 0:
        return message
    last = next((line.strip() for line in reversed(message.splitlines()) if line.strip()), "")
    return f"{message[:quoted].rstrip()} {last}"


def without_traceback(record: logging.LogRecord) -> bool:
    """dlt logs each failed load job with its traceback; the cause comes again in the one-line
    error this command ends with, so the traceback is kept for --verbose."""
    message = record.getMessage()
    if record.exc_info or record.exc_text or TRACEBACK_START in message:
        record.exc_info, record.exc_text = None, None
        record.msg, record.args = f"{without_quoted_traceback(message)} (the traceback with --verbose)", None
    return True


def register_configured_secrets() -> None:
    """The secrets in dlt's config, masked in all output even if the source never starts."""
    for name in SECRET_SETTINGS:
        with contextlib.suppress(Exception):  # unset or unreadable: nothing to mask
            register_secrets(dlt.secrets.get(f"sources.polyai.{name}"))
    with contextlib.suppress(Exception):
        register_secrets(*project_api_keys(dlt.secrets.get("sources.polyai.projects")))


def report_failure(error: BaseException, pipeline_name: str = DEFAULT_PIPELINE_NAME) -> int:
    """Prints the failure, every configured secret masked (redaction), whatever its source."""
    if terminated_in_dlt(error):
        print(TERMINATED_MESSAGE, file=sys.stderr)
        return EXIT_TERMINATED
    if isinstance(error, DbtFailed):
        print(redact(f"error: {error}"), file=sys.stderr)
        return EXIT_DBT_FAILED
    known = expected_error(error)
    if isinstance(known, ConfigFieldMissingException):
        print(redact(f"error: {missing_settings_message(known, pipeline_name)}"), file=sys.stderr)
        return EXIT_EXPECTED_ERROR
    if known is not None:
        print(redact(f"error: {known}"), file=sys.stderr)
        return EXIT_EXPECTED_ERROR
    if isinstance(error, PipelineStepFailed):
        print(
            redact(f"error: the {error.step} step failed: {without_quoted_traceback(str(error.exception))}"),
            file=sys.stderr,
        )
        for advice in failure_advice(error):
            print(advice, file=sys.stderr)
        return EXIT_FAILED
    # Unexpected: the whole traceback, as Python would print it, but masked.
    print(redact("".join(traceback.format_exception(error))), file=sys.stderr, end="")
    return EXIT_FAILED


def failure_advice(error: PipelineStepFailed) -> list[str]:
    """What to do about a failed step, by its cause."""
    text = str(error.exception)
    advice = []
    if "Out of Memory" in text:
        advice.append(DUCKDB_MEMORY_HINT)
    if "No space left on device" in text or "ENOSPC" in text:
        advice.append(DISK_FULL_HINT)
    if isinstance(error.exception, LoadClientJobFailed):
        advice.append(
            "The destination refused that load for good, so it was aborted and the pipeline's "
            "state rolled back with it: nothing was lost. Remove the cause named above, then run "
            "again: the next run reads that range again."
        )
    else:
        advice.append("Nothing was lost: run again and dlt finishes the pending load first.")
    return advice


def terminated_in_dlt(error: BaseException) -> bool:
    """Whether dlt stopped its normalize or load step for a SIGTERM (it holds the signal there)."""
    cause = error.exception if isinstance(error, PipelineStepFailed) else error
    return isinstance(cause, SignalReceivedException) and cause.signal_code == signal.SIGTERM


def missing_settings_message(error: ConfigFieldMissingException, pipeline_name: str) -> str:
    """One line naming each missing setting and the variable that sets it.

    dlt's own message lists every key it probed and warns about the run folder, which buries
    the one thing to do.
    """
    names = ", ".join(f"{field} ({setting_variable(error, field, pipeline_name)})" for field in error.fields)
    where = "the environment, .dlt/secrets.toml or .dlt/config.toml"
    if not (Path.cwd() / ".dlt").is_dir():
        where += " (dlt reads .dlt/ from the working directory: run from the repository folder)"
    return f"missing setting(s) {names}: set them in {where}"


def setting_variable(error: ConfigFieldMissingException, field: str, pipeline_name: str) -> str:
    """The environment variable for `field`: the connector's documented one, else dlt's first."""
    tried = [
        trace.key
        for trace in error.traces.get(field, [])
        # The other kind, LookupTraces, are an embedded spec's traces, from no provider.
        if isinstance(trace, LookupTrace)
        and trace.provider == "Environment Variables"
        and not (trace.sections and trace.sections[0] == pipeline_name)
    ]
    documented = SOURCE_SETTING_ENV.format(field.upper())
    if documented in tried or not tried:
        return documented
    return tried[0]


if __name__ == "__main__":
    sys.exit(main())
