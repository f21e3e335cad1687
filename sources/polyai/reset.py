"""Forgetting where projects stand, so that their next run reads again from `start_date`."""

from __future__ import annotations

from collections.abc import Sequence

import dlt

from .operations import pipeline_lock
from .state import LEGACY_KEYS, PROJECTS, forget_progress


class NothingToReset(Exception):
    """The pipeline has no state for the projects named (never run, or other projects)."""


def reset_projects(pipeline: dlt.Pipeline, state_keys: Sequence[str] | None = None) -> list[str]:
    """Forgets the cursor, pending set and re-pull misses of `state_keys` (default: every project).

    The state is first restored as a run would (from the destination when the working folder is
    gone), then the change is committed to the destination, as a load of the state alone, so a
    lost working folder does not undo it. The rows already loaded stay: the next run replaces
    them by merging. Returns the state keys reset.
    """
    with pipeline_lock(pipeline):
        if pipeline.has_pending_data:
            raise NothingToReset(
                "a load that an earlier run left unfinished is pending: run the pipeline once "
                "(it finishes that load), then reset"
            )
        pipeline.sync_destination()
        source = pipeline.state.get("sources", {}).get("polyai", {})
        known = sorted(source.get(PROJECTS) or {})
        if any(key in source for key in LEGACY_KEYS):
            known.append("")
        chosen = known if state_keys is None else [key for key in state_keys if key in known]
        if not chosen:
            raise NothingToReset("the pipeline has no state for that project yet: nothing to reset")
        with pipeline.managed_state(extract_state=True) as state:
            source_state = state["sources"]["polyai"]
            for key in chosen:
                forget_progress(source_state if key == "" else source_state[PROJECTS][key])
        pipeline.normalize()
        pipeline.load()
    return chosen
