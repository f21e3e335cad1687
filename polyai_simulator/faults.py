"""Faults the simulator injects on purpose: rate limits, server errors, resets, broken bodies,
stalls, and a proxy's HTML page."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

# New kinds go last: a seed draws the same faults as before for the kinds it already had.
FAULT_KINDS = ("rate_limit", "server_error", "reset", "truncate", "invalid_json", "slow", "html_page")


@dataclass
class Faults:
    """Probabilities per request (0..1) of each fault, plus a token-bucket rate limit.

    A request draws at most one fault. `slow` stalls `slow_seconds` before answering (longer
    than the client's read timeout, it is a timeout). `html_page` answers 200 with an HTML
    sign-in page, as a corporate proxy or a captive portal does. The bucket allows `rate_per_second`
    requests on average with bursts of `burst`; past it the answer is 429 with Retry-After.
    """

    latency_seconds: float = 0.0
    rate_limit: float = 0.0
    server_error: float = 0.0
    reset: float = 0.0
    truncate: float = 0.0
    invalid_json: float = 0.0
    slow: float = 0.0
    html_page: float = 0.0
    slow_seconds: float = 2.0
    retry_after: str = "1"
    rate_per_second: float | None = None
    burst: int = 5
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tokens: float = 0.0
    _refilled: float = 0.0

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)
        self._tokens = float(self.burst)
        self._refilled = time.monotonic()

    def set_rates(self, **rates: float) -> None:
        for name, value in rates.items():
            if name not in FAULT_KINDS:
                raise ValueError(f"unknown fault {name!r}; one of {FAULT_KINDS}")
            setattr(self, name, value)

    def draw(self) -> str | None:
        """The fault for one request, or None."""
        with self._lock:
            if self.rate_per_second is not None and not self._take_token():
                return "rate_limit"
            roll = self._rng.random()
        for kind in FAULT_KINDS:
            probability = getattr(self, kind)
            if roll < probability:
                return kind
            roll -= probability
        return None

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(
            float(self.burst), self._tokens + (now - self._refilled) * (self.rate_per_second or 0)
        )
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
