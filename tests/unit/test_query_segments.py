"""The pure tier planner: which tier serves which part of the range, at which resolution."""

from __future__ import annotations

import itertools

import pytest

from query.interval import choose_interval
from query.segments import Segment, TierSource, Uncovered, plan_segments, tiers_used
from strata.rollup import resolution_for

H = 3600
DAY = 86400
NOW = 1_700_000_000 - 1_700_000_000 % DAY + 12 * H + 17 * 60 + 23  # 12:17:23, unaligned


def ram(lo: int = NOW - 3 * H, hi: int = NOW) -> TierSource:
    return TierSource("ram", "ram-1", "http://ram", (lo, hi))


def rocks(lo: int = NOW - NOW % DAY - 14 * DAY, hi: int = NOW) -> TierSource:
    return TierSource("rocks", "rocks-1", "http://rocks", (lo, hi))


def archive(lo: int = 0, hi: int = NOW - 2 * H) -> TierSource:
    return TierSource("archive", "arch-1", "http://archive", (lo, hi))


def spans(segs: list[Segment]) -> list[tuple[str, str, int, int]]:
    return [(s.source.tier, s.resolution, s.start, s.end) for s in segs]


def check_partition(segs: list[Segment], start: int, end: int) -> None:
    """Segments are disjoint, contiguous, exactly [start, end], aligned, inside coverage."""
    ordered = sorted(segs, key=lambda s: s.start)
    assert ordered[0].start == start and ordered[-1].end == end
    for a, b in itertools.pairwise(ordered):
        assert a.end + 1 == b.start
    for s in segs:
        step = {"raw": 1, "1m": 60, "1h": H}[s.resolution]
        assert s.start % step == 0 and (s.end + 1) % step == 0
        assert s.source.coverage is not None and s.start >= s.source.coverage[0]
        if not s.source.live:
            assert s.end <= s.source.coverage[1]


def test_ram_only() -> None:
    segs = plan_segments(NOW - 600, NOW, "raw", [ram()], partition=3)
    assert spans(segs) == [("ram", "raw", NOW - 600, NOW)]
    assert tiers_used(segs) == ("ram",)


def test_live_edge_is_served_beyond_the_advertised_now() -> None:
    # Points stamped ahead of "now" (intake's future window) are still asked of RAM.
    segs = plan_segments(NOW - 60, NOW + 300, "raw", [ram()], partition=3)
    assert spans(segs) == [("ram", "raw", NOW - 60, NOW + 300)]


