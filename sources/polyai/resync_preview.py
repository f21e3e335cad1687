"""What a resync would change, without writing anything: a dry run (`resync --dry-run`).

The range is read from the API as a resync reads it, each page kept and shaped by the source's
own functions (PageTally, records), so values have the types the load would give them; each
page is then compared with the rows the destination holds for its ids. Nothing is extracted
or loaded, and the pipeline's state does not change (it is only restored from the destination
into the working folder when that is gone, as a run does first).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import dlt
from dlt.destinations.sql_client import SqlClientBase

from .destinations import DestinationFit, destination_type
from .http.client import PolyAIClient
from .operations import pipeline_lock
from .planning import slices_per_worker
from .projects import ProjectSettings
from .resync import ResyncProgress, ResyncRange, resume, resync_windows
from .resync_reading import resync_projects
from .runs import PageTally
from .settings import CONVERSATION_COLUMN_TYPES, TURN_COLUMN_TYPES
from .shaping.privacy import PrivacyRules
from .shaping.records import conversations_table, turns_table, types_from_schema
from .state import SourceState, legacy_project_id
from .warehouse_reads import ids_in_range, matched_and_missing, rows_by_id, warehouse

# Conversation ids each kind of change names, as examples.
EXAMPLES: Final = 5
TURNS: Final = "turns"


@dataclass
class ProjectPreview:
    """What a resync of one project's range would do."""

    label: str
    state_key: str
    conversations: int = 0
    turns: int = 0
    requests: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    not_served: int = 0
    hidden_transcripts: int = 0
    # Served without turns while the destination holds turns for them: those are kept.
    turns_kept: int = 0
    # Field (column, or `turns`) -> conversations whose field would change.
    changed_fields: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    # What the resync would do with an unfinished one in the state ("continue ..." / "replace ...").
    unfinished: str | None = None

    def example(self, kind: str, conversation_id: str) -> None:
        ids = self.examples.setdefault(kind, [])
        if len(ids) < EXAMPLES:
            ids.append(conversation_id)


@dataclass(frozen=True)
class TableTypes:
    """Column types of both tables as the source would shape them for this pipeline."""

    conversations: dict[str, str]
    turns: dict[str, str]

    @classmethod
    def of(cls, pipeline: dlt.Pipeline) -> TableTypes:
        tables: Mapping[str, Any] = pipeline.default_schema.tables if pipeline.default_schema_name else {}
        return cls(
            types_from_schema(CONVERSATION_COLUMN_TYPES, tables.get("conversations", {}).get("columns", {})),
            types_from_schema(TURN_COLUMN_TYPES, tables.get("turns", {}).get("columns", {})),
        )


def preview_resync(
    pipeline: dlt.Pipeline,
    resync: ResyncRange,
    projects: Sequence[ProjectSettings],
    privacy: PrivacyRules,
    now: datetime | None = None,
) -> list[ProjectPreview]:
    """What `resync` would change in each of its projects; writes nothing to the destination."""
    now = now or datetime.now(UTC)
    chosen = resync_projects(projects, resync, now)
    with pipeline_lock(pipeline):
        pipeline.sync_destination()
        states = SourceState.projects_of_pipeline(pipeline.state)
        legacy = legacy_project_id(pipeline.state.get("sources", {}).get("polyai", {}))
        types = TableTypes.of(pipeline)
        fit = DestinationFit.of(destination_type(pipeline))
        previews = []
        with warehouse(pipeline) as reader:
            for project in chosen:
                preview = ProjectPreview(project.label, project.state_key)
                state = states.get(project.state_key)
                preview.unfinished = unfinished_note(state, resync)
                preview_project(
                    preview, reader, project, resync.start, resync.end_at(now), privacy, types, fit, legacy
                )
                previews.append(preview)
    return previews


def unfinished_note(state: SourceState | None, resync: ResyncRange) -> str | None:
    stored = ResyncProgress.read(state.resync) if state is not None else None
    progress = resume(stored, resync)
    if progress.continued_from:
        return f"would go on with the unfinished resync from {progress.continued_from}"
    if progress.replaced:
        return f"would replace the unfinished resync {progress.replaced}"
    return None


