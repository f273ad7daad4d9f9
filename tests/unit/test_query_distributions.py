"""Distribution queries (percentiles and exact summaries) against a model of the values.

The fake client holds every submitted value per (series, ts) in two sketch tiers (RAM for
the recent part, rocks before it) and answers the sketch read contract from them. The model
recomputes every answer from the raw values with plain Python: the exact percentile
(``sorted(vs)[floor(q * (n - 1))]``, the lower value, as DDSketch defines it) must be
matched within the relative accuracy (1 %); count, sum, min, max and avg exactly (sum to
float rounding). The stitched sketch must also equal, bin for bin, the sketch of all the
group's values in the bucket: merging across tiers, time and series is exact.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.v1.model.metrics_query_response import MetricsQueryResponse

from query import ast
from query.aggregate import Membership
from query.distributions import (
    group_sketches,
    sketch_values,
    stitched_sketches,
    with_distribution_type,
)
from query.evaluate import evaluate, v1_body
from query.language import parse
from query.segments import TierSource, Uncovered
from query.stores_client import (
    SKETCH_KINDS,
    HttpStoreClient,
    RegistryView,
    Sids,
    SketchClient,
    StoreReplyError,
    StoreUnavailable,
)
from stores.archive.sketches import KIND as ARCHIVE_KIND
from stores.sketches.ram import KIND as RAM_KIND
from stores.sketches.read import bucket_span
from stores.sketches.rocks import KIND as ROCKS_KIND
from strata.partitioning import partition_for, partition_key
from strata.registry import Registration
from strata.rollup import RESOLUTIONS
from strata.sketch import Sketch, SketchBatch, SketchParams
from strata.sketch_codec import encode_batch
from tests.unit.query_fakes import FakeStore, FakeTier

T0 = 1_700_006_400  # a multiple of 3600
ORG = "acme"
HOSTS = ("a", "b", "c")
Tags = tuple[str, ...]


@dataclass
class SketchFake(FakeStore):
    """FakeStore plus sketch tiers: ``values`` per (sid, ts), served by each sketch tier
    inside its coverage (RAM: live, its upper bound is the future)."""

    values: dict[tuple[int, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    sketch_tiers: dict[str, FakeTier] = field(default_factory=dict)
    sketch_reads: list[tuple[str, str, int, int]] = field(default_factory=list)

    def sketch_sources(self, org: str, metric: str) -> tuple[int | None, list[TierSource]]:
        return self.partition, [
            TierSource(
                tier, f"{tier}-sk", f"http://{tier}", t.coverage, t.remembered, self.partition
            )
            for tier, t in self.sketch_tiers.items()
        ]

    def read_sketches(
        self,
        source: TierSource,
        sids: Sids,
        start: int,
        end: int,
        resolution: str,
        step: int | None = None,
    ) -> SketchBatch:
        self.sketch_reads.append((source.tier, resolution, start, end))
        tier = self.sketch_tiers[source.tier]
        if tier.error is not None:
            raise tier.error
        res_step = RESOLUTIONS[resolution]
        assert step is None or step % res_step == 0
        lo, hi = bucket_span(start, end, res_step) if res_step > 1 else (start, end)
        assert tier.coverage is not None
        lo = max(lo, tier.coverage[0])
        hi = hi if source.tier == "ram" else min(hi, tier.coverage[1])
        wanted = set(sids.tolist())
        keys = [(s, t) for (s, t) in self.values if s in wanted and lo <= t <= hi]
        if not keys:
            return SketchBatch.empty(SketchParams())
        sketches = [Sketch.from_values(self.values[k]) for k in keys]
        rows = SketchBatch.from_sketches([k[0] for k in keys], [k[1] for k in keys], sketches)
        rows = rows.rollup(res_step) if res_step > 1 else rows.merge_by_key()
        return rows if step is None else rows.rollup(step)


class Model:
    def __init__(self, seed: int, boundary: int) -> None:
        rng = random.Random(seed)
        self.fake = SketchFake()
        # RAM holds [boundary, ...), rocks [T0 - 1 day, boundary + 30 min]: overlapping.
        self.fake.sketch_tiers = {
            "ram": FakeTier((boundary, 2**40)),
            "rocks": FakeTier((T0 - 86400, boundary + 1800)),
        }
        self.series: list[tuple[frozenset[str], dict[int, list[float]]]] = []
        for host in HOSTS:
            for env in ("prod", "dev"):
                tags = [f"host:{host}", f"env:{env}"] + (["env:both"] if host == "c" else [])
                sid = self.fake.add(ORG, "latency", tags, [], "distribution")
                values: dict[int, list[float]] = {}
                for _ in range(60):
                    ts = T0 + rng.randrange(0, 2 * 3600)
                    vs = [round(rng.lognormvariate(3, 1), 3) for _ in range(rng.randint(1, 40))]
                    values.setdefault(ts, []).extend(vs)
                    self.fake.values[(sid, ts)].extend(vs)
                self.series.append((frozenset(tags), values))
        # another org's distribution of the same name never shows
        other = self.fake.add("other", "latency", ["host:a", "env:prod"], [], "distribution")
        self.fake.values[(other, T0 + 10)].extend([1e6])

    def groups(
        self, key: str | None, start: int, end: int, interval: int
    ) -> dict[Tags, dict[int, list[float]]]:
        out: dict[Tags, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for tags, values in self.series:
            labels = (
                [()] if key is None else [(t,) for t in sorted(tags) if t.startswith(f"{key}:")]
            )
            for ts, vs in values.items():
                if start <= ts <= end:
                    for label in labels:
                        out[label][ts - ts % interval] += vs
        return out


def exact(aggregator: str, vs: list[float]) -> float:
    if aggregator.startswith("p"):
        q = int(aggregator[1:]) / 100
        return sorted(vs)[math.floor(q * (len(vs) - 1))]
    return {
        "avg": math.fsum(vs) / len(vs),
        "sum": math.fsum(vs),
        "min": min(vs),
        "max": max(vs),
        "count": float(len(vs)),
    }[aggregator]


def run(
    model: Model, query: str, start: int, end: int, max_points: int = 60
) -> tuple[Any, dict[Tags, dict[int, float]]]:
    result = evaluate(
        parse(query), ORG, start, end, model.fake, max_points=max_points, max_series=100
    )
    got: dict[Tags, dict[int, float]] = {}
    for tags, row in zip(result.frame.tag_sets, result.frame.values, strict=True):
        got[tags] = {
            int(t): float(v) for t, v in zip(result.grid, row, strict=True) if not math.isnan(v)
        }
    return result, got


@pytest.mark.parametrize(
    "aggregator", ["p50", "p75", "p90", "p95", "p99", "avg", "sum", "min", "max", "count"]
)
@pytest.mark.parametrize("by", [None, "host", "env"])
def test_every_aggregator_matches_the_values_across_tiers(aggregator: str, by: str | None) -> None:
    boundary = T0 + 3600 + 1200
    model = Model(1, boundary)
    start, end = T0, T0 + 2 * 3600 - 1
    query = f"{aggregator}:latency{{*}}" + (f" by {{{by}}}" if by else "")
    result, got = run(model, query, start, end)
    assert result.interval == 120
    assert set(result.tiers) == {"ram", "rocks"}
    want = model.groups(by, start, end, result.interval)
    assert set(got) == set(want)
    for label, buckets in want.items():
        assert set(got[label]) == set(buckets), label
        for bucket, vs in buckets.items():
            g, w = got[label][bucket], exact(aggregator, vs)
            if aggregator.startswith("p"):
                assert abs(g - w) <= 0.01 * abs(w), (label, bucket, g, w)
            else:
                assert math.isclose(g, w, rel_tol=1e-12), (label, bucket, g, w)
    # The v1 body in the shape the official client deserializes.
    body = v1_body(result, query)
    assert {s["aggr"] for s in body["series"]} == {aggregator}
    with ApiClient(Configuration()) as api:  # type: ignore[no-untyped-call]
        resp = api.deserialize(json.dumps(body), (MetricsQueryResponse,), True)
    assert isinstance(resp, MetricsQueryResponse) and resp.series


def test_merged_sketches_equal_the_sketch_of_all_values() -> None:
    """Across tiers, resolutions, time and series the merge is exact: bin for bin."""
    boundary = T0 + 3600 + 1200
    model = Model(2, boundary)
    start, end = T0 + 17, T0 + 2 * 3600 - 5  # unaligned edges: raw and 1m segments too
    sids = np.unique(model.fake.resolve(ORG, "latency", start, end, (), ()))
    interval = 600
    rows, tiers = stitched_sketches(model.fake, ORG, "latency", sids, start, end, interval)
    assert tiers == ("rocks", "ram")
    resolutions = {r for _, r, _, _ in model.fake.sketch_reads}
    assert resolutions == {"raw", "1m"}  # 600 s: 1m core, raw edges
    grid = np.arange(start - start % interval, end + 1, interval, dtype=np.int64)
    merged = group_sketches(
        rows,
        sids,
        Membership(np.arange(sids.size), np.zeros(sids.size, np.int64)),
        int(grid[0]),
        interval,
        grid.size,
    )
    want = model.groups(None, start, end, interval)[()]
    assert len(merged) == len(want)
    for i in range(len(merged)):
        bucket = int(grid[int(merged.ts[i])])
        w = Sketch.from_values(want[bucket])
        g = merged.row(i)
        assert (g.count, g.min, g.max) == (w.count, w.min, w.max)
        assert g.pos_keys.tolist() == w.pos_keys.tolist()
        assert g.pos_counts.tolist() == w.pos_counts.tolist()


def test_a_failing_tier_falls_back_and_a_gap_is_named() -> None:
    boundary = T0 + 3600
    model = Model(3, boundary)
    start, end = T0, T0 + 3600 + 1799
    _, before = run(model, "p90:latency{*}", start, end)
    # RAM down: rocks covers up to boundary + 30 min, the whole range.
    model.fake.sketch_tiers["ram"].error = StoreUnavailable("ram-sketches down (fake)")
    result, after = run(model, "p90:latency{*}", start, end)
    assert result.tiers == ("rocks",)
    assert after == before
    # Both down: a gap naming them, never a silently empty answer.
    model.fake.sketch_tiers["rocks"].error = StoreUnavailable("rocks-sketches down (fake)")
    with pytest.raises(Uncovered, match="ram, rocks unavailable for partition 1"):
        run(model, "p90:latency{*}", start, end)


def test_avg_of_a_distribution_metric_reads_sketches_and_fill_applies() -> None:
    model = Model(4, T0)
    start, end = T0, T0 + 2 * 3600 - 1
    _, got = run(
        model, "avg:latency{host:a}.rollup(avg, 60).fill(zero)", start, end, max_points=200
    )
    want = model.groups(None, start, end, 60)
    # The host:a series only: recompute for them.
    mine: dict[int, list[float]] = defaultdict(list)
    for tags, values in model.series:
        if "host:a" in tags:
            for ts, vs in values.items():
                mine[ts - ts % 60] += vs
    assert want  # the metric has data
    row = got[()]
    for bucket, vs in mine.items():
        assert math.isclose(row[bucket], math.fsum(vs) / len(vs), rel_tol=1e-12)
    # zero-filled gaps between values (at most 300 s)
    filled = [b for b, v in row.items() if v == 0.0]
    assert filled and all(b not in mine for b in filled)


def test_percentile_queries_go_to_the_sketches_whatever_the_type() -> None:
    model = Model(5, T0)
    model.fake.add(ORG, "cpu", ["host:a"], [(T0 + 5, 1.0)])
    _, got = run(model, "p99:cpu{*}", T0, T0 + 3599)
    assert got == {(): {}}  # a gauge has no sketches: no values, not the gauge's points
    assert model.fake.sketch_reads


def test_sketch_values_of_empty_and_filled_rows() -> None:
    batch = SketchBatch.concat(
        [
            SketchBatch.empty(SketchParams(), 1),
            SketchBatch.from_values(SketchParams(), [1, 1], [0, 0], [2.0, 4.0]),
        ]
    )
    for agg, want in [("count", 2.0), ("sum", 6.0), ("min", 2.0), ("max", 4.0), ("avg", 3.0)]:
        values = sketch_values(batch, ast.Aggregator(agg))
        assert math.isnan(values[0]) and values[1] == want
    p50 = sketch_values(batch, ast.Percentile.P50)
    assert math.isnan(p50[0]) and abs(p50[1] - 2.0) <= 0.02


def test_the_fake_is_a_sketch_client_and_kinds_match_the_stores() -> None:
    assert isinstance(SketchFake(), SketchClient)
    assert not isinstance(FakeStore(), SketchClient)
    assert SKETCH_KINDS == {"ram": RAM_KIND, "rocks": ROCKS_KIND, "archive": ARCHIVE_KIND}


def test_http_client_routes_sketch_reads_to_the_sketch_kinds() -> None:
    """``sketch_sources`` looks up the ``*-sketches`` registry kinds but names the planner's
    tiers; ``read_sketches`` posts the contract and decodes the batch (502 on garbage)."""
    key = partition_key(ORG, "latency")
    part = partition_for(key, 4)

    def registration(kind: str, coverage: dict[int, list[int]]) -> Registration:
        return Registration(
            kind=kind,
            instance=f"{kind}-1",
            address=f"http://{kind}:1",
            topic="strata.sketches",
            partition_count=4,
            partitions=[0, 1, 2, 3],
            coverage=coverage,
            updated=1e12,  # fresh: no RAM age margin
        )

    regs = [
        registration("ram", {part: [0, 1]}),  # the *point* RAM store: not used for sketches
        registration(RAM_KIND, {part: [T0, T0 + 100]}),
        registration(ROCKS_KIND, {}),  # catching up: advertises nothing
    ]
    sent: list[tuple[str, dict[str, Any]]] = []
    batch = SketchBatch.from_values(SketchParams(), [5, 5], [T0, T0 + 1], [1.0, 2.0])

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((str(request.url), json.loads(request.content)))
        if "rocks" in str(request.url):
            return httpx.Response(200, content=b"junk")
        return httpx.Response(200, content=encode_batch(batch))

    view = RegistryView(FakeDiscovery(regs), ttl=0.0)
    client = HttpStoreClient(
        view, httpx.Client(transport=httpx.MockTransport(handler)), clock=lambda: 1e12
    )
    partition, sources = client.sketch_sources(ORG, "latency")
    assert partition == part
    by_tier = {s.tier: s for s in sources}
    assert by_tier["ram"].address == f"http://{RAM_KIND}:1"
    assert by_tier["ram"].coverage == (T0, T0 + 100)
    assert by_tier["rocks"].coverage is None
    got = client.read_sketches(by_tier["ram"], np.array([5], np.uint64), T0, T0 + 59, "1m")
    assert got.sid.tolist() == [5, 5] and got.count.tolist() == [1.0, 1.0]
    url, body = sent[-1]
    assert url == f"http://{RAM_KIND}:1/v1/sketches/read"
    assert body == {"sids": [5], "from": T0, "to": T0 + 59, "resolution": "1m", "partition": part}
    client.read_sketches(by_tier["ram"], np.array([5], np.uint64), T0, T0 + 59, "1m", step=300)
    assert sent[-1][1]["step"] == 300
    rocks = TierSource("rocks", "rocks-sketches-1", f"http://{ROCKS_KIND}:1", (0, 1), None, part)
    with pytest.raises(StoreReplyError, match="unreadable sketch batch"):
        client.read_sketches(rocks, np.array([5], np.uint64), T0, T0, "raw")


class FakeDiscovery:
    def __init__(self, regs: list[Registration]) -> None:
        self.regs = regs

    def discover(self, kind: str | None = None) -> list[Registration]:
        return [r for r in self.regs if kind is None or r.kind == kind]


def test_metadata_of_a_distribution_metric_says_distribution() -> None:
    model = Model(6, T0)
    model.fake.add(ORG, "cpu", ["host:a"], [(T0, 1.0)])
    assert with_distribution_type(model.fake, ORG, "latency", {}) == {"type": "distribution"}
    assert with_distribution_type(model.fake, ORG, "latency", {"unit": "ms"}) == {
        "unit": "ms",
        "type": "distribution",
    }
    # A stored type wins; other metrics keep what was stored; another org knows nothing.
    assert with_distribution_type(model.fake, ORG, "latency", {"type": "gauge"}) == {
        "type": "gauge"
    }
    assert with_distribution_type(model.fake, ORG, "cpu", {}) == {}
    assert with_distribution_type(model.fake, "nobody", "latency", {}) == {}


def test_timeshift_and_arithmetic_apply_to_percentile_rows() -> None:
    model = Model(7, T0 + 3600)
    start, end = T0 + 3600, T0 + 2 * 3600 - 1
    _, now = run(model, "p50:latency{*}", start, end)
    _, earlier = run(model, "p50:latency{*}", start - 3600, end - 3600)
    _, shifted = run(model, "timeshift(p50:latency{*}, -3600) * 2", start, end)
    assert earlier[()] and now[()]
    assert shifted[()] == {t + 3600: 2 * v for t, v in earlier[()].items()}
