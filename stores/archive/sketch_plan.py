"""Which sketch objects hold which messages, so that every message is merged exactly once.
Pure: works on object names (offset ranges, days) and footer summaries only.

Points may be read from every overlapping object because the conflict rule is idempotent.
Merging sketches is not: a message read from two objects would count twice. So for
sketches the offset ranges in the names decide, per (topic id, partition):

1. **Compacted objects of a day.** A compacted object of day D holds the day-D sketches of
   every message in its offset range (its inputs' ranges, :mod:`stores.archive.
   sketch_compaction`). A compaction's output and its inputs can be listed together (it
   writes its outputs before deleting its inputs), and a retention rewrite has the range
   of its input: the day's objects are reduced to a set with disjoint ranges covering as
   many offsets as possible (:func:`disjoint`); the others lie inside those and are
   *superseded*.
2. **Ingest objects.** One writer uploads a partition's offsets in order, so they are
   disjoint. Only two writers of one partition at once (a writer stalled past the
   consumer's poll interval, still uploading after its partition moved) overlap them; the
   same reduction picks a disjoint set, the rest are *duplicates*.
3. **Days held elsewhere.** A chosen ingest object's rows of day D are skipped when a chosen
   compacted object of D overlaps its offset range (a compaction's input listed beside its
   output, or one a crashed compaction left behind); its other days still count.

Whatever fits none of this (an object only partly inside the chosen ones) is a *conflict*:
reads skip the doubtful rows (an answer may miss them, it never counts them twice) and
compaction leaves the partition alone (docs/archive.md, "Sketches").
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stores.archive.naming import DAY, ObjectName
from stores.archive.parquet_io import Meta

Partition = tuple[str, int]  # (topic id, partition)


@dataclass(frozen=True, slots=True)
class Reduced:
    """A set of objects reduced to pairwise disjoint offset ranges."""

    chosen: list[ObjectName]  # disjoint, sorted by offset
    inside: list[ObjectName]  # each inside the span of the chosen ones it overlaps
    conflicts: list[ObjectName]  # partly outside the chosen ones: cannot be placed


def disjoint(names: Sequence[ObjectName]) -> Reduced:
    """The disjoint subset covering the most offsets (weighted interval scheduling, ties
    to the earlier names), and how each other name relates to it."""
    ordered = sorted(names, key=lambda n: (n.last, n.first, n.key()))
    if all(a.last < b.first for a, b in itertools.pairwise(ordered)):
        return Reduced(ordered, [], [])
    lasts = [n.last for n in ordered]
    best = [0] * (len(ordered) + 1)
    took = [False] * len(ordered)
    for j, n in enumerate(ordered):
        before = bisect.bisect_left(lasts, n.first, 0, j)  # names ending before n starts
        with_n = n.last - n.first + 1 + best[before]
        took[j] = with_n > best[j]
        best[j + 1] = with_n if took[j] else best[j]
    chosen: list[ObjectName] = []
    j = len(ordered)
    while j > 0:
        if took[j - 1]:
            n = ordered[j - 1]
            chosen.append(n)
            j = bisect.bisect_left(lasts, n.first, 0, j - 1)
        else:
            j -= 1
    chosen.reverse()
    picked = set(chosen)
    inside: list[ObjectName] = []
    conflicts: list[ObjectName] = []
    for n in ordered:
        if n in picked:
            continue
        over = [c for c in chosen if c.first <= n.last and n.first <= c.last]
        if over and min(c.first for c in over) <= n.first and max(c.last for c in over) >= n.last:
            inside.append(n)
        else:
            conflicts.append(n)
    return Reduced(chosen, inside, conflicts)


@dataclass(frozen=True, slots=True)
class Selection:
    """The sketch objects of one (topic id, partition) that together hold every archived
    message once (module docstring)."""

    days: dict[int, list[ObjectName]]  # day -> its chosen compacted objects (disjoint)
    ingest: list[ObjectName]  # chosen ingest objects (disjoint)
    superseded: list[ObjectName] = field(default_factory=list)  # compacted, held by days
    duplicates: list[ObjectName] = field(default_factory=list)  # ingest, held by ingest
    conflicts: list[ObjectName] = field(default_factory=list)

    def held_days(self, name: ObjectName) -> frozenset[int]:
        """Days whose chosen compacted objects hold ``name``'s messages (their offset
        ranges overlap)."""
        return frozenset(
            day
            for day, objs in self.days.items()
            if any(c.first <= name.last and name.first <= c.last for c in objs)
        )

    def highest(self) -> int | None:
        """The highest offset any chosen object names."""
        lasts = [n.last for n in self.ingest] + [c.last for cs in self.days.values() for c in cs]
        return max(lasts) if lasts else None


def select(names: Iterable[ObjectName]) -> Selection:
    """The :class:`Selection` of the sketch objects of one (topic id, partition)."""
    ingest: list[ObjectName] = []
    by_day: dict[int, list[ObjectName]] = defaultdict(list)
    for n in names:
        if n.day is None:
            ingest.append(n)
        else:
            by_day[n.day].append(n)
    days: dict[int, list[ObjectName]] = {}
    superseded: list[ObjectName] = []
    conflicts: list[ObjectName] = []
    for day, objs in sorted(by_day.items()):
        r = disjoint(objs)
        days[day] = r.chosen
        superseded += r.inside
        conflicts += r.conflicts
    r = disjoint(ingest)
    sel = Selection(days, r.chosen, superseded, r.inside, conflicts + r.conflicts)
    for n in sel.ingest:
        for day in sel.held_days(n):
            held = [c for c in days[day] if c.first <= n.last and n.first <= c.last]
            if min(c.first for c in held) > n.first or max(c.last for c in held) < n.last:
                sel.conflicts.append(n)  # partly inside a day's compacted range
                break
    return sel


def select_partitions(names: Iterable[ObjectName]) -> dict[Partition, Selection]:
    """:func:`select` for every (topic id, partition) among ``names``."""
    groups: dict[Partition, list[ObjectName]] = defaultdict(list)
    for n in names:
        groups[(n.topic_id, n.partition)].append(n)
    return {k: select(v) for k, v in sorted(groups.items())}


@dataclass(frozen=True, slots=True)
class SketchRead:
    """Read ``key``, whose rows each span ``step`` seconds, leaving out rows of
    ``skip_days`` (held by a compacted object)."""

    key: str
    step: int
    skip_days: frozenset[int] = frozenset()


def plan_reads(
    selections: Iterable[Selection],
    footers: Mapping[str, Meta],
    rollups: Mapping[str, str],
    start: int,
    end: int,
    step: int = 1,
) -> list[SketchRead]:
    """The objects to read for rows with ``start <= ts <= end``. ``footers`` holds the
    footer of every chosen ingest object; ``rollups`` maps a compacted object's stem to
    its rollup object of ``step`` seconds, read in its place (empty for raw reads)."""
    reads: list[SketchRead] = []
    for sel in selections:
        for day, objs in sel.days.items():
            if day > end or day + DAY <= start:
                continue
            for c in objs:
                rollup = rollups.get(c.stem)
                reads.append(SketchRead(rollup, step) if rollup else SketchRead(c.key(), 1))
        for n in sel.ingest:
            meta = footers[n.key()]
            if not meta.rows or meta.min_ts > end or meta.max_ts < start:
                continue
            skip = sel.held_days(n)
            first = max(start, meta.min_ts)
            last = min(end, meta.max_ts)
            wanted = range(first - first % DAY, last + 1, DAY)
            if all(d in skip for d in wanted):
                continue  # every row it could add is held by compacted objects
            reads.append(SketchRead(n.key(), 1, skip))
    return reads


__all__ = ["Reduced", "Selection", "SketchRead", "disjoint", "plan_reads", "select"]
