"""The run's live figures (sources.polyai.live): how far the span is read, over parts and projects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sources.polyai.http.concurrent_windows import WindowQueue
from sources.polyai.live import LiveCounters
from sources.polyai.planning import Window, split_window

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class Client:
    requests_made: int = 0
    retries: int = 0


@dataclass
class Part:
    windows: list[Window]
    queue: WindowQueue = field(init=False)

    def __post_init__(self) -> None:
        self.queue = WindowQueue(list(self.windows), always=1)

    def finish(self, *positions: int) -> None:
        for position in positions:
            self.queue.done(self.windows[position])


def hours(start: int, end: int) -> list[Window]:
    return split_window(T0 + timedelta(hours=start), T0 + timedelta(hours=end), timedelta(hours=1))


def test_the_span_read_is_the_run_of_finished_windows_from_the_first() -> None:
    live, part = LiveCounters(), Part(hours(0, 10))
    live.start_part("a", Client(), part.windows, part.queue)
    assert (live.sample().covered, live.sample().reached) == (0.0, T0)
    part.finish(1, 2)  # the first is still being read: nothing before 02:00 is complete
    assert live.sample().covered == 0.0
    part.finish(0)
    assert (live.sample().covered, live.sample().reached) == (0.3, T0 + timedelta(hours=3))


def test_later_parts_and_projects_add_up_and_the_share_never_goes_back() -> None:
    live = LiveCounters()
    first_a, first_b = Part(hours(0, 10)), Part(hours(5, 10))
    clients = [Client(requests_made=4, retries=1), Client(requests_made=2)]
    live.start_part("a", clients[0], first_a.windows, first_a.queue)
    live.start_part("b", clients[1], first_b.windows, first_b.queue)
    live.took(100, 900)
    first_a.finish(0, 1, 2, 3)  # a stops at its load's limit, after 04:00
    first_b.finish(*range(5))
    figures = live.sample()
    assert (figures.conversations, figures.turns, figures.requests, figures.retries) == (100, 900, 6, 1)
    assert figures.covered == (4 + 5) / (10 + 5)
    assert figures.reached == T0 + timedelta(hours=4)  # the project furthest behind
    # The next part of `a` starts a little before where the first stopped, up to a later now.
    second_a = Part(hours(3, 12))
    later_client = Client(requests_made=3)
    live.start_part("a", later_client, second_a.windows, second_a.queue)
    live.took(50, 400)
    assert live.sample().covered == figures.covered
    second_a.finish(*range(len(second_a.windows)))
    later_client.requests_made = 5
    done = live.sample()
    assert (done.conversations, done.turns, done.requests) == (150, 1300, 11)
    assert done.covered == 1.0 and done.reached == T0 + timedelta(hours=10)


def test_a_part_with_nothing_to_read_leaves_the_figures_as_they_were() -> None:
    live, part = LiveCounters(), Part(hours(0, 2))
    live.start_part("a", Client(), part.windows, part.queue)
    part.finish(0)
    live.start_part("a", Client(requests_made=1), [], part.queue)
    figures = live.sample()
    assert (figures.covered, figures.requests) == (0.5, 1)
