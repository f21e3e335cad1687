"""What the simulated project looks like: size, time span, identity, and the API's switches."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .clock import require_utc
from .odd_text import ODD_TEXT_MODES
from .paging_faults import PAGING_FAULTS


def _default_start() -> datetime:
    return datetime.now(UTC) - timedelta(days=3)


def _default_end() -> datetime:
    return datetime.now(UTC)


@dataclass
class SimConfig:
    """Conversations' `started_at` are spread over [start, end); the data depends only on the
    seed and the generation fields, so two simulators with equal configs serve equal data.

    `api_key`, `transcripts_enabled`, `v2_cursor`, `max_limit` and `paging_fault` are read on
    every request: tests may change them on a running simulator (a rotated key, a toggled
    project setting, a server fixed between runs).
    """

    seed: int = 1
    n_conversations: int = 500
    start: datetime = field(default_factory=_default_start)
    end: datetime = field(default_factory=_default_end)
    account_id: str = "acc-demo"
    project_id: str = "proj-demo"
    api_key: str = "sim-secret-key"
    transcripts_enabled: bool = True
    late_arrival_fraction: float = 0.05
    long_running_fraction: float = 0.02
    latency_object_fraction: float = 0.0
    v2_cursor: bool = True
    max_limit: int = 1000
    # The API does not document whether `end_time` is inclusive. A positive slack makes the
    # simulator a sloppy server: it also returns conversations that started up to this many
    # seconds before `start_time` or after `end_time`, the end included, so that adjacent
    # windows overlap and tests prove a run still loads each conversation once.
    bound_slack_seconds: float = 0.0
    # Hostile modes, off by default. `filter_offset_seconds`: the server's time filter compares
    # `start_time`/`end_time` with started_at plus this offset while it reports started_at as
    # is (a timezone slip on the server side), so a window returns conversations that another
    # window owns. `echo_fraction`: that share of conversations is also served, with its
    # started_at moved by `echo_shift_seconds`, to the windows that hold the moved time: one id
    # under two started_at values.
    filter_offset_seconds: float = 0.0
    echo_fraction: float = 0.0
    echo_shift_seconds: float = 3600.0
    # A hostile way of paging, one of paging_faults.PAGING_FAULTS; None pages as the API
    # documents. Read on every request: a test may fix the server between runs.
    paging_fault: str | None = None
    # Hostile text (odd_text.py): "nul" or "lone_surrogate" in every `odd_text_every`-th
    # conversation's text fields and JSON values; "" (the default) sends none.
    odd_text: str = ""
    odd_text_every: int = 5
    # A server that quotes the client's key back: in 401/403/5xx error messages and in the
    # correlation id header of every answer. Read on every request.
    echo_api_key: bool = False

    def __post_init__(self) -> None:
        self.start = require_utc(self.start, "start")
        self.end = require_utc(self.end, "end")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.n_conversations < 0:
            raise ValueError("n_conversations must be >= 0")
        for name in (
            "late_arrival_fraction",
            "long_running_fraction",
            "latency_object_fraction",
            "echo_fraction",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.bound_slack_seconds < 0:
            raise ValueError("bound_slack_seconds must be >= 0")
        if self.paging_fault is not None and self.paging_fault not in PAGING_FAULTS:
            raise ValueError(f"paging_fault must be one of {PAGING_FAULTS}")
        if self.odd_text not in ODD_TEXT_MODES:
            raise ValueError(f"odd_text must be one of {ODD_TEXT_MODES}")
        if self.odd_text_every < 1:
            raise ValueError("odd_text_every must be >= 1")
        if self.max_limit < 1:
            raise ValueError("max_limit must be >= 1")
