"""Which objects answer a read. Pure: works on names and footer summaries only.

Raw reads take every points object whose time range overlaps the query; overlapping
objects (an input and its compacted output, both listed mid-compaction) are harmless
because rows are resolved by the conflict rule, which is idempotent.

1 h reads use a day's rollup object only when that is exact: every points object that
overlaps the day is a compacted object of that day with a rollup object of the same stem.
Any other overlap (late raw points not compacted yet, two compactions of the day listed
at once) makes that day fall back to rolling up resolved raw points, so rollups can never
count a point twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stores.archive.naming import DAY, ObjectName
from stores.archive.parquet_io import Meta

Listed = tuple[ObjectName, Meta]


def overlapping(objects: Sequence[Listed], start: int, end: int) -> list[Listed]:
    """Objects holding rows with ``start <= ts <= end``."""
    return [(n, m) for n, m in objects if m.rows and m.min_ts <= end and m.max_ts >= start]


def may_overlap(name: ObjectName, start: int, end: int) -> bool:
    """Name-only pruning before any footer is read: compacted objects hold one day."""
    if name.day is None:
        return True
    return name.day <= end and name.day + DAY > start


@dataclass(frozen=True, slots=True)
class HourPlan:
    rollup_objects: list[str]  # rollup keys to read (whole days)
    raw_objects: list[str]  # points keys to read for the remaining ranges
    raw_ranges: list[tuple[int, int]]  # inclusive ts ranges to roll up from raw points


def plan_hours(
    points: Sequence[Listed], rollup_stems: dict[str, str], start: int, end: int
) -> HourPlan:
    """Plan a 1 h read of ts in ``[start, end]`` (hour-aligned ends, inclusive).

    ``rollup_stems`` maps the stem of each rollup object to its key. Cost grows with the
    number of listed objects, never with the width of the range: only days named by a
    compacted object can be exact; everything else in the range is read from raw rows.
    """
    listed = overlapping(points, start, end)
    candidates = sorted({n.day for n, _ in listed if n.day is not None})
    rollups: list[str] = []
    exact_days: list[tuple[int, int]] = []
    for day in candidates:
        lo, hi = max(start, day), min(end, day + DAY - 1)
        objs = overlapping(listed, lo, hi)
        stems = [n.stem for n, _ in objs if n.day == day]
        if (
            len(stems) == len(objs)
            and all(s in rollup_stems for s in stems)
            and len({(n.topic_id, n.partition) for n, _ in objs}) == len(objs)
        ):
            rollups.extend(rollup_stems[s] for s in stems)
            exact_days.append((lo, hi))
    # The rest of the range, between exact days, is rolled up from raw rows where any
    # object overlaps it.
    raw: set[str] = set()
    ranges: list[tuple[int, int]] = []
    cursor = start
    for lo, hi in [*exact_days, (end + 1, end + 1)]:
        if cursor <= lo - 1:
            objs = overlapping(listed, cursor, lo - 1)
            if objs:
                raw.update(n.key() for n, _ in objs)
                ranges.append((cursor, lo - 1))
        cursor = hi + 1
    return HourPlan(sorted(rollups), sorted(raw), ranges)
