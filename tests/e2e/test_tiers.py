"""One query range spanning archive, rocks and RAM answers exactly what was submitted.

Each point tier runs with a small window so that the three tiers hold different ages of one
metric: RAM keeps 3 h, rocks its 2 full days besides today (from day ``D0``), the archive
everything. Points are submitted through intake (v2), many per series per output bucket and
with distinct (seeded, exact binary-fraction) values, at timestamps that are neither hour
nor minute aligned: every 30 min in the 6 days before ``D0`` (archive only), every 10 min from
``D0`` (rocks and the archive) and every minute in the last 5 h (all three tiers).

Because the time rollup is an average, a point counted twice is only visible when an output
bucket holds several distinct points of a series and the double-counted part is not all of
them; it hides most easily at a tier boundary. So the queries are chosen (query
``MAX_POINTS`` is 20, so a range picks its interval) such that output buckets *straddle*
the boundaries: a 2-, 7- or 30-day interval whose bucket holds both sides of rocks' first
day ``D0`` (archive / rocks) and of RAM's first whole hour (rocks / RAM, read at 1 h), and a
10-30 min interval at 1 m resolution whose bucket holds both sides of RAM's first whole
minute (its coverage start slides and is not hour aligned). The answers are compared with
an independent bucketed model (``tiers_support.expected_rolled``) for avg, sum, min and max
by host. Each tier's read API must also return exactly the model's rows: raw row count and
values, and ``count``/``sum`` of every 1 m and 1 h rollup (no duplicate rows within a tier).

The same class runs with the archive on its local-directory backend and on S3 (the real
moto server). Losing the RAM store must not change the answer: the planner falls back to
rocks and says so in ``X-Strata-Tiers``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from strata.servers import RunningServer
from tests.e2e.conftest import descendants, eventually, start_pipeline, still_alive
from tests.e2e.reference import ReferenceModel, assert_same, parse_query_response
from tests.e2e.tiers_support import (
    Cluster,
    SeriesSpec,
    archive_env,
    expected_rolled,
    require_modules,
    response_interval,
    s3_bucket,
    v2_payload,
)

pytestmark = pytest.mark.e2e

MINUTE = 60
HOUR = 3600
DAY = 86400
METRIC = "tiers.load"
DIST_METRIC = "tiers.latency"  # distribution points: sketches in all three tiers
ALPHA = 0.01  # the sketches' relative accuracy
HOSTS = ("h0", "h1", "h2")
SHARDS = ("s0", "s1")
AGGREGATORS = ("avg", "sum", "min", "max")
MAX_POINTS = 20  # the query service's STRATA_MAX_POINTS: small ranges pick large intervals
RAM_HOURS = 3
ROCKS_DAYS = 2
COVERAGE_MARGIN = 30  # the query service's STRATA_COVERAGE_MARGIN_SECONDS (default)
# Output intervals tried, first fit wins (see Tiered.pick_*): wide ones read 1 h rollups,
# near ones 1 m rollups.
WIDE_INTERVALS = (2 * DAY, 7 * DAY, 30 * DAY)
NEAR_INTERVALS = (1800, 1200, 900, 600)
Answer = dict[tuple[str, ...], dict[int, float]]
Table = dict[tuple[int, int], float]
Rolls = dict[tuple[int, int], tuple[int, float]]


def series() -> list[SeriesSpec]:
    """Two prod series per host (grouped together) and one dev series the filter drops."""
    out = [SeriesSpec(METRIC, h, (f"shard:{s}", "env:prod")) for h in HOSTS for s in SHARDS]
    return out + [SeriesSpec(METRIC, h, ("shard:s9", "env:dev")) for h in HOSTS]


def stamps(d0: int, now: int) -> list[int]:
    """Minute-aligned base stamps (each series adds its own offset): sparse where only the
    archive holds them, denser in rocks' days, every minute across RAM's coverage start."""
    h0 = now - now % HOUR
    recent = h0 - 5 * HOUR
    out = list(range(d0 - 6 * DAY, d0, 30 * MINUTE))
    out += range(d0, recent, 10 * MINUTE)
    out += range(recent, now - MINUTE - now % MINUTE, MINUTE)
    return out


def submit_workload(cluster: Cluster, model: ReferenceModel, d0: int, now: int) -> None:
    rng = random.Random(20240601)  # values only; exact multiples of 1/8, distinct enough
    base = stamps(d0, now)
    for idx, spec in enumerate(series()):
        offset = 7 * idx + 3  # seconds into the minute: nothing is minute aligned
        off = -5000.0 if "env:dev" in spec.tags else 0.0  # a leaking filter shows
        points = [(t + offset, off + rng.randint(-4000, 4000) / 8) for t in base]
        for i in range(0, len(points), 400):
            chunk = points[i : i + 400]
            assert cluster.submit([(spec, chunk)], timeout=30.0) == 202
            for ts, v in chunk:  # recorded only after the 202: acknowledged points only
                model.add(cluster.org, METRIC, spec.all_tags, ts, v)


Dists = dict[tuple[str, int], list[float]]


def submit_distributions(cluster: Cluster, d0: int, now: int) -> Dists:
    """Distribution points of ``DIST_METRIC`` at the same ages as the points (so sketches
    lie on both sides of each tier boundary), a few log-normal latencies per (host, ts);
    returns what was acknowledged, per (host, ts)."""
    rng = random.Random(20240602)
    acked: Dists = {}
    for idx, host in enumerate(HOSTS):
        offset = 11 * idx + 5
        points = [
            (t + offset, [rng.lognormvariate(3, 1) for _ in range(5)]) for t in stamps(d0, now)
        ]
        for i in range(0, len(points), 400):
            chunk = points[i : i + 400]
            resp = httpx.post(
                f"{cluster['intake'].url}/api/v1/distribution_points",
                json={
                    "series": [
                        {
                            "metric": DIST_METRIC,
                            "host": host,
                            "tags": ["env:prod"],
                            "points": [[ts, vs] for ts, vs in chunk],
                        }
                    ]
                },
                headers={"DD-API-KEY": cluster.api_key},
                timeout=30.0,
            )
            assert (resp.status_code, resp.json()) == (202, {"status": "ok"}), resp.text
            acked |= {(host, ts): vs for ts, vs in chunk}
    return acked


def ceil_to(x: int, step: int) -> int:
    return -(-x // step) * step


@dataclass
class Tiered:
    cluster: Cluster
    model: ReferenceModel
    d0: int  # rocks' first kept day when the points were submitted
    dists: Dists  # distribution values acknowledged, per (host, ts)

    @property
    def partition(self) -> int:
        return self.cluster.partition_of(METRIC)

    def coverage_lo(self, kind: str) -> tuple[int, int]:
        """(advertised lo, the latest lo the query may derive from it): RAM's start moves
        on by the margin plus its registry entry's age (docs/query.md)."""
        reg = self.cluster.registration(kind)
        assert reg is not None and self.partition in reg.coverage, f"{kind}: {reg}"
        lo = int(reg.coverage[self.partition][0])
        if kind != "ram":
            return lo, lo
        age = max(0.0, time.time() - reg.updated)
        return lo + COVERAGE_MARGIN, lo + COVERAGE_MARGIN + int(age) + 5

    def ram_boundaries(self, step: int) -> list[int]:
        """Every first whole ``step`` bucket of RAM's coverage the query may be using."""
        lo, hi = self.coverage_lo("ram")
        return list(range(ceil_to(lo, step), ceil_to(hi, step) + 1, step))

    def pick_wide(self) -> tuple[int, list[int]]:
        """An interval (1 h rollups) with one bucket straddling rocks' first day (archive /
        rocks) and one straddling RAM's first whole hour (rocks / RAM)."""
        rocks_lo = self.coverage_lo("rocks")[0]
        assert rocks_lo % DAY == 0, rocks_lo
        ram = self.ram_boundaries(HOUR)
        for interval in WIDE_INTERVALS:
            bounds = [rocks_lo, *ram]
            if all(b % interval for b in bounds):
                return interval, [rocks_lo, ram[0]]
        raise AssertionError(f"no interval of {WIDE_INTERVALS} splits {rocks_lo} and {ram}")

    def pick_near(self) -> tuple[int, list[int]]:
        """An interval (1 m rollups) with a bucket straddling RAM's first whole minute."""
        ram = self.ram_boundaries(MINUTE)
        for interval in NEAR_INTERVALS:
            if all(b % interval for b in ram):
                return interval, [ram[0]]
        raise AssertionError(f"no interval of {NEAR_INTERVALS} splits {ram}")

    def span(self, interval: int) -> tuple[int, int]:
        """A range up to now for which the query picks ``interval`` (MAX_POINTS buckets at
        it, more at every smaller ladder step)."""
        end = int(time.time())
        return (end // interval - (MAX_POINTS - 1)) * interval, end

    def ask(self, agg: str, interval: int) -> tuple[Answer, set[str], Answer]:
        """The query's answer, the tiers that served it, and the model's answer."""
        start, end = self.span(interval)
        q = f"{agg}:{METRIC}{{env:prod}} by {{host}}"
        body, tiers = self.cluster.query(q, start, end)
        assert response_interval(body) == interval, f"{q} over [{start}, {end}]"
        want = expected_rolled(
            self.model,
            self.cluster.org,
            METRIC,
            agg,
            interval,
            start=start,
            end=end,
            group_by=["host"],
            scope=["env:prod"],
        )
        return parse_query_response(body), {t for t in tiers.split(",") if t}, want

    def dist_expected(self, agg: str, interval: int, start: int, end: int) -> Answer:
        """Per host and output bucket: the exact percentile (DDSketch's rank, floor(q (n-1)))
        or count of every value submitted in it."""
        buckets: dict[tuple[str, ...], dict[int, list[float]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for (host, ts), vs in self.dists.items():
            if start <= ts <= end:
                buckets[(f"host:{host}",)][ts - ts % interval] += vs
        out: Answer = {}
        for group, by_bucket in buckets.items():
            out[group] = {}
            for b, vs in by_bucket.items():
                if agg == "count":
                    out[group][b] = float(len(vs))
                else:
                    q = int(agg[1:]) / 100
                    out[group][b] = sorted(vs)[int(q * (len(vs) - 1))]
        return out

    def straddled(self, boundary: int, interval: int) -> None:
        """The bucket holding ``boundary`` has prod points on both sides of it."""
        b = boundary - boundary % interval
        mine = [
            ts
            for (_, _, tags), pts in self.model.points.items()
            if "env:prod" in tags
            for ts in pts
            if b <= ts < b + interval
        ]
        assert any(ts < boundary for ts in mine) and any(ts >= boundary for ts in mine), (
            f"bucket {b} (+{interval}) lacks points on one side of {boundary}"
        )

    # -- what each tier must hold ---------------------------------------------------------

    def raw(self, lo: int) -> Table:
        from strata.naming import canonical_tags
        from strata.series_id import series_id

        org = self.cluster.org
        out: Table = {}
        for (_, _, tags), pts in self.model.points.items():
            sid = series_id(org, METRIC, canonical_tags(tags))
            out |= {(sid, ts): v for ts, v in pts.items() if ts >= lo}
        return out

    def rollups(self, lo: int, step: int) -> Rolls:
        acc: dict[tuple[int, int], list[float]] = defaultdict(list)
        for (sid, ts), v in self.raw(lo).items():
            acc[(sid, ts - ts % step)].append(v)
        return {k: (len(vs), sum(vs)) for k, vs in acc.items()}


@pytest.fixture(scope="class", params=["local", "s3"])
def tiered(
    request: pytest.FixtureRequest,
    tansu: RunningServer,
    valkey: RunningServer,
    moto: RunningServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Tiered]:
    require_modules()
    backend: str = request.param
    tmp: Path = tmp_path_factory.mktemp(f"tiers-{backend}")
    s3 = s3_bucket(moto, f"tiers-{int(time.time() * 1000)}") if backend == "s3" else None
    base = {
        "STRATA_KAFKA_BOOTSTRAP": tansu.address,
        "STRATA_REDIS_URL": f"redis://127.0.0.1:{valkey.port}/0",
        "STRATA_PARTITIONS": "3",
    }
    overrides = {
        "intake": {"STRATA_LATE_WINDOW_SECONDS": str(10 * DAY)},
        "query": {"STRATA_MAX_POINTS": str(MAX_POINTS)},
        "ram": {"STRATA_WINDOW_HOURS": str(RAM_HOURS)},
        "rocks": {"STRATA_RETENTION_DAYS": str(ROCKS_DAYS)},
        "archive": archive_env(s3),
    }
    cluster = Cluster.create(base, tmp, overrides)
    cluster.start()
    try:
        model = ReferenceModel()
        now = int(time.time())
        d0 = now - now % DAY - ROCKS_DAYS * DAY
        submit_workload(cluster, model, d0, now)
        dists = submit_distributions(cluster, d0, now)
        yield Tiered(cluster, model, d0, dists)
    finally:
        cluster.stop()


def sids_of(tiered: Tiered) -> list[int]:
    from strata.naming import canonical_tags
    from strata.series_id import series_id

    org = tiered.cluster.org
    return [series_id(org, METRIC, canonical_tags(s.all_tags)) for s in series()]


def exact_rows(tiered: Tiered, kind: str, sids: Sequence[int], lo: int, end: int) -> None:
    """The tier's raw rows and 1 m / 1 h rollups from ``lo`` on are the model's, exactly."""
    t = tiered.cluster.read(kind, sids, lo, end)
    got: Table = {
        (int(s), int(ts)): float(v)
        for s, ts, v in zip(
            t.column("sid").to_pylist(),
            t.column("ts").to_pylist(),
            t.column("value").to_pylist(),
            strict=True,
        )
    }
    want = tiered.raw(lo)
    assert t.num_rows == len(want), f"{kind} raw: {t.num_rows} rows, model {len(want)}"
    assert got == want, f"{kind} raw: {len(got.keys() ^ want.keys())} rows differ"
    for resolution, step in (("1m", MINUTE), ("1h", HOUR)):
        r = tiered.cluster.read(kind, sids, ceil_to(lo, step), end, resolution)
        rows = zip(
            r.column("sid").to_pylist(),
            r.column("ts").to_pylist(),
            r.column("count").to_pylist(),
            r.column("sum").to_pylist(),
            strict=True,
        )
        got_r: Rolls = {(int(s), int(b)): (int(c), float(x)) for s, b, c, x in rows}
        want_r = tiered.rollups(ceil_to(lo, step), step)
        differ = sorted(k for k in got_r.keys() | want_r.keys() if got_r.get(k) != want_r.get(k))
        assert not differ, f"{kind} {resolution}: {len(differ)} buckets differ, e.g. " + str(
            [(k, got_r.get(k), want_r.get(k)) for k in differ[:3]]
        )


class TestTiersStitchedIntoOneAnswer:
    def test_each_tier_holds_exactly_its_points(self, tiered: Tiered) -> None:
        """Raw row counts and rollup counts of every tier equal the model's: the tiers
        really hold different ages (else "spanning" proves nothing), and none holds a
        point twice."""
        sids = sids_of(tiered)
        oldest = tiered.d0 - 7 * DAY

        def archive() -> None:
            exact_rows(tiered, "archive", sids, oldest, int(time.time()))

        def rocks() -> None:
            lo = tiered.coverage_lo("rocks")[0]  # d0, unless a day has passed since
            assert lo % DAY == 0 and lo >= tiered.d0, f"rocks starts at {lo}"
            t = tiered.cluster.read("rocks", sids, oldest, lo - 1)
            assert t.num_rows == 0, f"rocks holds {t.num_rows} points older than its days"
            exact_rows(tiered, "rocks", sids, lo, int(time.time()))

        def ram() -> None:  # whole hours safely inside its sliding window
            lo = ceil_to(int(time.time()) - RAM_HOURS * HOUR + 2 * MINUTE, HOUR)
            exact_rows(tiered, "ram", sids, lo, int(time.time()))

        for kind, check in (("archive", archive), ("rocks", rocks), ("ram", ram)):
            eventually(check, timeout=90.0, what=f"{kind} to hold exactly its points")

    @pytest.mark.parametrize("agg", AGGREGATORS)
    def test_query_spans_archive_rocks_and_ram(self, tiered: Tiered, agg: str) -> None:
        """Buckets of days: one holds both sides of the archive/rocks boundary, one both
        sides of the rocks/RAM boundary."""

        def stitched() -> None:
            interval, boundaries = tiered.pick_wide()
            for b in boundaries:
                tiered.straddled(b, interval)
            got, tiers, want = tiered.ask(agg, interval)
            assert tiers == {"archive", "rocks", "ram"}, f"served by {tiers}"
            assert_same(got, want, f"{agg} over three tiers at {interval} s")

        eventually(stitched, timeout=90.0, what="a three-tier answer")

    @pytest.mark.parametrize("agg", AGGREGATORS)
    def test_query_across_the_ram_rocks_boundary(self, tiered: Tiered, agg: str) -> None:
        """Buckets of minutes read at 1 m: one holds both sides of RAM's first minute."""

        def stitched() -> None:
            interval, boundaries = tiered.pick_near()
            for b in boundaries:
                tiered.straddled(b, interval)
            got, tiers, want = tiered.ask(agg, interval)
            assert tiers == {"rocks", "ram"}, f"served by {tiers}"
            assert_same(got, want, f"{agg} across rocks and ram at {interval} s")

        eventually(stitched, timeout=90.0, what="a rocks + ram answer")

    @pytest.mark.parametrize("agg", ("p50", "p99", "count"))
    def test_distribution_percentiles_span_archive_rocks_and_ram(
        self, tiered: Tiered, agg: str
    ) -> None:
        """Sketches merged across the three sketch tiers: percentiles within the relative
        accuracy of the exact ones, counts exact (a sketch read from two tiers, or merged
        twice, would show in the count of the bucket straddling that boundary)."""

        def stitched() -> None:
            interval, boundaries = tiered.pick_wide()
            start, end = tiered.span(interval)
            q = f"{agg}:{DIST_METRIC}{{env:prod}} by {{host}}"
            body, served = tiered.cluster.query(q, start, end)
            assert response_interval(body) == interval, f"{q} over [{start}, {end}]"
            assert {t for t in served.split(",") if t} == {"archive", "rocks", "ram"}, served
            got = parse_query_response(body)
            want = tiered.dist_expected(agg, interval, start, end)
            assert want and set(got) == set(want), f"{q}: groups {sorted(got)}"
            for b in boundaries:  # the buckets straddling the tier boundaries are answered
                assert all(b - b % interval in pts for pts in want.values()), (b, interval)
            for group, pts in want.items():
                assert set(got[group]) == set(pts), f"{q} {group}: {sorted(got[group])}"
                for ts, value in pts.items():
                    tol = 1e-9 if agg == "count" else ALPHA + 1e-9
                    assert abs(got[group][ts] - value) <= tol * abs(value), (
                        f"{q} {group} @ {ts}: {got[group][ts]} vs exact {value}"
                    )

        eventually(stitched, timeout=90.0, what=f"{agg} of the sketches over three tiers")

    def test_losing_ram_falls_back_to_rocks_with_the_same_answer(self, tiered: Tiered) -> None:
        interval, _ = tiered.pick_wide()
        before = {agg: tiered.ask(agg, interval) for agg in AGGREGATORS}
        for agg, (got, tiers, want) in before.items():
            assert "ram" in tiers, f"{agg} not served by ram before the kill: {tiers}"
            assert_same(got, want, f"{agg} before the kill")
        tiered.cluster["ram"].kill()
        # Its registry entry outlives it for a TTL: the planner must fall back on the
        # failed read at once, and keep answering the same once the entry has lapsed.
        for agg in AGGREGATORS:
            got, tiers, want = tiered.ask(agg, interval)
            assert tiers == {"archive", "rocks"}, f"{agg} after the kill: served by {tiers}"
            assert_same(got, want, f"{agg} without ram vs model")

        def lapsed() -> None:
            assert tiered.cluster.registration("ram") is None

        eventually(lapsed, timeout=30.0, what="ram registry entry to lapse")
        got, tiers, want = tiered.ask("avg", interval)
        assert tiers == {"archive", "rocks"}
        assert_same(got, want, "avg after the ram entry lapsed")


def test_strata_up_runs_and_supervises_the_durable_tiers(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``strata up`` starts rocks and the archive (local dir under DIR/archive), reports
    them, restarts a killed one, and stops them cleanly; a point reaches both."""
    require_modules()
    # Passed through to the archive by strata up (the production flush is a minute).
    monkeypatch.setenv("STRATA_ARCHIVE_FLUSH_SECONDS", "1")
    data_dir = tmp_path_factory.mktemp("up-tiers") / "data"
    pipeline = start_pipeline(data_dir)
    try:
        text = pipeline.text()
        for label in ("rocks store", "archive store"):
            assert f"{label} is up on http://127.0.0.1:" in text, text
        components = pipeline.state()["components"]
        assert components["rocks"]["module"] == "stores.rocks"
        assert components["archive"]["module"] == "stores.archive"
        assert set(pipeline.endpoints["components"]) >= {"ram", "rocks", "archive"}

        spec = SeriesSpec("up.tiers", "h0", ("env:up",))
        now = int(time.time())
        body = v2_payload([(spec, [(now - now % 60 - 60, 1.5)])])
        resp = httpx.post(
            f"{pipeline.intake}/api/v2/series",
            json=body,
            headers={"DD-API-KEY": pipeline.endpoints["api_key"]},
            timeout=10.0,
        )
        assert resp.status_code == 202, resp.text

        def archived() -> None:  # the embedded default: Parquet files under DIR/archive
            assert any((data_dir / "archive").rglob("*.parquet")), "nothing archived"

        eventually(archived, timeout=120.0, what="an archive upload under DIR/archive")
        assert any((data_dir / "rocks").iterdir()), "rocks keeps nothing under DIR/rocks"

        old_pid = int(pipeline.component("rocks")["pid"])
        os.kill(old_pid, signal.SIGKILL)

        def restarted() -> None:
            now = pipeline.component("rocks")
            assert now["restarts"] == 1 and now["phase"] == "running", now
            assert now["pid"] not in (None, old_pid)

        eventually(restarted, timeout=90.0, what="rocks store restart")
        assert "rocks store exited with -9; restarting" in pipeline.text()
        children = descendants(pipeline.process.pid)
        assert len(children) >= 9, children  # tansu, valkey, seven services
    except BaseException:
        print(pipeline.diagnostics())
        raise
    finally:
        code = pipeline.stop()
    assert code == 0, pipeline.diagnostics()
    assert "strata stopped" in pipeline.text()
    eventually(lambda: _none_left(children), timeout=10.0, what="children to exit")


def _none_left(children: dict[int, int]) -> None:
    assert still_alive(children) == [], f"left behind: {still_alive(children)}"
