"""The status verdicts and a project's status, from its state alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sources.polyai.state import LastRun, SourceState
from sources.polyai.status import freshness, last_outcome, project_status

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_freshness_is_never_run_ok_or_late_by_the_cursor_lag() -> None:
    assert freshness(None, NOW, timedelta(hours=2)) == "never run"
    assert freshness((NOW - timedelta(hours=1)).isoformat(), NOW, timedelta(hours=2)) == "ok"
    assert freshness((NOW - timedelta(hours=3)).isoformat(), NOW, timedelta(hours=2)) == "late"


def test_last_outcome_reads_failure_and_partial_backfills() -> None:
    assert last_outcome(SourceState({})) is None
    state = SourceState({"cursor": NOW.isoformat()})
    state.last_run = LastRun(ran_at=NOW.isoformat(), caught_up=False)
    assert last_outcome(state) == "partial"
    state.last_run = LastRun(ran_at=NOW.isoformat(), failure={"status": 403, "message": "refused"})
    assert last_outcome(state) == "failed"
    state.last_run = LastRun(ran_at=NOW.isoformat())
    assert last_outcome(state) == "ok"


def test_a_removed_project_reads_its_id_from_its_state_key_and_its_oldest_pending() -> None:
    state = SourceState(
        {"cursor": (NOW - timedelta(minutes=30)).isoformat(), "label": "projects[1] (proj-b)"}
    )
    state.pending = {
        "c1": (NOW - timedelta(hours=2)).isoformat(),
        "c2": (NOW - timedelta(hours=5)).isoformat(),
    }
    rows = {"conversations": {"proj-b": 7}, "turns": {"proj-b": 40, "proj-a": 3}}
    status = project_status("euw-1/proj-b/live", state, None, rows, NOW, timedelta(hours=2))
    assert (status.project_id, status.label, status.configured) == ("proj-b", "projects[1] (proj-b)", False)
    assert status.lag_seconds == 1800 and status.verdict == "ok"
    assert status.pending == 2 and status.oldest_pending == (NOW - timedelta(hours=5)).isoformat()
    assert status.rows == {"conversations": 7, "turns": 40}
    assert project_status("euw-1/proj-b/live", state, None, None, NOW, timedelta(hours=2)).rows == {
        "conversations": None,
        "turns": None,
    }
