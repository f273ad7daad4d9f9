"""Property: stitching tiers at any resolution gives the single-tier raw answer.

Random points are held by fake tiers with random coverage boundaries (each tier holds the
points inside its coverage, like the real ones); random tiers are missing, replaying or
failing. Whenever the usable tiers jointly cover the range after the history start, the
stitched answer (rollup path for 1m/1h intervals) equals the raw numpy aggregation of all
points; otherwise the query is :class:`query.segments.Uncovered`.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from query.aggregate import Membership, aggregate, space_aggregate
from query.language import SpaceAggregator
from query.segments import LIVE_TIERS, Uncovered
from query.stitch import read_stitched
from query.stores_client import StoreUnavailable
from strata.conflict import resolve
from strata.rollup import resolution_for
from tests.unit.query_fakes import FakeStore, FakeTier

H = 3600
T0 = 1_700_000_000 - 1_700_000_000 % 86400  # history starts here: no point is older
SPAN = 3 * 86400

offsets = st.integers(0, SPAN)
points_st = st.lists(
    st.tuples(
        st.integers(0, 3),
        # Cluster around hour and minute boundaries, where splits happen.
        st.one_of(offsets, offsets.map(lambda t: t - t % H), offsets.map(lambda t: t - t % 60)),
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    ),
    max_size=150,
)


@st.composite
def tiers_st(draw: st.DrawFn) -> dict[str, FakeTier]:
    arch_hi = T0 + draw(offsets)
    # Rocks starts at most right after the archive ends, and no later than the span's end
    # (an archive covering the whole span left it empty: hi < lo).
    rocks_lo = draw(st.integers(T0, min(arch_hi + 1, T0 + SPAN)))
    ram_lo = draw(st.integers(rocks_lo, T0 + SPAN))
    tiers = {
        "archive": FakeTier((T0, arch_hi)),
        "rocks": FakeTier((rocks_lo, T0 + SPAN)),
        "ram": FakeTier((ram_lo, T0 + SPAN)),
    }
    for name in list(tiers):
        fate = draw(st.sampled_from(["ok", "ok", "missing", "no coverage", "down"]))
        if fate == "missing":
            del tiers[name]
        elif fate == "no coverage":
            tiers[name] = FakeTier(None)
        elif fate == "down":
            tiers[name].error = StoreUnavailable(f"{name} down")
    return tiers


def coverable(tiers: dict[str, FakeTier], start: int, end: int) -> bool:
    """Do the usable tiers cover every second of [start, end] after the history start?"""
    advertised = [t.coverage for t in tiers.values() if t.coverage is not None]
    if not advertised:
        return False
    lo = max(start, min(c[0] for c in advertised))
    spans: list[tuple[int, float]] = sorted(
        (t.coverage[0], math.inf if name in LIVE_TIERS else t.coverage[1])
        for name, t in tiers.items()
        if t.coverage is not None and t.error is None
    )
    reached: float = lo
    for a, b in spans:
        if a > reached:
            break
        reached = max(reached, b + 1)
    return reached > end


@settings(max_examples=400, deadline=None)
@given(
    points=points_st,
    tiers=tiers_st(),
    bounds=st.tuples(offsets, offsets),
    interval=st.sampled_from([1, 10, 60, 120, 300, 900, 3600, 7200, 86400]),
    aggregator=st.sampled_from(list(SpaceAggregator)),
)
def test_stitched_equals_single_tier_raw(
    points: list[tuple[int, int, float]],
    tiers: dict[str, FakeTier],
    bounds: tuple[int, int],
    interval: int,
    aggregator: SpaceAggregator,
) -> None:
    start, end = T0 + min(bounds), T0 + max(bounds)
    sids = np.array([10, 20, 30, 40], dtype=np.uint64)
    store = FakeStore(tiers=tiers)
    store.points = [(int(sids[s]), T0 + t, v) for s, t, v in points]
    # Series 0-3; groups: parity, and group 2 holding every series.
    membership = Membership(
        np.array([0, 1, 2, 3, 0, 1, 2, 3], np.int64), np.array([0, 1, 0, 1, 2, 2, 2, 2], np.int64)
    )

    try:
        stitched = read_stitched(store, "o", "m", sids, start, end, interval)
    except Uncovered:
        event("uncovered")
        assert not coverable(tiers, start, end)
        return
    # Visible with --hypothesis-show-statistics: the interesting mixes do happen.
    event(f"resolution {resolution_for(interval)}")
    event(f"tiers {','.join(stitched.tiers)}")
    event(f"segment resolutions {sorted({s.resolution for s in stitched.segments})}")
    assert coverable(tiers, start, end)
    got = space_aggregate(stitched.rolled, membership, aggregator)

    sid, ts, value = resolve(
        np.array([p[0] for p in store.points], np.uint64),
        np.array([p[1] for p in store.points], np.int64),
        np.array([p[2] for p in store.points], np.float64),
    )
    # Points older than every advertised coverage are before the partition's history (with
    # the archive missing, no tier holds them): the planner answers them as empty.
    history = min(t.coverage[0] for t in tiers.values() if t.coverage is not None)
    keep = (ts >= max(start, history)) & (ts <= end)
    pos = np.searchsorted(sids, sid[keep]).astype(np.int64)
    want = aggregate(pos, ts[keep], value[keep], membership, interval, aggregator)

    assert got.group.tolist() == want.group.tolist()
    assert got.bucket.tolist() == want.bucket.tolist()
    np.testing.assert_allclose(got.value, want.value, rtol=1e-9, atol=1e-6)
    # Every tier named in the answer is one that could serve.
    assert all(tiers[t].error is None for t in stitched.tiers)