def test_ram_and_rocks_split_at_an_aligned_point() -> None:
    start, end = NOW - 6 * H - NOW % 60, NOW - NOW % 60 + 59  # minute-aligned
    segs = plan_segments(start, end, "1m", [ram(), rocks()], partition=3)
    split = -(-(NOW - 3 * H) // 60) * 60  # RAM's first whole minute
    assert spans(segs) == [("ram", "1m", split, end), ("rocks", "1m", start, split - 1)]
    assert split % 60 == 0
    assert tiers_used(segs) == ("rocks", "ram")
    check_partition(segs, start, end)


def test_archive_rocks_ram_at_one_hour() -> None:
    start = NOW - NOW % H - 30 * DAY
    end = NOW - NOW % H + H - 1
    segs = plan_segments(start, end, "1h", [archive(), rocks(), ram()], partition=3)
    check_partition(segs, start, end)
    assert [s.source.tier for s in segs] == ["ram", "rocks", "archive"]  # freshest first
    assert {s.resolution for s in segs} == {"1h"}
    assert tiers_used(segs) == ("archive", "rocks", "ram")
    # Each split is the first whole hour inside the fresher tier's coverage.
    assert segs[0].start == -(-(NOW - 3 * H) // H) * H
    rocks_lo = rocks().coverage[0]  # type: ignore[index]
    assert segs[1].start == rocks_lo and segs[2].end == rocks_lo - 1


def test_ram_missing_rocks_serves_everything() -> None:
    segs = plan_segments(NOW - 600, NOW, "raw", [rocks()], partition=3)
    assert spans(segs) == [("rocks", "raw", NOW - 600, NOW)]


def test_ram_without_coverage_just_restarted() -> None:
    replaying = TierSource("ram", "ram-1", "http://ram", None)
    segs = plan_segments(NOW - 600, NOW, "raw", [replaying, rocks()], partition=3)
    assert spans(segs) == [("rocks", "raw", NOW - 600, NOW)]


def test_ram_restarted_on_an_empty_broker_has_a_short_window() -> None:
    # Coverage only from its replay start five minutes ago: rocks serves what came before.
    segs = plan_segments(NOW - 600, NOW, "raw", [ram(lo=NOW - 300), rocks()], partition=3)
    assert spans(segs) == [("ram", "raw", NOW - 300, NOW), ("rocks", "raw", NOW - 600, NOW - 301)]


def test_failed_rocks_moves_its_segment_to_the_archive() -> None:
    start, end = NOW - NOW % H - 2 * DAY, NOW - NOW % H - 1
    sources = [ram(), rocks(), archive(hi=NOW)]
    segs = plan_segments(
        start, end, "1h", sources, partition=3, failed={"rocks": "rocks-1 unreachable"}
    )
    check_partition(segs, start, end)
    assert tiers_used(segs) == ("archive", "ram")


def test_failed_tier_leaving_a_gap_is_a_503_naming_partition_range_and_reason() -> None:
    start, end = NOW - DAY, NOW
    sources = [ram(), rocks(), archive(hi=NOW - 2 * DAY)]
    with pytest.raises(Uncovered) as info:
        plan_segments(start, end, "raw", sources, partition=3, failed={"rocks": "boom"})
    msg = str(info.value)
    assert f"rocks unavailable for partition 3 [{start}, {NOW - 3 * H - 1}]" in msg
    assert "retry later" in msg and "rocks: boom" in msg
    assert (info.value.partition, info.value.start, info.value.tiers) == (3, start, ("rocks",))


def test_nothing_covers_is_uncovered() -> None:
    with pytest.raises(Uncovered, match=r"partition 5 for \[10, 20\].*starting"):
        plan_segments(10, 20, "raw", [], partition=5)
    replaying = TierSource("ram", "ram-1", "http://ram", None)
    with pytest.raises(Uncovered):
        plan_segments(NOW - 60, NOW, "raw", [replaying], partition=5)


def test_before_history_is_empty_not_an_error() -> None:
    # Older than every coverage any tier advertises: no tier ever held points there.
    assert plan_segments(NOW - 9 * H, NOW - 8 * H, "raw", [ram()], partition=1) == []
    segs = plan_segments(NOW - 5 * H, NOW, "raw", [ram()], partition=1)
    assert spans(segs) == [("ram", "raw", NOW - 3 * H, NOW)]


def test_remembered_tier_history_makes_its_range_a_gap_not_before_history() -> None:
    start, end = NOW - NOW % DAY - 30 * DAY, NOW - NOW % DAY - 29 * DAY - 1
    gone = TierSource("archive", "", "", None, remembered=0)
    with pytest.raises(Uncovered) as info:
        plan_segments(start, end, "1h", [ram(), rocks(), gone], partition=3)
    assert str(info.value).startswith(f"archive unavailable for partition 3 [{start}, {end}]")
    assert info.value.tiers == ("archive",)
    # Older than the remembered start: before history, empty.
    assert plan_segments(start, end, "1h", [ram(), rocks(), archive(lo=end + 1)], partition=3) == []
    later = TierSource("archive", "", "", None, remembered=end + 1)
    assert plan_segments(start, end, "1h", [ram(), rocks(), later], partition=3) == []


def test_unaligned_edges_use_finer_resolutions() -> None:
    start = NOW - NOW % H - 2 * H - 125  # 2 min 5 s before an hour
    end = NOW - NOW % H + 7 * 60 + 9  # 7 min 10 s after an hour
    segs = plan_segments(start, end, "1h", [rocks()], partition=1)
    check_partition(segs, start, end)
    by_res = sorted(spans(segs), key=lambda s: s[2])
    hour = NOW - NOW % H
    assert by_res == [
        ("rocks", "raw", start, start + 4),
        ("rocks", "1m", start + 5, hour - 2 * H - 1),
        ("rocks", "1h", hour - 2 * H, hour - 1),
        ("rocks", "1m", hour, hour + 7 * 60 - 1),
        ("rocks", "raw", hour + 7 * 60, end),
    ]


def test_partial_bucket_at_a_tier_start_refines_when_nothing_older_holds_it() -> None:
    # RAM only (no rocks): its window starts at 09:17:23; the 09:00 hour is held by nobody
    # whole, so its minutes and seconds inside RAM's coverage are read finer.
    lo = NOW - 3 * H
    start, end = NOW - NOW % H - 5 * H, NOW - NOW % H + H - 1
    segs = plan_segments(start, end, "1h", [ram()], partition=1)
    check_partition(segs, lo, end)
    first_minute = -(-lo // 60) * 60
    first_hour = -(-lo // H) * H
    assert sorted(spans(segs), key=lambda s: s[2])[:3] == [
        ("ram", "raw", lo, first_minute - 1),
        ("ram", "1m", first_minute, first_hour - 1),
        ("ram", "1h", first_hour, end),
    ]


def test_fifteen_day_query_never_asks_raw() -> None:
    end = NOW - NOW % 60 - 1
    start = end + 1 - 15 * DAY
    interval = choose_interval(start, end, 300)
    resolution = resolution_for(interval)
    assert resolution == "1h"
    segs = plan_segments(start, end, resolution, [archive(), rocks(), ram()], partition=1)
    assert {s.resolution for s in segs} <= {"1h", "1m"}
    # Cost follows output points: a handful of segments, 1m only at the unaligned edges.
    minute_rows = sum((s.end + 1 - s.start) // 60 for s in segs if s.resolution == "1m")
    assert minute_rows < 2 * 60
    check_partition(segs, start, end)


def test_interval_picks_the_resolution() -> None:
    assert resolution_for(choose_interval(NOW - 600, NOW)) == "raw"
    assert resolution_for(choose_interval(NOW - 3 * H, NOW)) == "1m"
    assert resolution_for(choose_interval(NOW - DAY, NOW)) == "1m"
    assert resolution_for(choose_interval(NOW - 7 * DAY, NOW)) == "1h"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="after"):
        plan_segments(2, 1, "raw", [ram()], partition=1)
    with pytest.raises(ValueError, match="resolution"):
        plan_segments(1, 2, "5m", [ram()], partition=1)
