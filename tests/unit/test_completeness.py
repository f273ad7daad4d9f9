"""stores/runtime/completeness.py: when a partition's coverage may be advertised, and from
what time the store holds all of it.

The property test checks the rules against the ground truth of a simulated Kafka log
(retention deleted its start, heartbeat markers interleaved, points stamped up to the future
margin after their append time): the recorded start must never claim a point the store
does not hold, and must be as tight as the rules say. The RocksDB side
(stores/runtime/completeness_db.py) is checked on a real RocksDB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from stores.runtime.completeness import Completeness
from stores.runtime.completeness_db import DbStored, complete_puts
from stores.runtime.rocks import open_db, u64, write_sync
from tests.unit.test_rocks_store import Clock

NOW = 1_763_769_600
MARGIN = 600
LATE = 3600  # how far before its append time a point may be stamped
OLDEST = NOW - 3 * 86400


@dataclass
class Db:
    """What a store's database holds: next offsets and completeness times."""

    next: dict[int, int] = field(default_factory=dict)
    complete: dict[int, int] = field(default_factory=dict)

    def next_offset(self, partition: int) -> int:
        return self.next.get(partition, 0)

    def complete_from(self, partition: int) -> int | None:
        return self.complete.get(partition)


@dataclass(frozen=True)
class Message:
    offset: int
    append_ms: int
    points: tuple[int, ...] | None  # None: a heartbeat marker (never applied)


def apply(c: Completeness, db: Db, p: int, batch: list[Message]) -> None:
    """What a rocks store does with one consumed batch of partition ``p``."""
    offsets: dict[int, int] = {}
    for m in batch:
        if m.points is None:
            continue
        c.seen(p, m.append_ms)
        if m.offset < max(c.next_offset(p), offsets.get(p, 0)):
            continue
        offsets[p] = m.offset + 1
    db.complete.update(c.take_complete(offsets))  # in the same write as the offsets
    db.next.update(offsets)
    c.applied(offsets)


def consume(
    c: Completeness, db: Db, p: int, kept: list[Message], end: int, batch_size: int
) -> None:
    """The consumer loop over the ``kept`` messages from the stored offset on, then the
    partition-EOF event at ``end``."""
    rest = [m for m in kept if m.offset >= db.next_offset(p)]
    if rest:
        c.first_message(p, rest[0].offset, rest[0].append_ms)
    for i in range(0, len(rest), batch_size):
        apply(c, db, p, rest[i : i + batch_size])
    lo = c.caught_up(p, end)
    if lo is not None:
        db.complete[p] = lo


@st.composite
def logs(draw: st.DrawFn) -> tuple[list[Message], int]:
    """A partition's whole log and how many of its first messages retention deleted. A
    point is stamped at most ``MARGIN`` after its message's append time (intake accepts
    ``ts <= now + future window``, and appends after ``now``)."""
    n = draw(st.integers(0, 12))
    append = NOW - draw(st.integers(0, 86400))
    out: list[Message] = []
    for offset in range(n):
        append += draw(st.integers(0, 900))
        if draw(st.booleans()):
            out.append(Message(offset, append * 1000, None))
        else:
            stamps = draw(st.lists(st.integers(-LATE, MARGIN), min_size=1, max_size=3))
            out.append(Message(offset, append * 1000, tuple(append + s for s in stamps)))
    return out, draw(st.integers(0, n))


@settings(max_examples=300, deadline=None)
@given(logs(), st.integers(1, 5), st.integers(0, 3600))
def test_recorded_start_is_sound_and_as_tight_as_the_rules(
    log_deleted: tuple[list[Message], int], batch_size: int, wait: int
) -> None:
    log, deleted = log_deleted
    last_append = log[-1].append_ms // 1000 if log else NOW
    clock = Clock(last_append + wait)
    db = Db()
    c = Completeness(db, MARGIN, clock)
    c.assigned([0])
    assert c.coverage([0], int(clock()), OLDEST) == {}  # catching up
    kept = log[deleted:]
    consume(c, db, 0, kept, len(log), batch_size)
    complete = db.complete.get(0)
    # Sound: every point of a deleted message is before the recorded start (a message
    # appended in the same second as the first kept one may hold a point stamped at that
    # append time + margin: the start is one second later).
    lost = [ts for m in log[:deleted] for ts in m.points or ()]
    if lost:
        assert complete is not None and max(lost) < complete
    # As tight as the rules (docs/rocks.md, "Coverage").
    if not log:
        assert complete is None  # the end is offset 0: nothing to record
    elif deleted == 0:
        assert complete == 0
    elif kept:
        assert complete == kept[0].append_ms // 1000 + MARGIN + 1
    else:
        assert complete == int(clock()) + MARGIN + 1
    # Coverage: from max(oldest, start), once the start is not in the future.
    now = int(clock())
    lo = OLDEST if complete is None else max(OLDEST, complete)
    assert c.coverage([0], now, OLDEST) == ({0: [lo, now]} if lo <= now else {})
    assert c.coverage([0], lo + 5, OLDEST) == {0: [lo, lo + 5]}
    # A restart resumes from the stored offset and never changes the recorded start.
    again = Completeness(db, MARGIN, Clock(now + 7200))
    again.assigned([0])
    consume(again, db, 0, kept, len(log), batch_size)
    assert db.complete.get(0) == complete


