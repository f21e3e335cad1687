"""The warnings a run of the source ends with: what it could not load as asked, and why.

Each names the setting or the server behaviour behind it, so that the warning says what to do.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Final

from .config import ConnectorSettings
from .planning import WIDEST

logger = logging.getLogger(__name__)

# The project the warnings are about, when a run loads several.
_PROJECT: contextvars.ContextVar[str | None] = contextvars.ContextVar("polyai_project", default=None)


@contextlib.contextmanager
def about(label: str | None) -> Iterator[None]:
    """The warnings logged inside name the project `label` first."""
    token = _PROJECT.set(label)
    try:
        yield
    finally:
        _PROJECT.reset(token)


class _NamesProject(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        label = _PROJECT.get()
        if label and not getattr(record, "polyai_project", None):
            record.msg, record.polyai_project = f"{label}: {record.msg}", label
        return True


logger.addFilter(_NamesProject())


def warn_project_failed(label: str, error: BaseException) -> None:
    logger.error(
        "%s: not loaded in this run: %s. Its cursor stays where it was; the other projects were "
        "loaded, and the next run catches this one up.",
        label,
        error,
    )


# An API that treats a bound as inclusive, or rounds it, is not a filter that disagrees.
FILTER_TOLERANCE: Final = timedelta(seconds=1)
# Conversation ids a warning names; the rest are counted.
SAMPLE: Final = 5


def warn_hidden_transcripts(hidden_transcripts: int) -> None:
    if hidden_transcripts:
        logger.warning(
            "%d conversations came with no turns although num_turns > 0: the project's "
            "'Conversation transcript' setting (show_transcripts) is off for this API key. "
            "Their turns already loaded were kept; ask PolyAI to turn transcripts on.",
            hidden_transcripts,
        )


def warn_replaced_text(replaced: dict[str, int]) -> None:
    if replaced:
        logger.warning(
            "replaced characters the destination cannot hold by U+FFFD (lone UTF-16 surrogates; "
            "NUL on PostgreSQL) in %d values: %s",
            sum(replaced.values()),
            ", ".join(f"{column} {count}" for column, count in replaced.items()),
        )


def warn_lost_repulls(lost: Sequence[str]) -> None:
    if lost:
        logger.warning(
            "%d conversations still in progress were not returned by their re-pulls, even "
            "%s either side of their started_at without the in_progress filter: the API's time "
            "filter may disagree with the started_at it reports. They stay pending (re-pulled "
            "in that widest window) until max_pending_hours: %s",
            len(lost),
            WIDEST,
            sample(lost),
        )


def warn_expired(expired: Sequence[str], settings: ConnectorSettings) -> None:
    if expired:
        logger.warning(
            "%d conversations were still in progress %s after they started (max_pending_hours); "
            "they are no longer re-pulled and keep their last loaded rows: %s",
            len(expired),
            settings.max_pending_age,
            sample(sorted(expired)),
        )


def warn_of_filter_disagreement(outside: timedelta, settings: ConnectorSettings) -> None:
    if outside <= FILTER_TOLERANCE:
        return
    logger.warning(
        "the PolyAI API sent conversations whose started_at lies up to %s outside the time range "
        "asked for: its time filter disagrees with the started_at it reports. Every conversation "
        "it sent was kept once. A filter that lags the reported started_at by more than "
        "lookback_minutes (%s) hides conversations from every run: raise lookback_minutes above "
        "that lag if the counts fall short.",
        outside,
        settings.lookback,
    )


def warn_of_clock_skew(skew: timedelta | None, settings: ConnectorSettings) -> None:
    if skew is None or abs(skew) <= settings.lookback:
        return
    if skew > timedelta(0):
        consequence = "the cursor follows the API's clock, so nothing is skipped"
    else:
        consequence = "conversations of that last stretch are read on the next run"
    logger.warning(
        "this machine's clock is %s %s the PolyAI API's (its Date header), more than "
        "lookback_minutes: %s; set the machine's clock right (NTP)",
        abs(skew),
        "ahead of" if skew > timedelta(0) else "behind",
        consequence,
    )


def sample(ids: Sequence[str]) -> str:
    return ", ".join(ids[:SAMPLE]) + (" ..." if len(ids) > SAMPLE else "")


def warn_earlier_start_date(start_date: datetime, read_from: str) -> None:
    logger.warning(
        "start_date (%s) is now earlier than where this project's reading began (%s): runs read "
        "on from the cursor and do not go back for the earlier range. To read that range alone, "
        "run `python pipelines/polyai_pipeline.py resync --from %s --to %s`; or `reset --yes`, "
        "then the pipeline, to read everything again from start_date, replacing the rows already "
        "loaded (README, 'Operating it'). This warning is not repeated.",
        start_date.isoformat(),
        read_from,
        start_date.isoformat(),
        read_from,
    )
