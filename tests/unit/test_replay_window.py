"""stores/runtime/replay.py: the RAM stores' window, replay starts and replaying partitions.

The stateful test replays random event sequences (assign, revoke, records read, partition
EOF, the clock moving) and compares every coverage answer with a model that keeps only the
event history and derives each answer from it afresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from stores.runtime.replay import ReplayWindow
from tests.unit.test_rocks_store import Clock

NOW = 1_763_769_600
WINDOW = 3 * 3600
MARGIN = 600


def test_start_position_and_oldest_follow_the_clock() -> None:
    clock = Clock(NOW + 0.9)
    w = ReplayWindow(WINDOW, MARGIN, clock)
    assert w.start_position(NOW * 1000).timestamp_ms == (NOW - WINDOW - MARGIN) * 1000
    assert w.oldest() == NOW - WINDOW
    clock.now = NOW + 60
    assert w.oldest() == NOW + 60 - WINDOW


def test_a_partition_is_covered_once_its_replay_caught_up() -> None:
    clock = Clock(NOW)
    w = ReplayWindow(WINDOW, MARGIN, clock)
    seek = (NOW - 1000) * 1000
    w.assigned([0, 1, 2], {0: seek, 1: seek})  # no seek time for 2: counted from 0
    assert w.replaying() == [0, 1, 2] and w.coverage([0, 1, 2], NOW) == {}
    w.seen(0, NOW * 1000 - 1)  # replayed history: still replaying
    w.seen(1, NOW * 1000)  # appended after the assignment: the replay is done
    w.caught_up(2)
    assert w.replaying() == [0]
    # The replay start (seek + margin) bounds the window until the window passes it.
    assert w.coverage([0, 1, 2], NOW) == {1: [NOW - 1000 + MARGIN, NOW], 2: [NOW - WINDOW, NOW]}
    later = NOW + WINDOW
    assert w.coverage([1], later) == {1: [NOW, later]}
    w.caught_up(0)
    w.revoked([1])  # the store stops asking about it; if it did: no replay start, [now, now]
    assert w.coverage([0, 1], NOW) == {0: [NOW - 1000 + MARGIN, NOW], 1: [NOW, NOW]}
    w.assigned([0], {0: seek})  # reassigned: replays again
    assert w.coverage([0], NOW) == {}


@dataclass
class History:
    """Model: the event history only; answers are derived from it each time."""

    # (kind, partition, time in ms: assignment / record append, seek time in ms or None)
    events: list[tuple[str, int, int, int | None]] = field(default_factory=list)

    def coverage(self, partitions: list[int], now: int) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for p in partitions:
            mine = [(k, t, seek) for k, q, t, seek in self.events if q == p]
            assigns = [i for i, (k, _, _) in enumerate(mine) if k == "assign"]
            later = mine[assigns[-1] + 1 :] if assigns else []
            start = now  # never assigned, or revoked since: no replay start known
            if assigns and not any(k == "revoke" for k, _, _ in later):
                _, assigned_ms, seek_ms = mine[assigns[-1]]
                if not any(k == "eof" or (k == "seen" and t >= assigned_ms) for k, t, _ in later):
                    continue  # still replaying
                # Points stamped up to the margin after the seek time may precede it.
                start = (seek_ms // 1000 if seek_ms is not None else 0) + MARGIN
            out[p] = [max(now - WINDOW, start), now]
        return out


class Machine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock(NOW)
        self.window = ReplayWindow(WINDOW, MARGIN, self.clock)
        self.model = History()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    @rule(ps=st.sets(st.integers(0, 3), min_size=1), back=st.integers(0, 2 * WINDOW))
    def assign(self, ps: set[int], back: int) -> None:
        seek = {p: (int(self.clock()) - back) * 1000 for p in ps if p % 2 == 0}
        self.window.assigned(sorted(ps), seek)
        for p in ps:
            self.model.events.append(("assign", p, self.now_ms(), seek.get(p)))

    @rule(ps=st.sets(st.integers(0, 3), min_size=1))
    def revoke(self, ps: set[int]) -> None:
        self.window.revoked(sorted(ps))
        self.model.events += [("revoke", p, 0, None) for p in ps]

    @rule(p=st.integers(0, 3), age_ms=st.integers(-2000, 2000))
    def read_record(self, p: int, age_ms: int) -> None:
        self.window.seen(p, self.now_ms() - age_ms)
        self.model.events.append(("seen", p, self.now_ms() - age_ms, None))

    @rule(p=st.integers(0, 3))
    def eof(self, p: int) -> None:
        self.window.caught_up(p)
        self.model.events.append(("eof", p, 0, None))

    @rule(seconds=st.floats(0, 1000))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def coverage_matches_the_history(self) -> None:
        now = int(self.clock())
        expected = self.model.coverage([0, 1, 2, 3], now)
        assert self.window.coverage([0, 1, 2, 3], now) == expected
        assert self.window.oldest() == now - WINDOW


Machine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
test_replay_window_matches_its_history = Machine.TestCase