def test_catching_up_ends_at_eof_or_with_a_record_appended_after_the_assignment() -> None:
    clock = Clock(NOW)
    c = Completeness(Db(), MARGIN, clock)
    c.assigned([0, 1, 2])
    assert c.catching_up() == [0, 1, 2]
    c.seen(0, NOW * 1000 - 1)  # appended before the assignment: still catching up
    c.seen(1, NOW * 1000)  # appended at the assignment time: everything before it is read
    c.caught_up(2, 0)
    assert c.catching_up() == [0]
    assert c.coverage([0, 1, 2], NOW, OLDEST) == {1: [OLDEST, NOW], 2: [OLDEST, NOW]}
    # Only owned partitions asked about are answered; a reassignment starts over.
    assert c.coverage([1], NOW, OLDEST) == {1: [OLDEST, NOW]}
    clock.now = NOW + 10
    c.assigned([1])
    assert c.coverage([1], NOW + 10, OLDEST) == {}


def test_a_revoked_partition_forgets_what_its_first_message_said() -> None:
    db = Db()
    c = Completeness(db, MARGIN, Clock(NOW))
    c.assigned([0, 1])
    c.first_message(0, 40, (NOW - 100) * 1000)
    c.first_message(1, 0, (NOW - 100) * 1000)
    c.revoked([0])
    assert c.take_complete([0, 1]) == {1: 0}
    assert c.take_complete([0, 1]) == {}  # handed out once
    assert c.catching_up() == [1]


def test_offsets_are_cached_until_reassigned_or_reset() -> None:
    db = Db(next={0: 5})
    c = Completeness(db, MARGIN, Clock(NOW))
    assert c.next_offset(0) == 5
    db.next[0] = 9  # written behind the cache's back
    assert c.next_offset(0) == 5
    c.assigned([0])
    assert c.next_offset(0) == 9
    c.applied({0: 12})
    assert c.next_offset(0) == 12
    db.next.clear()  # a new topic id discarded the stored offsets
    c.reset()
    assert c.next_offset(0) == 0
    # With no stored offset the partition is read from the start again: its first message
    # decides completeness, unless one is already recorded.
    c.first_message(0, 3, NOW * 1000)
    assert c.take_complete([0]) == {0: NOW + MARGIN + 1}
    db.complete[0] = 0
    c.first_message(0, 3, NOW * 1000)
    assert c.take_complete([0]) == {}


def test_eof_records_nothing_once_a_record_was_applied_or_a_start_is_recorded() -> None:
    db = Db(next={0: 4}, complete={1: 0})
    c = Completeness(db, MARGIN, Clock(NOW))
    assert c.caught_up(0, 4) is None
    assert c.caught_up(1, 4) is None
    assert c.caught_up(2, 4) == NOW + MARGIN + 1  # nothing read: complete only from now on


def test_db_stored_reads_back_what_the_store_wrote(tmp_path: Path) -> None:
    db = open_db(tmp_path / "db")
    try:
        stored = DbStored(db)
        assert stored.next_offset(3) == 0 and stored.complete_from(3) is None
        puts = complete_puts({3: NOW + MARGIN, 4: 0})
        puts[b"\x00O" + (3).to_bytes(4, "big")] = u64(17)
        write_sync(db, puts)
        assert stored.next_offset(3) == 17
        assert (stored.complete_from(3), stored.complete_from(4)) == (NOW + MARGIN, 0)
        stored.write_complete(5, -5)  # a signed time survives the round trip
        stored.write_complete(6, None)  # nothing to write
        assert (stored.complete_from(5), stored.complete_from(6)) == (-5, None)
    finally:
        db.close()
