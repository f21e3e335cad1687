"""One run of the source over its projects: each project's plan, client, tally and state.

The projects share the run's connections and its limit of conversations per load; each has
its own key, host, retry pacing (a 429 slows that project's host only) and state. A project
whose fetch fails is left as it was and reported; the others are loaded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dlt
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable

from . import run_report
from .http.client import Page, PolyAIClient
from .http.concurrent_windows import FetchLimit, ProjectFetch, WindowQueue
from .live import LiveCounters
from .loading import RunProgress, current_run_progress, warn_if_not_caught_up
from .planning import RunPlan
from .projects import ProjectSettings
from .run_history import ProjectHistory
from .runs import PageTally, close_run, failure_report, record_failure, start_run
from .shaping.privacy import PrivacyRules
from .shaping.records import parse_timestamp
from .shaping.table_output import TableOutput, typed_page_decoder
from .state import LegacyOwner, SourceState, legacy_project_id, project_states
from .upgrade import fill_legacy_turns, require_owner
from .written_once import (
    WRITTEN_ONCE_DESTINATIONS,
    EarlierSightings,
    PartSightings,
    StagedIds,
    load_committed,
    replaces_nothing,
)

Clock = Callable[[], datetime]


@dataclass
class ProjectRun:
    project: ProjectSettings
    state: SourceState
    plan: RunPlan
    fetch: ProjectFetch
    tally: PageTally
    # "now" of the run: the same for every project of one extraction.
    now: datetime
    # What the part's row of the run history (`_polyai_runs`) needs beyond the tally.
    history: ProjectHistory
    failure: Exception | None = None
    live: LiveCounters | None = None

    @property
    def client(self) -> PolyAIClient:
        return self.fetch.client

    def take(self, page: Page) -> list[dict[str, Any]]:
        """The page's conversations new to the run (PageTally.take), counted for the live figures
        and the run history."""
        turns = self.tally.turns
        conversations = self.tally.take(page)
        self.history.took(page.window, conversations)
        if self.live is not None:
            self.live.took(len(conversations), self.tally.turns - turns)
        return conversations


@dataclass
class ProjectsReading:
    """What one extraction of the source reads: its projects, and how it shapes their pages."""

    projects: Sequence[ProjectSettings]
    legacy_owner: LegacyOwner | None
    privacy: PrivacyRules
    clock: Clock
    table_outputs: tuple[TableOutput, TableOutput]

    @property
    def concurrency(self) -> int:
        return self.projects[0].connector.concurrency

    @property
    def several(self) -> bool:
        return len(self.projects) > 1

    @property
    def writes_once(self) -> bool:
        """Whether the destination takes appends where a merge would replace nothing (written_once)."""
        return self.table_outputs[1].fit().destination in WRITTEN_ONCE_DESTINATIONS

    def start(self, source_state: MutableMapping[str, Any]) -> list[ProjectRun]:
        """A run per project, except those that failed earlier in this run (load_until_caught_up)."""
        progress = current_run_progress()
        skipped = progress.failures if progress is not None else {}
        projects = [p for p in self.projects if p.state_key not in skipped]
        require_owner(source_state, self.legacy_owner)
        states = project_states(source_state, [p.state_key for p in projects], self.legacy_owner)
        fill_legacy_turns(source_state)
        conversation_output, turn_output = self.table_outputs
        fit = turn_output.fit()
        conversation_output.merge = fit.conversations_merge
        turn_output.merge = functools.partial(
            fit.turns_merge, legacy_project_id=legacy_project_id(source_state)
        )
        now, earlier = self.clock(), self.earlier_sightings(progress)
        limit = FetchLimit(self.projects[0].connector.max_conversations_per_load)
        runs = []
        for project in projects:
            state = SourceState(states[project.state_key])
            with run_report.about(project.label if self.several else None):
                plan, queue = self.plan(state, project, now, limit)
            client = PolyAIClient(project.connector)
            client.text_repair = fit.text_repair()
            decoder = typed_page_decoder(project.connector, self.privacy, *self.table_outputs)
            tally = PageTally(project.connector, self.privacy, state.pending)
            sightings = earlier.of(project.state_key) if earlier is not None else None
            if sightings is not None:
                tally.loaded_before = sightings.committed
            fetch, history = ProjectFetch(client, queue, decoder), ProjectHistory.begin(state, plan)
            live = progress.live if progress is not None else None
            if live is not None:
                live.start_part(project.state_key, client, plan.main_windows, queue)
            runs.append(ProjectRun(project, state, plan, fetch, tally, now, history, live=live))
        return runs

    # What a resync (resync_reading.ResyncReading) reads and keeps instead of a run: its plan,
    # how it closes, what a failure changes, and where the loaded projects stand.
    def plan(
        self, state: SourceState, project: ProjectSettings, now: datetime, limit: FetchLimit
    ) -> tuple[RunPlan, WindowQueue]:
        return start_run(state, project.connector, now, limit)

    def close(self, run: ProjectRun) -> None:
        close_run(run.state, run.plan, run.fetch.windows, run.client, run.tally, run.now)

    def record_failure(self, run: ProjectRun) -> None:
        record_failure(run.state, run.client, run.failure or Exception(), run.now)

    def where_loaded_stand(self, loaded: Sequence[ProjectRun]) -> tuple[bool, tuple[str | None, ...]]:
        """Whether the loaded projects caught up, and where each stands (each part moves one)."""
        return all(run.state.last_run.caught_up for run in loaded), tuple(run.state.cursor for run in loaded)

    def warn_if_behind(self, loaded: Sequence[ProjectRun]) -> None:
        limit = self.projects[0].connector.max_conversations_per_load
        warn_if_not_caught_up([run.state for run in loaded], limit)

    def history_columns(self, run: ProjectRun) -> dict[str, Any]:
        """What a run's row of `_polyai_runs` (run_history.project_row) takes as it is."""
        return {"kind": "run"}

    def give_up(self, runs: Sequence[ProjectRun]) -> None:
        """Every project failed: the run fails with the first error, and nothing changes."""
        if self.several:
            for run in runs:
                run_report.warn_project_failed(run.project.label, run.failure or Exception())
        progress = current_run_progress()
        for run in runs:
            if run.failure is not None and progress is not None:
                # The load is abandoned with its state: the failure is kept by the loop instead.
                self.record_failure(run)
                progress.gave_up[run.project.state_key] = run.state.last_run.stored()
        first = next(run.failure for run in runs if run.failure is not None)
        raise first

    def finish(self, runs: Sequence[ProjectRun]) -> None:
        """Each project's state moves, or for one that failed, records why (and nothing else)."""
        progress = current_run_progress()
        for run in runs:
            run.state.label = run.project.label
            if run.failure is not None:
                self.record_failure(run)
                run_report.warn_project_failed(run.project.label, run.failure)
                if progress is not None:
                    progress.failures[run.project.state_key] = failure_report(run.failure)
                continue
            with run_report.about(run.project.label if self.several else None):
                self.close(run)
        loaded = [run for run in runs if run.failure is None]
        if progress is not None:
            progress.labels.update({run.project.state_key: run.project.label for run in runs})
            progress.caught_up, progress.cursors = self.where_loaded_stand(loaded)
        self.warn_if_behind(loaded)
        self.offer_appends(runs)
        if progress is not None:
            progress.sightings = self.sightings(loaded)

    def earlier_sightings(self, progress: RunProgress | None) -> EarlierSightings | None:
        """What the last part of this run kept, once the destination has recorded its load."""
        sightings = progress.sightings if progress is not None else None
        if sightings is None or not load_committed(dlt.current.pipeline(), sightings.load_id):
            return None
        return sightings

    def sightings(self, loaded: Sequence[ProjectRun]) -> EarlierSightings | None:
        """What this part keeps, for the next part of the run not to stage it again (written_once)."""
        if not self.writes_once:
            return None
        try:
            load_id = dlt.current.load_package_state()["load_id"]
        except CurrentLoadPackageStateNotAvailable:  # read outside a pipeline's extraction
            return None
        projects = {
            run.project.state_key: PartSightings(
                run.tally.kept, frozenset(run.state.pending), parse_timestamp(run.state.cursor)
            )
            for run in loaded
        }
        return EarlierSightings(load_id, projects)

    def offer_appends(self, runs: Sequence[ProjectRun]) -> None:
        """Lets each table be appended where its merge would replace no loaded row (written_once)."""
        conversation_output, turn_output = self.table_outputs
        conversation_output.replaces_nothing = turn_output.replaces_nothing = None
        if not self.writes_once:
            return
        # A re-pulled conversation was loaded before: such a load merges, without a query.
        if any(not run.plan.repull_targets.isdisjoint(run.tally.kept) for run in runs):
            return
        pipeline, staged = dlt.current.pipeline(), StagedIds([run.tally.kept for run in runs])
        for output, id_column in ((conversation_output, "id"), (turn_output, "conversation_id")):
            output.replaces_nothing = functools.partial(
                replaces_nothing, pipeline, output.table, output.time_column, id_column, staged
            )
