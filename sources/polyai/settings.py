"""Constants of the PolyAI Conversations API and of the tables the connector writes."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

REGIONS: Final = ("us-1", "uk-1", "euw-1")
REGION_BASE_URL: Final = "https://api.{region}.platform.polyai.app"
API_VERSIONS: Final = ("v1", "v2", "v3")
CLIENT_ENVS: Final = ("sandbox", "pre-release", "live")

MAX_LIMIT: Final = 1000
# Windows fetched at once: against a slow API, more connections hide its latency, with less gain
# past 10; against a fast one, 8 and 10 cost alike (docs/performance.md, "Why the defaults").
# 10 is also the connection-pool size that requests (urllib3) and boto3 default to: still modest
# for an API that publishes no rate limit.
# After a 429 all connections slow down together (retries.RequestPacer) and speed back up as
# answers come back.
DEFAULT_CONCURRENCY: Final = 10
# A backfill is cut into concurrency x SLICES_PER_WORKER windows so that workers stay busy
# when traffic is uneven; an incremental run shorter than MIN_PARALLEL_SPAN stays one window.
SLICES_PER_WORKER: Final = 4
# With pages of LARGE_PAGE conversations or more, one window per worker (before the taper):
# every window costs at least one request, and a slice of a few weeks' backfill often fits in
# one large page, so more windows add requests and rounds of latency, not parallelism. With
# small pages a window is many pages long and more windows keep the workers balanced
# (docs/performance.md, "Windows and page size").
SLICES_PER_WORKER_LARGE_PAGES: Final = 1
LARGE_PAGE: Final = 500
MIN_PARALLEL_SPAN: Final = timedelta(hours=1)
# and never into windows longer than a day, so that a backfill load can stop after any day
# (max_conversations_per_load) with a few windows still in flight, not weeks of them.
MAX_SLICE_SPAN: Final = timedelta(days=1)
# A backfill is loaded in several loads of about this many conversations, each committed with
# its cursor: a backfill that fails part-way resumes from its last load, and each merge stays
# small (DuckDB's memory while merging grows with the load, not with the table).
DEFAULT_MAX_CONVERSATIONS_PER_LOAD: Final = 50_000
# Where a first run begins when `start_date` is not set.
DEFAULT_START_DAYS_AGO: Final = 30

# A re-pull window is [started_at - pad, started_at + pad): wide enough to contain the
# conversation whether the API treats the bounds as inclusive or exclusive, narrow enough
# that it returns (almost) nothing else.
REPULL_PADDING: Final = timedelta(milliseconds=1)
# Finished-only re-pull windows a run sends at most: beyond it, the closest pending
# conversations share a window (windows.within_budget), so that thousands of conversations
# stuck in progress cost a few requests per run, not one each.
MAX_REPULL_WINDOWS: Final = 32

# A load replaces rows that started at most this long before the oldest conversation it stages
# (planning.replace_bound): the server reports a conversation's started_at again at each read,
# and a time that moved later between two reads leaves the earlier row this far back at most.
REPLACE_MARGIN: Final = timedelta(days=1)

API_KEY_HEADER: Final = "x-api-key"
CORRELATION_HEADER: Final = "X-PolyAI-Correlation-Id"

# Text fields that v1 sends as null where v3 sends "".
CONVERSATION_TEXT_FIELDS: Final = (
    "variant_id",
    "variant_name",
    "environment",
    "channel",
    "from_number",
    "to_number",
    "handoff_reason",
    "handoff_destination",
)
TURN_TEXT_FIELDS: Final = (
    "user_input",
    "user_input_dtmf",
    "agent_response",
    "translated_user_input",
    "english_agent_response",
)
TURN_FLAG_FIELDS: Final = ("is_ood", "is_silence")
TURN_TIMESTAMP_FIELDS: Final = ("user_input_datetime", "agent_response_datetime")

# Column types of the known fields. Anything else the API sends becomes a new column whose
# type is taken from the data; dicts and lists always become JSON.
CONVERSATION_COLUMN_TYPES: Final[dict[str, str]] = {
    "id": "text",
    "account_id": "text",
    "project_id": "text",
    "variant_id": "text",
    "variant_name": "text",
    "environment": "text",
    "started_at": "timestamp",
    "channel": "text",
    "from_number": "text",
    "to_number": "text",
    "in_progress": "bool",
    "num_turns": "bigint",
    "total_duration": "bigint",
    "polyai_duration": "bigint",
    "handoff": "bool",
    "handoff_reason": "text",
    "handoff_destination": "text",
    "num_silences": "bigint",
    "num_ood": "bigint",
    "metrics": "json",
    "state": "json",
}
TURN_COLUMN_TYPES: Final[dict[str, str]] = {
    "conversation_id": "text",
    "turn_index": "bigint",
    "conversation_started_at": "timestamp",
    # The conversation's, so that turns can be filtered by project without a join.
    "account_id": "text",
    "project_id": "text",
    "user_input": "text",
    "user_input_dtmf": "text",
    "user_input_datetime": "timestamp",
    "agent_response": "text",
    "agent_response_datetime": "timestamp",
    "barge_in": "bool",
    "intents": "json",
    "entities": "json",
    "is_ood": "bool",
    "is_silence": "bool",
    "translated_user_input": "text",
    "english_agent_response": "text",
    # The spec documents latency as seconds, the migration guide as an object: numbers go
    # to `latency`, objects to `latency_detail`, so neither is lost and both keep a type.
    "latency": "double",
    "latency_detail": "json",
}
# Fields of a conversation that are not columns of `conversations`.
CONVERSATION_NESTED_FIELDS: Final = ("turns",)

# The run history (run_history.py): one row per load part and project, loaded in the same load
# as the data it describes, merged on its key (dlt's load jobs are at-least-once).
RUNS_TABLE: Final = "_polyai_runs"
RUN_KEY: Final = ("run_id", "part", "state_key")
RUN_COLUMN_TYPES: Final[dict[str, str]] = {
    "run_id": "text",
    "part": "bigint",
    "state_key": "text",
    "label": "text",
    "project_id": "text",
    "account_id": "text",
    "region": "text",
    "client_env": "text",
    # "run" for the schedule's runs, "resync" for a range read again (its cursor stays).
    "kind": "text",
    "outcome": "text",
    "ran_at": "timestamp",
    "extract_started_at": "timestamp",
    "extract_seconds": "double",
    "window_from": "timestamp",
    "window_to": "timestamp",
    "cursor_before": "timestamp",
    "cursor_after": "timestamp",
    "conversations": "bigint",
    "conversations_new": "bigint",
    "turns": "bigint",
    "repulled": "bigint",
    "finished_since_last": "bigint",
    "pending_after": "bigint",
    "expired": "bigint",
    "hidden_transcripts": "bigint",
    "requests": "bigint",
    "retries": "bigint",
    "rate_limited": "bigint",
    "status": "bigint",
    "error_code": "text",
    "correlation_id": "text",
    "error_message": "text",
    "connector_version": "text",
}
