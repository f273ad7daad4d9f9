"""One query range spanning archive, rocks and RAM answers exactly what was submitted.

Each point tier runs with a small window so that the three tiers hold different ages of one
metric: RAM keeps 3 h, rocks 2 days, the archive everything. Points are submitted through
intake (v2) at hour-aligned timestamps: days old (archive only), hours old (rocks and the
archive) and of the last hour (all three). A 7-day query then has a 1 h interval, so the
planner stitches 1 h rollups of the three tiers; each output bucket holds exactly one point
per series, which the independent model (tests/e2e/reference.py) predicts exactly.

The same class runs with the archive on its local-directory backend and on S3 (the real
moto server). Losing the RAM store must not change the answer: the planner falls back to
rocks and says so in ``X-Strata-Tiers``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
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
    require_modules,
    s3_bucket,
    v2_payload,
)

pytestmark = pytest.mark.e2e

HOUR = 3600
DAY = 86400
METRIC = "tiers.load"
HOSTS = ("h0", "h1", "h2")
SHARDS = ("s0", "s1")
AGGREGATORS = ("avg", "sum", "min", "max")
QUERY_DAYS = 7  # > 6.25 days: 300 points at most -> a 1 h interval -> 1 h rollups


@dataclass
class Tiered:
    cluster: Cluster
    model: ReferenceModel
    start: int
    end: int
    # Which tier must hold each age of data: name -> hour-aligned timestamps.
    ages: dict[str, list[int]]

    def expected(self, agg: str) -> dict[tuple[str, ...], dict[int, float]]:
        return self.model.expected(
            self.cluster.org, METRIC, agg, group_by=["host"], scope=["env:prod"]
        )

    def ask(self, agg: str) -> tuple[dict[tuple[str, ...], dict[int, float]], set[str]]:
        q = f"{agg}:{METRIC}{{env:prod}} by {{host}}"
        body, tiers = self.cluster.query(q, self.start, self.end)
        return parse_query_response(body), {t for t in tiers.split(",") if t}


def series() -> list[SeriesSpec]:
    """Two prod series per host (grouped together) and one dev series the filter drops."""
    out = [SeriesSpec(METRIC, h, (f"shard:{s}", "env:prod")) for h in HOSTS for s in SHARDS]
    return out + [SeriesSpec(METRIC, h, ("shard:s9", "env:dev")) for h in HOSTS]


def value(age: int, spec: SeriesSpec, k: int) -> float:
    """Exact binary fractions (sums are exact), distinct per tier, host, shard and hour;
    dev series are far off so a filter that leaks shows."""
    shard = int(spec.tags[0].removeprefix("shard:s"))
    base = -5000.0 if "env:dev" in spec.tags else 0.0
    return base + age * 1000 + int(spec.host[1:]) * 100 + shard * 10 + k + 0.25 * (k % 3)


def submit_workload(cluster: Cluster, model: ReferenceModel, now: int) -> dict[str, list[int]]:
    h0 = now - now % HOUR
    ages = {
        "archive": [h0 - 5 * DAY + k * HOUR for k in range(4)],  # beyond rocks' 2 days
        "rocks": [h0 - 8 * HOUR + k * HOUR for k in range(4)],  # beyond RAM's 3 h
        "ram": [h0 - HOUR, h0],
    }
    for a, (_, stamps) in enumerate(ages.items()):
        batch = [(s, [(ts, value(a, s, k)) for k, ts in enumerate(stamps)]) for s in series()]
        assert cluster.submit(batch) == 202
        for s, points in batch:  # recorded only after the 202: acknowledged points only
            for ts, v in points:
                model.add(cluster.org, METRIC, s.all_tags, ts, v)
    return ages


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
        "intake": {"STRATA_LATE_WINDOW_SECONDS": str(8 * DAY)},
        "ram": {"STRATA_WINDOW_HOURS": "3"},
        "rocks": {"STRATA_RETENTION_DAYS": "2"},
        "archive": archive_env(s3),
    }
    cluster = Cluster.create(base, tmp, overrides)
    cluster.start()
    try:
        model = ReferenceModel()
        now = int(time.time())
        ages = submit_workload(cluster, model, now)
        start = now - now % HOUR - QUERY_DAYS * DAY
        yield Tiered(cluster, model, start, int(time.time()), ages)
    finally:
        cluster.stop()


def sids_of(tiered: Tiered) -> list[int]:
    from strata.naming import canonical_tags
    from strata.series_id import series_id

    org = tiered.cluster.org
    return [series_id(org, METRIC, canonical_tags(s.all_tags)) for s in series()]


class TestTiersStitchedIntoOneAnswer:
    def test_each_tier_holds_its_ages(self, tiered: Tiered) -> None:
        """The three tiers really hold different data (else "spanning" proves nothing)."""
        sids = sids_of(tiered)
        wanted = {
            "ram": set(tiered.ages["ram"]),
            "rocks": set(tiered.ages["rocks"]) | set(tiered.ages["ram"]),
            "archive": {ts for stamps in tiered.ages.values() for ts in stamps},
        }
        for kind, stamps in wanted.items():

            def holds(kind: str = kind, stamps: set[int] = stamps) -> None:
                table = tiered.cluster.read(kind, sids, tiered.start, tiered.end)
                got = set(table.column("ts").to_pylist())
                assert stamps <= got, f"{kind} lacks {sorted(stamps - got)}"

            eventually(holds, timeout=90.0, what=f"{kind} to hold its points")

    @pytest.mark.parametrize("agg", AGGREGATORS)
    def test_query_spans_archive_rocks_and_ram(self, tiered: Tiered, agg: str) -> None:
        want = tiered.expected(agg)

        def stitched() -> None:
            got, tiers = tiered.ask(agg)
            assert tiers == {"archive", "rocks", "ram"}, f"served by {tiers}"
            assert_same(got, want, f"{agg} over three tiers")

        eventually(stitched, timeout=90.0, what="a three-tier answer")

    def test_losing_ram_falls_back_to_rocks_with_the_same_answer(self, tiered: Tiered) -> None:
        before = {agg: tiered.ask(agg) for agg in AGGREGATORS}
        for agg, (_, tiers) in before.items():
            assert "ram" in tiers, f"{agg} not served by ram before the kill: {tiers}"
        tiered.cluster["ram"].kill()
        # Its registry entry outlives it for a TTL: the planner must fall back on the
        # failed read at once, and keep answering the same once the entry has lapsed.
        for agg in AGGREGATORS:
            got, tiers = tiered.ask(agg)
            assert tiers == {"archive", "rocks"}, f"{agg} after the kill: served by {tiers}"
            assert_same(got, before[agg][0], f"{agg} without ram")
            assert_same(got, tiered.expected(agg), f"{agg} without ram vs model")

        def lapsed() -> None:
            assert tiered.cluster.registration("ram") is None

        eventually(lapsed, timeout=30.0, what="ram registry entry to lapse")
        got, tiers = tiered.ask("avg")
        assert tiers == {"archive", "rocks"}
        assert_same(got, tiered.expected("avg"), "avg after the ram entry lapsed")


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
