"""The benchmark workload generator (bench/workload.py) and the load driver's body preparation.

Shapes are checked against independent models (a per-element loop for the clamped walk,
the definition of a container's lifetime, the arrival-order bound of late points), and the
payload writers against intake's own decoder and parser: what the writers put in a body
must come out of intake as exactly the generated (series id, timestamp, value) rows.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from bench.load_driver import FUTURE_SLACK, DriverConfig, prepare
from bench.workload import (
    CONTAINER_METRICS,
    CPU_METRICS,
    HOST_TAG_KEYS,
    REGIONS,
    CpuOnly,
    HighChurn,
    Points,
    by_series_runs,
    late,
    latency,
    payloads,
    tsbs_hosts,
)
from intake.decode import V1_LIMITS, V2_LIMITS, decode_body
from intake.parse import load_json, parse_v1, parse_v2
from intake.rejections import TimeWindow
from strata.naming import canonical_tags
from strata.series_id import series_id

T0 = 1_700_000_000
ORG = "bench"


def rows_of(points: Points) -> Counter[tuple[str, tuple[str, ...], int, float]]:
    """The points as a multiset of (metric, tags, ts, value), independent of row numbering."""
    t = points.series
    return Counter(
        (t.metric[r], t.tags[r], ts, v)
        for r, ts, v in zip(
            points.row.tolist(), points.ts.tolist(), points.value.tolist(), strict=True
        )
    )


# --- TSBS cpu-only ----------------------------------------------------------------------


def test_cpu_only_is_deterministic_and_independent_of_chunking() -> None:
    whole = CpuOnly(7, T0, seed=3).values(9)
    chunked = CpuOnly(7, T0, seed=3)
    a, b = chunked.values(4), chunked.values(5)
    assert np.array_equal(whole[0], np.concatenate([a[0], b[0]]))
    assert np.array_equal(whole[1], np.vstack([a[1], b[1]]))
    other = CpuOnly(7, T0, seed=4).values(9)
    assert not np.array_equal(whole[1], other[1])
    assert CpuOnly(7, T0, seed=3).series.tags == CpuOnly(7, T0, seed=3).series.tags


def test_cpu_only_values_follow_a_clamped_truncated_walk() -> None:
    """Reference: the same random stream, walked one element at a time in plain Python."""
    gen = CpuOnly(3, T0, seed=11)
    ts, got = gen.values(400)
    rng = np.random.default_rng((11, 2))
    state = rng.uniform(0.0, 100.0, 30).tolist()
    draws = rng.standard_normal((400, 30)).tolist()
    want = []
    for k in range(400):
        row = []
        for i in range(30):
            state[i] = min(100.0, max(0.0, state[i] + draws[k][i]))
            row.append(float(math.trunc(state[i])))
        want.append(row)
    assert got.tolist() == want
    assert ts.tolist() == [T0 + 10 * k for k in range(400)]
    # 400 steps of N(0, 1) from a uniform start reach the clamp for some series.
    assert got.min() >= 0 and got.max() <= 100
    assert float(np.abs(np.diff(got, axis=0)).max()) <= 6.0  # |N(0,1)| < 5 + truncation


def test_cpu_only_series_and_tags_are_tsbs_hosts() -> None:
    gen = CpuOnly(50, T0, seed=1)
    table = gen.series
    assert len(table) == 50 * 10
    assert table.metric[:50] == (CPU_METRICS[0],) * 50  # metric-major rows
    assert set(table.metric) == set(CPU_METRICS) and len(CPU_METRICS) == 10
    datacenters = dict(REGIONS)
    for r, tags in enumerate(table.tags):
        keys = [t.split(":", 1)[0] for t in tags]
        assert keys == list(HOST_TAG_KEYS)
        values = dict(t.split(":", 1) for t in tags)
        assert values["host"] == f"host_{r % 50}"
        assert values["datacenter"] in datacenters[values["region"]]
        assert 0 <= int(values["rack"]) < 100 and 0 <= int(values["service"]) < 20
        assert values["service_version"] in ("0", "1")
        assert values["os"] in ("Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10")
        assert values["team"] in ("SF", "NYC", "LON", "CHI")
    # A host keeps its tags across its 10 metrics.
    assert all(table.tags[h] == table.tags[h + 50 * m] for h in range(50) for m in range(10))
    # Canonical tags are intake's: lower-cased values, except host's.
    hosts = tsbs_hosts(200, seed=1)
    assert {len(set(hosts.columns[k])) > 1 for k in HOST_TAG_KEYS} == {True}
    canon = table.canonical[0]
    assert f"host:{table.tags[0][0][5:]}" in canon
    assert all(t == t.lower() for t in canon if not t.startswith("host:"))
    assert len(set(table.sids(ORG).tolist())) == len(table)


def test_points_are_step_major_and_series_runs_regroup_them() -> None:
    gen = CpuOnly(4, T0, seed=2)
    pts = gen.points(6)
    assert len(pts) == 6 * 40
    assert pts.ts.tolist() == [T0 + 10 * k for k in range(6) for _ in range(40)]
    assert pts.row.tolist() == list(range(40)) * 6
    runs = by_series_runs(pts, 40, 3)
    assert rows_of(runs) == rows_of(pts)
    for lo in range(0, len(runs), 3):
        assert len(set(runs.row[lo : lo + 3].tolist())) == 1
        assert np.all(np.diff(runs.ts[lo : lo + 3]) == 10)
    assert runs.ts[: 40 * 3].max() < runs.ts[40 * 3 :].min()  # runs in time order


# --- high churn, distribution, late ------------------------------------------------------------


def test_high_churn_replaces_containers_after_their_lifetime() -> None:
    gen = HighChurn(containers=20, lifetime=120, start=T0, seed=5)
    pts = gen.points(60)  # 600 s: every slot has 5 or 6 containers
    t = pts.series
    seen: dict[str, list[int]] = {}
    slots: dict[str, set[str]] = {}
    for r, ts in zip(pts.row.tolist(), pts.ts.tolist(), strict=True):
        tags = dict(x.split(":", 1) for x in t.tags[r])
        seen.setdefault(tags["container_id"], []).append(ts)
        slots.setdefault(tags["slot"], set()).add(tags["container_id"])
    assert len(slots) == 20
    assert all(len(ids) in (5, 6) for ids in slots.values())
    ends = (T0, T0 + 590)
    for times in seen.values():  # 2 metrics per container
        assert max(times) - min(times) < 120
        if min(times) > ends[0] and max(times) < ends[1]:  # a whole life in the window
            assert len(times) == 2 * 12
    ts = np.arange(T0, T0 + 600, 10, dtype=np.int64)
    for s, ids in slots.items():
        assert len(ids) == len(set(gen.generation(ts, np.full(60, int(s[1:]))).tolist()))
    assert set(t.metric) == set(CONTAINER_METRICS)
    # Cut anywhere, the stream is the same.
    again = HighChurn(containers=20, lifetime=120, start=T0, seed=5)
    assert rows_of(again.points(25)) + rows_of(again.points(35)) == rows_of(pts)


def test_latency_samples_are_log_normal() -> None:
    pts = latency(series=4, start=T0, steps=50, samples=500, seed=9, median=0.05, sigma=0.6)
    assert len(pts) == 4 * 50 * 500
    assert pts.series.mtype == "distribution"
    per_key = Counter(zip(pts.row.tolist(), pts.ts.tolist(), strict=True))
    assert set(per_key.values()) == {500}
    logs = np.log(pts.value)
    assert abs(float(np.median(pts.value)) - 0.05) < 0.05 * 0.03
    assert abs(float(logs.std()) - 0.6) < 0.6 * 0.03
    with pytest.raises(ValueError, match="distribution"):
        next(payloads(pts, 100))


def test_late_points_arrive_out_of_order_within_the_delay() -> None:
    pts = CpuOnly(10, T0, seed=1).points(100)
    out = late(pts, fraction=0.2, max_delay=120, seed=4)
    assert rows_of(out) == rows_of(pts)  # the same points, only reordered
    # Arrival order: anything sent before a point is at most max_delay newer than it.
    ahead = np.maximum.accumulate(out.ts) - out.ts
    assert int(ahead.max()) <= 120
    assert np.count_nonzero(ahead > 0) > len(out) * 0.05  # and late points do happen
    assert rows_of(late(pts, 0.2, 120, seed=4)) == rows_of(out)
    on_time = late(pts, 0.0, 120, seed=4)
    assert np.all(np.diff(on_time.ts) >= 0)
    assert on_time.row[:100].tolist() != pts.row[:100].tolist()  # ties shuffled


# --- payloads through intake's parser --------------------------------------------------------


def parsed_rows(body: bytes, api: str, encoding: str | None) -> Counter[tuple[int, int, float]]:
    limits = V1_LIMITS if api == "v1" else V2_LIMITS
    doc = load_json(decode_body(body, encoding, limits))
    window = TimeWindow(T0 + 10**6, late_seconds=10**7, future_seconds=10**7)
    parsed = (parse_v1 if api == "v1" else parse_v2)(doc, ORG, window)
    assert not parsed.rejections
    out: Counter[tuple[int, int, float]] = Counter()
    for b in parsed.batches:
        p = b.points
        out.update(zip(p.sid.tolist(), p.ts.tolist(), p.value.tolist(), strict=True))
    return out


def expected_rows(points: Points) -> Counter[tuple[int, int, float]]:
    t = points.series
    sids = [
        series_id(ORG, m, canonical_tags(tags)) for m, tags in zip(t.metric, t.tags, strict=True)
    ]
    return Counter(
        (sids[r], ts, v)
        for r, ts, v in zip(
            points.row.tolist(), points.ts.tolist(), points.value.tolist(), strict=True
        )
    )


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("level", [6, None])
def test_payloads_parse_back_to_the_generated_points(api: str, level: int | None) -> None:
    pts = by_series_runs(CpuOnly(30, T0, seed=8).points(4), 300, 2)
    bodies = list(payloads(pts, 250, api=api, level=level))
    assert [b.points for b in bodies] == [250, 250, 250, 250, 200]
    got: Counter[tuple[int, int, float]] = Counter()
    for b in bodies:
        assert b.path == f"/api/{api}/series"
        assert b.http_headers().get("Content-Encoding") == ("gzip" if level else None)
        got += parsed_rows(b.body, api, b.encoding)
    assert got == expected_rows(pts)


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_zstd_payloads_parse_back_to_the_generated_points(api: str) -> None:
    pts = by_series_runs(CpuOnly(30, T0, seed=8).points(4), 300, 2)
    got: Counter[tuple[int, int, float]] = Counter()
    for b in payloads(pts, 250, api=api, level=1, encoding="zstd1"):
        assert b.http_headers().get("Content-Encoding") == "zstd1"
        got += parsed_rows(b.body, api, b.encoding)
    assert got == expected_rows(pts)


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_churn_and_late_payloads_parse_back(api: str) -> None:
    churn = HighChurn(containers=15, lifetime=60, start=T0, seed=2).points(20)
    shuffled = late(CpuOnly(5, T0, seed=2).points(20), 0.3, 60, seed=2)
    for pts in (churn, shuffled):
        got: Counter[tuple[int, int, float]] = Counter()
        for b in payloads(pts, 97, api=api):
            got += parsed_rows(b.body, api, b.encoding)
        assert got == expected_rows(pts)


def test_v1_and_v2_shapes() -> None:
    pts = CpuOnly(1, T0, seed=1).points(2).take(np.array([0, 10]))  # usage_user, 2 steps
    (v2,) = payloads(pts, 10, api="v2", level=None)
    (v1,) = payloads(pts, 10, api="v1", level=None)
    doc2 = load_json(v2.body)["series"]
    doc1 = load_json(v1.body)["series"]
    assert len(doc2) == len(doc1) == 1
    assert doc2[0]["metric"] == doc1[0]["metric"] == "cpu.usage_user"
    assert doc2[0]["type"] == 3 and doc1[0]["type"] == "gauge"
    assert doc2[0]["resources"] == [{"name": "host_0", "type": "host"}]
    assert doc1[0]["host"] == "host_0"
    assert [p["timestamp"] for p in doc2[0]["points"]] == [T0, T0 + 10]
    assert [p[0] for p in doc1[0]["points"]] == [T0, T0 + 10]
    assert len(doc1[0]["tags"]) == len(doc2[0]["tags"]) == len(HOST_TAG_KEYS) - 1


# --- load driver body preparation ---------------------------------------------------------------


def config(**kw: object) -> DriverConfig:
    base: dict[str, object] = {"intake": "http://i", "query": "http://q", "api_key": "a"}
    return DriverConfig(**(base | {"app_key": "b"} | kw))  # type: ignore[arg-type]


def test_prepare_sends_rate_times_duration_inside_intake_windows() -> None:
    start = T0 - 3000
    bodies = prepare(config(rate=3000, duration=2, hosts=20, points_per_request=400), start)
    assert sum(b.points for b in bodies) == 6000
    assert all(b.points == 400 for b in bodies[:-1])
    rows = Counter[tuple[int, int, float]]()
    for b in bodies:
        rows += parsed_rows(b.body, "v2", b.encoding)
    ts = [t for _, t, _ in rows]
    assert min(ts) == start and max(ts) == start + 10 * (6000 // 200 - 1)


@pytest.mark.parametrize("per_series", [1, 7])
def test_prepare_gives_every_point_the_rate_asks_for(per_series: int) -> None:
    """30 steps of 100 series wanted; runs of 7 steps per series round up, never down."""
    cfg = config(rate=1500, duration=2, hosts=10, points_per_series=per_series)
    assert sum(b.points for b in prepare(cfg, T0 - 3000)) == 3000


def test_prepare_stops_the_stream_at_the_future_window() -> None:
    start = T0 - 3000
    bodies = prepare(config(hosts=1, max_points=10**6, start_offset=3000), start)
    total = sum(b.points for b in bodies)
    steps = (3000 + FUTURE_SLACK) // 10
    assert total == 10 * steps  # one host: 10 series per step, capped by the window
    rows = Counter[tuple[int, int, float]]()
    for b in bodies[-3:]:
        rows += parsed_rows(b.body, "v2", b.encoding)
    assert max(t for _, t, _ in rows) < T0 + FUTURE_SLACK


def test_driver_config_is_validated() -> None:
    with pytest.raises(ValueError, match="shape"):
        config(shape="nope")
    with pytest.raises(ValueError, match="rate"):
        config(rate=0)
    with pytest.raises(ValueError, match="marker"):
        config(marker_interval=0.5)