def preview_project(
    preview: ProjectPreview,
    reader: SqlClientBase[Any] | None,
    project: ProjectSettings,
    start: datetime,
    end: datetime,
    privacy: PrivacyRules,
    types: TableTypes,
    fit: DestinationFit,
    legacy: str | None,
) -> None:
    """Reads the range window after window and compares each page with the destination's rows."""
    connector = project.connector
    client = PolyAIClient(connector)
    client.text_repair = fit.text_repair()
    # A throw-away pending set: the dry run changes no state.
    tally = PageTally(connector, privacy, pending={})
    per_worker = slices_per_worker(connector.limit)
    for window in resync_windows(start, end, connector.concurrency, connector.window_span, per_worker):
        for page in client.iter_pages(window):
            compare_page(preview, reader, connector.project_id, tally.take(page), types, legacy)
    preview.conversations, preview.turns = len(tally.kept), tally.turns
    preview.hidden_transcripts, preview.requests = tally.hidden_transcripts, client.requests_made
    missing: list[str] = []
    loaded = ids_in_range(reader, connector.project_id, start, end)
    _, preview.not_served = matched_and_missing(loaded, tally.kept, missing, EXAMPLES)
    preview.examples["not_served"] = missing


def compare_page(
    preview: ProjectPreview,
    reader: SqlClientBase[Any] | None,
    project_id: str,
    conversations: list[dict[str, Any]],
    types: TableTypes,
    legacy: str | None,
) -> None:
    """Counts each conversation of the page as new, changed (and which fields) or unchanged."""
    if not conversations:
        return
    rows = conversations_table(conversations, dict(types.conversations)).table.to_pylist()
    served_turns = by_conversation(turns_table(conversations, dict(types.turns)).table.to_pylist())
    ids = [row["id"] for row in rows]
    loaded = {row["id"]: row for row in rows_by_id(reader, "conversations", "id", project_id, ids)}
    loaded_turns = by_conversation(rows_by_id(reader, "turns", "conversation_id", project_id, ids, legacy))
    for row in rows:
        conversation_id = row["id"]
        old = loaded.get(conversation_id)
        if old is None:
            preview.new += 1
            preview.example("new", conversation_id)
            continue
        fields = changed_columns(row, old, types.conversations)
        turns = served_turns.get(conversation_id)
        before = loaded_turns.get(conversation_id, [])
        if turns:
            if not same_turns(turns, before, types.turns):
                fields.append(TURNS)
        elif before:
            # No turns served (a hidden transcript, or none at all): the load keeps the turns
            # loaded, as a run does; an absence never deletes.
            preview.turns_kept += 1
        if fields:
            preview.changed += 1
            preview.changed_fields.update(fields)
            preview.example("changed", conversation_id)
        else:
            preview.unchanged += 1


def by_conversation(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["conversation_id"], []).append(row)
    for turns in grouped.values():
        turns.sort(key=lambda turn: turn["turn_index"])
    return grouped


def changed_columns(
    served: Mapping[str, Any], loaded: Mapping[str, Any], types: Mapping[str, str]
) -> list[str]:
    """The columns whose value the load would change (dlt's own `_dlt_*` columns aside)."""
    names = dict.fromkeys([*served, *loaded])
    return [
        name
        for name in names
        if not name.startswith("_dlt")
        and not same_value(served.get(name), loaded.get(name), types.get(name) == "json")
    ]


def same_turns(served: list[dict[str, Any]], loaded: list[dict[str, Any]], types: Mapping[str, str]) -> bool:
    if len(served) != len(loaded):
        return False
    return all(not changed_columns(new, old, types) for new, old in zip(served, loaded, strict=True))


def same_value(served: Any, loaded: Any, is_json: bool) -> bool:
    """Equal as the destination holds them: JSON by value (destinations reformat its text),
    timestamps as instants (a driver may return them in another zone, or naive in UTC)."""
    if is_json:
        return bool(json_value(served) == json_value(loaded))
    if isinstance(served, datetime) and isinstance(loaded, datetime):
        return as_utc(served) == as_utc(loaded)
    return bool(served == loaded)


def json_value(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
