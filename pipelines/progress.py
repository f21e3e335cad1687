"""The command's progress on stderr while it loads: a live line on a terminal, else a plain line
every `--progress-every` seconds. The figures are the source's own (sources.polyai.live).

Only the command shows progress: the library counts (LiveCounters) and never prints.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Never, TextIO

from dlt.common.runtime.collector import NULL_COLLECTOR, LogCollector
from dlt.common.runtime.collector_base import Collector
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from sources.polyai.live import LiveCounters, LiveFigures

DEFAULT_EVERY = 10.0
# A terminal's line appears once a run has lasted this long: a quick run shows only its summary.
TERMINAL_DELAY = 1.0
TERMINAL_REFRESH = 0.5
# dlt's own progress (its LogCollector) under --verbose, through this logger to the console.
DLT_PROGRESS_LOGGER = "dlt_progress"


def add_progress_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress on stderr while loading (the summary still prints on stdout)",
    )
    parser.add_argument(
        "--progress-every",
        type=positive_seconds,
        default=DEFAULT_EVERY,
        metavar="SECONDS",
        help=(
            "when stderr is not a terminal (a log, a scheduler), print a progress line every SECONDS "
            f"(default {DEFAULT_EVERY:g}); on a terminal the line is live"
        ),
    )


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return seconds


def dlt_progress(verbose: bool) -> Collector:
    """dlt's progress of its extract, normalize and load steps, logged under --verbose."""
    if not verbose:
        return NULL_COLLECTOR
    logger = logging.getLogger(DLT_PROGRESS_LOGGER)
    with_stats = importlib.util.find_spec("psutil") is not None
    return LogCollector(logger=logger, log_level=logging.INFO, dump_system_stats=with_stats)


@contextlib.contextmanager
def shown_progress(args: argparse.Namespace, stream: TextIO | None = None) -> Iterator[LiveCounters | None]:
    """The counters to hand to run_load, shown on `stream` (stderr) until the block ends."""
    if getattr(args, "quiet", False):
        yield None
        return
    stream = stream or sys.stderr
    live = LiveCounters()
    redirect: contextlib.AbstractContextManager[None]
    if stream.isatty():
        reporter: Reporter = TerminalReporter(live, stream)
        # Log lines (warnings, --verbose) go above the live line instead of through it.
        redirect = logging_redirect_tqdm([logging.getLogger(), logging.getLogger("dlt")])
    else:
        reporter = PlainReporter(live, stream, getattr(args, "progress_every", DEFAULT_EVERY))
        redirect = contextlib.nullcontext(None)
    with redirect:
        reporter.start()
        try:
            yield live
        except BaseException:
            reporter.stop("stopped after")
            raise
        reporter.stop("done in")


def counts(figures: LiveFigures, elapsed: float, short: bool = False) -> str:
    """Where `started_at` is read to, the counts and the rate (`short`: for a terminal's line)."""
    rate = figures.conversations / elapsed if elapsed > 0 else 0.0
    conversations, requests = ("conv", "req") if short else ("conversations", "requests")
    parts = [] if figures.reached is None else [f"started_at read to {figures.reached:%Y-%m-%d %H:%M} UTC"]
    parts += [
        f"{figures.conversations} {conversations}",
        f"{figures.turns} turns",
        f"{rate:.0f} {conversations}/s",
        f"{figures.requests} {requests}",
        f"{figures.retries} retries",
    ]
    return ", ".join(parts)


def remaining(covered: float, elapsed: float, ended: str | None = None) -> str:
    """Time left if the rest of the span goes as fast as what was read; `?` before anything is.

    `ended`: the run is over ("done in", "stopped after"), and the time it took follows.
    """
    if ended is not None:
        return f"{ended} {tqdm.format_interval(elapsed)}"
    if covered >= 1:
        return "all read, loading"
    if covered <= 0:
        return "ETA ?"
    return f"ETA {tqdm.format_interval(elapsed * (1 - covered) / covered)}"


class Reporter:
    """A thread that samples the counters every `period` seconds and shows them."""

    period: float

    def __init__(self, live: LiveCounters, stream: TextIO) -> None:
        self.live = live
        self.stream = stream
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def stop(self, ended: str) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(OSError, ValueError):  # stderr closed: the run's result matters more
            self.finish(self.live.sample(), self.elapsed, ended)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _run(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # stderr closed: nothing more to show
            while not self._stop.wait(self.wait_before_next()):
                self.show(self.live.sample(), self.elapsed)

    def wait_before_next(self) -> float:
        return self.period

    def show(self, figures: LiveFigures, elapsed: float, ended: str | None = None) -> None:
        raise NotImplementedError

    def finish(self, figures: LiveFigures, elapsed: float, ended: str) -> None:
        """The run is over: the last figures, if anything was shown."""
        raise NotImplementedError


class PlainReporter(Reporter):
    """A line every `period` seconds, for logs; a run shorter than that prints none."""

    def __init__(self, live: LiveCounters, stream: TextIO, period: float) -> None:
        super().__init__(live, stream)
        self.period = period
        self.lines = 0

    def show(self, figures: LiveFigures, elapsed: float, ended: str | None = None) -> None:
        line = f"{figures.covered:.0%} of the run's span, {counts(figures, elapsed)}"
        print(f"progress: {line}, {remaining(figures.covered, elapsed, ended)}", file=self.stream)
        self.stream.flush()
        self.lines += 1

    def finish(self, figures: LiveFigures, elapsed: float, ended: str) -> None:
        if self.lines:
            self.show(figures, elapsed, ended)


class TerminalReporter(Reporter):
    """One line redrawn in place (tqdm), from TERMINAL_DELAY seconds into the run."""

    period = TERMINAL_REFRESH

    def __init__(self, live: LiveCounters, stream: TextIO) -> None:
        super().__init__(live, stream)
        self.bar: tqdm[Never] | None = None

    def wait_before_next(self) -> float:
        return self.period if self.bar is not None else TERMINAL_DELAY

    def show(self, figures: LiveFigures, elapsed: float, ended: str | None = None) -> None:
        timing = remaining(figures.covered, elapsed, ended)
        # The time first: a narrow terminal cuts the line's end.
        text = f"{timing}, {counts(figures, elapsed, short=True)}"
        if self.bar is None:
            self.bar = tqdm(
                total=100,
                initial=round(figures.covered * 100, 1),
                desc=text,
                file=self.stream,
                # The text is the description: tqdm puts ", " before a postfix.
                bar_format="{percentage:3.0f}%|{bar:10}| {desc}",
                dynamic_ncols=True,
                # Redrawn by this thread alone, when it samples.
                mininterval=0,
                leave=True,
            )
        self.bar.n = round(figures.covered * 100, 1)
        self.bar.set_description_str(text, refresh=ended is None)

    def finish(self, figures: LiveFigures, elapsed: float, ended: str) -> None:
        if self.bar is not None:
            self.show(figures, elapsed, ended)
            # Drawn once more and left on its line, above what the command prints next.
            self.bar.close()
