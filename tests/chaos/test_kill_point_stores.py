"""SIGKILL each point store at random moments while points flow; nothing is lost or doubled.

For each point tier (ram, rocks, archive) one test runs a steady flow of points through
intake while a seeded nemesis SIGKILLs that store at random moments — during start-up and
replay, and while it applies, makes durable and commits batches — and restarts it at once
with the same instance id and data directory (as ``strata up``'s supervisor does). Then every
acknowledged (202) point must be present exactly once in every tier:

- raw reads equal the model point for point (no missing, no extra, no duplicate rows);
- 1 m and 1 h rollups have the model's count and sum per (series, bucket) — a redelivered
  message applied twice would double a stored rollup even where raw reads hide it;
- ``sum by {host}`` through ``/api/v1/query`` equals the model.

Timestamps repeat (a 300 s span around now written over and over with fresh values), so the
conflict rule is exercised under redelivery too. Half the requests carry late points only,
into the previous hour, which is already closed: in every cycle of 12 requests one dense
(20 per series, so rocks merges them straight into hour blocks) and a run of five sparse
(2 per series, so rocks stages them and folds them a second later). Rocks takes one to
three requests per batch when it keeps up, so the run holds a batch of sparse points only:
a staging chunk wholly in the closed hour, which it folds (a chunk holding a point of the
open hour waits for that hour to close; with sparse requests one at a time between requests
of the open hour, every chunk held one and rocks hardly ever folded).

The chaos cluster (tests/chaos/conftest.py) folds and compacts within seconds instead of
the production 10 minutes and hour, so kills land while rocks has staged chunks on disk,
between and around its folds and direct writes, and while the archive compacts; the test
counts where they landed (from rocks' ``/v1/stats`` and the archive's objects and log).

A store lives only a second or two between random kills, often too short for a fold or a
compaction to finish, so whether any kill landed after one would be luck. Every fourth kill
of rocks and of the archive (a seeded subset: which of each four) therefore waits, up to
``WORK_TIMEOUT`` seconds after the restarted store is healthy, until the store shows that its
background work made progress in this life (rocks: its fold counter, which restarts from
zero, is above zero; the archive: it logged a compaction that wrote output), and kills it
right then. So by construction at least ``KILLS // WAIT_EVERY`` kills of each land just after
a fold or a compaction, and the test asserts that many; work that never comes within the
deadline fails the test (a fold or compaction that stopped happening is a bug).

Values are multiples of 1/1024 below 2**10, so sums are exact in float64 in any order and
compared exactly.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from strata.naming import canonical_tags
from strata.series_id import series_id
from tests.e2e.conftest import eventually
from tests.e2e.reference import ReferenceModel, assert_same, parse_query_response
from tests.e2e.tiers_support import (
    POINT_TIERS,
    Cluster,
    SeriesSpec,
    ServiceDied,
    expected_rolled,
    response_interval,
)

pytestmark = pytest.mark.chaos

KILLS = 20  # per store: the issue asks for at least 20 kills per store across the suite
SPAN = 300  # seconds of timestamps written; 300 points -> the query answers at 1 s
HOSTS = ("h0", "h1", "h2", "h3")
POINTS_PER_SERIES = 5  # per request
REQUEST_INTERVAL = 0.05  # seconds between requests (~80 points/s: gentle on 2 cores)
FLOWING_WINDOW = 1.0  # a kill "lands while data flows" if a 202 came this recently
HOUR = 3600
CYCLE = 12  # requests: 0 dense late, 6-10 sparse late, the rest points around now
SPARSE_RUN = range(6, 11)  # five in a row: some rocks batch holds sparse points only
DENSE_LATE = 20  # per series: >= 8 per block, rocks merges them directly while that doubles it
SPARSE_LATE = 2  # per series: rocks stages them, then folds them
# A scheduled archive compaction that wrote something (stores/archive/service.py logs it).
COMPACTED = re.compile(rb"scheduled compaction: CompactionReport\(.*outputs=[1-9]")
WAIT_EVERY = 4  # one kill in four (seeded which) waits for background work first
WORK_TIMEOUT = 15.0  # seconds after /health for that work to show; else a bug
MIN_AFTER_WORK = KILLS // WAIT_EVERY  # kills landing after work in their life, at least
BACKGROUND_WORK = {"rocks": "a fold", "archive": "a compaction that wrote output"}


@dataclass
class Flow:
    """A thread submitting points through intake; the model holds acknowledged points only.

    A request that is not acknowledged (503, timeout) is retried unchanged until it is: a
    resend can only repeat points, which the conflict rule makes harmless, and nothing
    unacknowledged is ever recorded.
    """

    cluster: Cluster
    metric: str
    rng: random.Random
    base: int
    late_base: int  # start of the closed hour that late points go to
    model: ReferenceModel = field(default_factory=ReferenceModel)
    requests: int = 0
    retries: int = 0
    last_ack: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def series(self) -> list[SeriesSpec]:
        return [SeriesSpec(self.metric, h, ("chaos:yes",)) for h in HOSTS]

    def sids(self) -> list[int]:
        org = self.cluster.org
        return [series_id(org, self.metric, canonical_tags(s.all_tags)) for s in self.series()]

    def batch(self, i: int) -> list[tuple[SeriesSpec, list[tuple[int, float]]]]:
        out = []
        for s in self.series():
            points = []
            dense, sparse = i % CYCLE == 0, i % CYCLE in SPARSE_RUN
            if dense or sparse:
                # Late-only requests, so rocks stages chunks that are wholly closed (a chunk
                # holding a point of the open hour is not folded before the hour closes).
                # Dense into the first half of the closed hour, sparse into the second.
                n, half = (DENSE_LATE, 0) if dense else (SPARSE_LATE, HOUR // 2)
                for j in range(n):
                    ts = self.late_base + half + (i * n + j) % (HOUR // 2)
                    points.append((ts, self.value()))
            else:
                for j in range(POINTS_PER_SERIES):
                    ts = self.base + (i * POINTS_PER_SERIES + j) % SPAN
                    points.append((ts, self.value()))
            out.append((s, points))
        return out

    def value(self) -> float:
        return self.rng.randint(-(2**20), 2**20) / 1024

    def run(self) -> None:
        try:
            i = 0
            while not self.stop.is_set():
                batch = self.batch(i)
                while True:
                    try:
                        status = self.cluster.submit(batch, timeout=10.0)
                    except httpx.HTTPError:
                        status = 0
                    if status == 202:
                        break
                    self.retries += 1
                    time.sleep(0.2)
                for s, points in batch:
                    for ts, v in points:
                        self.model.add(self.cluster.org, self.metric, s.all_tags, ts, v)
                self.last_ack = time.monotonic()
                self.requests += 1
                i += 1
                self.stop.wait(REQUEST_INTERVAL)
        except BaseException as exc:  # surfaced by finish(): a dead flow proves nothing
            self.error = exc

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name=f"flow-{self.metric}", daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(30.0)
        assert not self.thread.is_alive(), "the flow thread hung"
        if self.error is not None:
            raise self.error

    def flowing(self) -> bool:
        return time.monotonic() - self.last_ack < FLOWING_WINDOW

    # -- what every tier must hold -------------------------------------------------------

    def raw(self) -> dict[tuple[int, int], float]:
        out: dict[tuple[int, int], float] = {}
        for (_, _, tags), points in self.model.points.items():
            sid = series_id(self.cluster.org, self.metric, canonical_tags(tags))
            out |= {(sid, ts): v for ts, v in points.items()}
        return out

    def rollups(self, step: int) -> dict[tuple[int, int], tuple[int, float]]:
        acc: dict[tuple[int, int], list[float]] = defaultdict(list)
        for (sid, ts), v in self.raw().items():
            acc[(sid, ts - ts % step)].append(v)
        return {k: (len(vs), sum(vs)) for k, vs in acc.items()}


def rocks_stats(cluster: Cluster) -> dict[str, Any] | None:
    """Rocks' ``/v1/stats`` counters (they restart from zero with the process), or None."""
    try:
        resp = httpx.get(f"{cluster['rocks'].url}/v1/stats", timeout=0.5)
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    stats: dict[str, Any] = resp.json()
    return stats


def archive_inputs_pending(cluster: Cluster) -> bool:
    """Whether uncompacted ingest objects exist (compacted ones sit under ``d<day>/``)."""
    root = Path(cluster.env["STRATA_DATA_DIR"]) / "archive" / "objects" / "points"
    return any(
        not any(part.startswith("d") and part[1:].isdigit() for part in f.parts)
        for f in root.rglob("*.parquet")
    )


def compactions(log: Path, offset: int) -> int:
    """Scheduled compactions that wrote output, logged after byte ``offset`` of ``log``."""
    with open(log, "rb") as f:
        f.seek(offset)
        return len(COMPACTED.findall(f.read()))


@dataclass
class Nemesis:
    """Kills one store ``KILLS`` times at seeded random moments and restarts it at once.

    For the durable tiers it also notes where in the store's background work each kill
    landed (``phases``) and how much of that work ran (``work``): rocks' counters are read
    from ``/v1/stats`` just before each kill (they start from zero in every life), the
    archive's compactions from its log and its object directory. One kill in ``WAIT_EVERY``
    of a durable tier (``waits``, seeded) first waits for that work (:meth:`await_work`)."""

    cluster: Cluster
    kind: str
    rng: random.Random
    seed: int
    waits: frozenset[int] = frozenset()  # kill numbers that wait for background work
    kills: int = 0
    waited: int = 0
    wait_seconds: list[float] = field(default_factory=list)  # /health -> work, per wait
    while_flowing: int = 0  # the store answered /health and intake acked within 1 s
    during_start: int = 0  # killed before its /health answered (start-up, replay)
    phases: Counter[str] = field(default_factory=Counter)
    work: Counter[str] = field(default_factory=Counter)
    life_log_offset: int = 0  # where the current life's log starts

    def __post_init__(self) -> None:
        if self.kind in BACKGROUND_WORK:
            phase = self.rng.randrange(WAIT_EVERY)
            self.waits = frozenset(range(phase, KILLS, WAIT_EVERY))

    def log_size(self) -> int:
        path = self.cluster[self.kind].log_path
        return path.stat().st_size if path.exists() else 0

    def observe(self, up: bool, seen: dict[str, Any] | None) -> None:
        """Record what the store was doing at the moment it is about to be killed
        (``seen``: rocks' stats read while waiting for a fold, if the read now fails)."""
        if self.kind == "rocks" and up:
            stats = rocks_stats(self.cluster) or seen
            if stats is not None:
                self.add_rocks_work(stats)
                self.phases["with staged chunks on disk"] += int(stats["staged_chunks"] > 0)
                self.phases["after a fold in this life"] += int(stats["folds"] > 0)
                self.phases["after direct block writes"] += int(stats["direct_points"] > 0)
        elif self.kind == "archive":
            done = compactions(self.cluster[self.kind].log_path, self.life_log_offset)
            self.phases["with compaction inputs pending"] += int(
                archive_inputs_pending(self.cluster)
            )
            self.phases["after a compaction in this life"] += int(done > 0)

    def add_rocks_work(self, stats: dict[str, Any]) -> None:
        for key in ("folds", "folded_points", "direct_points"):
            self.work[key] += int(stats[key])

    def moment(self) -> None:
        """Wait for the next kill: half the time a random delay after the store is healthy
        (steady consumption), half the time a random delay after spawn (start-up/replay)."""
        svc = self.cluster[self.kind]
        if self.rng.random() < 0.5:
            svc.wait_healthy(timeout=60.0)
            time.sleep(self.rng.uniform(0.0, 1.5))
        else:
            delay = self.rng.uniform(0.1, 2.5)
            time.sleep(max(0.0, svc.spawned_at + delay - time.monotonic()))

    def await_work(self) -> dict[str, Any] | None:
        """Wait until the store is healthy and its background work made progress in this
        life (rocks: ``folds`` above zero; the archive: a compaction with output logged since
        the restart), polling for up to ``WORK_TIMEOUT`` s; return rocks' stats then."""
        svc = self.cluster[self.kind]
        svc.wait_healthy(timeout=60.0)
        healthy_at = time.monotonic()
        deadline = healthy_at + WORK_TIMEOUT
        stats: dict[str, Any] | None = None
        while True:
            if not svc.alive():
                raise ServiceDied(f"{self.kind} exited:\n{svc.log_tail()}")
            if self.kind == "rocks":
                stats = rocks_stats(self.cluster) or stats
                done = stats is not None and stats["folds"] > 0
            else:
                done = compactions(svc.log_path, self.life_log_offset) > 0
            if done:
                self.waited += 1
                self.wait_seconds.append(time.monotonic() - healthy_at)
                return stats
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"{self.kind} did not complete {BACKGROUND_WORK[self.kind]} within "
                    f"{WORK_TIMEOUT:g} s of becoming healthy after kill {self.kills} (seed "
                    f"{self.seed}; last stats {stats}); its background work stopped, a bug. "
                    f"Log tail:\n{svc.log_tail()}"
                )
            time.sleep(0.1)

    def next_kill(self, flow: Flow) -> None:
        """Wait for the next kill's moment (or for background work) and strike."""
        if self.kills in self.waits:
            self.strike(flow, after_work=True, seen=self.await_work())
        else:
            self.moment()
            self.strike(flow)

    def strike(
        self, flow: Flow, *, after_work: bool = False, seen: dict[str, Any] | None = None
    ) -> None:
        """Kill and restart the store (``after_work``: :meth:`await_work` just saw it up)."""
        svc = self.cluster[self.kind]
        up = after_work or svc.healthy(timeout=0.3)
        flowing = up and flow.flowing()
        self.observe(up, seen)
        svc.kill()
        self.kills += 1
        self.while_flowing += int(flowing)
        self.during_start += int(not up)
        self.life_log_offset = self.log_size()
        svc.start()

    def finish(self, started_log_at: int) -> None:
        """Add the work of the last life (rocks) or of the whole run (archive log)."""
        if self.kind == "rocks":
            stats = rocks_stats(self.cluster)
            if stats is not None:
                self.add_rocks_work(stats)
        elif self.kind == "archive":
            log = self.cluster[self.kind].log_path
            self.work["compactions"] = compactions(log, started_log_at)

    def check_background_work(self) -> None:
        """The kills must have met the background work they were meant to interrupt: at
        least the ``MIN_AFTER_WORK`` that waited for it landed after it."""
        if self.kind in BACKGROUND_WORK:
            assert self.waited >= MIN_AFTER_WORK, f"{self.waited} kills waited for work"
        if self.kind == "rocks":
            assert self.work["folds"] >= MIN_AFTER_WORK, f"rocks folded too little: {self.work}"
            assert self.work["folded_points"] > 0, f"rocks folded nothing: {self.work}"
            assert self.phases["after a fold in this life"] >= MIN_AFTER_WORK, self.phases
            assert self.phases["with staged chunks on disk"] > 0, self.phases
        elif self.kind == "archive":
            assert self.work["compactions"] >= MIN_AFTER_WORK, f"compactions: {self.work}"
            assert self.phases["after a compaction in this life"] >= MIN_AFTER_WORK, self.phases


def tier_matches(cluster: Cluster, kind: str, flow: Flow, start: int, end: int) -> None:
    sids = flow.sids()
    want = flow.raw()
    table = cluster.read(kind, sids, start, end)
    got = {
        (int(s), int(t)): float(v)
        for s, t, v in zip(
            table.column("sid").to_pylist(),
            table.column("ts").to_pylist(),
            table.column("value").to_pylist(),
            strict=True,
        )
    }
    missing, extra = want.keys() - got.keys(), got.keys() - want.keys()
    assert not missing and not extra, f"{kind}: {len(missing)} missing, {len(extra)} extra"
    wrong = [k for k, v in want.items() if got[k] != v]
    assert not wrong, f"{kind}: {len(wrong)} wrong values, e.g. {wrong[:3]}"
    for resolution, step in (("1m", 60), ("1h", 3600)):
        lo, hi = start - start % step, end - end % step
        t = cluster.read(kind, sids, lo, hi, resolution)
        rows = zip(
            t.column("sid").to_pylist(),
            t.column("ts").to_pylist(),
            t.column("count").to_pylist(),
            t.column("sum").to_pylist(),
            strict=True,
        )
        got_r = {(int(s), int(b)): (int(c), float(x)) for s, b, c, x in rows}
        want_r = flow.rollups(step)
        differ = sorted(k for k in want_r.keys() | got_r.keys() if got_r.get(k) != want_r.get(k))
        assert not differ, f"{kind} {resolution}: {len(differ)} rollups differ, e.g. " + str(
            [(k, got_r.get(k), want_r.get(k)) for k in differ[:3]]
        )


@pytest.mark.parametrize("kind", POINT_TIERS)
def test_sigkilled_store_loses_and_doubles_nothing(
    chaos_cluster: Cluster, chaos_seed: int, kind: str
) -> None:
    cluster = chaos_cluster
    rng = random.Random(f"{chaos_seed}-{kind}")
    print(f"chaos seed {chaos_seed}, store {kind}")
    now = int(time.time())
    base = now - SPAN // 2
    late_base = now - now % HOUR - HOUR  # the last closed hour
    flow = Flow(cluster, f"chaos.{kind}", random.Random(rng.random()), base, late_base)
    nemesis = Nemesis(cluster, kind, random.Random(rng.random()), chaos_seed)
    started_log_at = nemesis.life_log_offset = nemesis.log_size()
    flow.start()
    try:
        for _ in range(KILLS):
            nemesis.next_kill(flow)
        cluster[kind].wait_healthy(timeout=60.0)
        time.sleep(2.0)  # points keep flowing into the freshly restarted store; it folds
    finally:
        flow.finish()
    nemesis.finish(started_log_at)
    waits = ", ".join(f"{s:.1f}" for s in nemesis.wait_seconds)
    print(
        f"{kind}: {nemesis.kills} kills, {nemesis.while_flowing} while points flowed, "
        f"{nemesis.during_start} during start-up, {nemesis.waited} after waiting for "
        f"background work (s after /health: {waits or '-'}); {flow.requests} requests "
        f"acknowledged, {flow.retries} retried; kills {dict(nemesis.phases)}; "
        f"work {dict(nemesis.work)}"
    )
    assert nemesis.kills >= KILLS
    assert nemesis.while_flowing > 0, "no kill landed while points flowed: proves nothing"
    assert flow.requests > 0
    nemesis.check_background_work()
    cluster.wait_owning_all(kind)

    start, end = late_base, base + SPAN - 1
    for tier in POINT_TIERS:

        def holds(tier: str = tier) -> None:
            tier_matches(cluster, tier, flow, start, end)

        eventually(
            holds,
            timeout=90.0,
            what=f"{tier} to hold every acknowledged point once (seed {chaos_seed})",
        )

    def query_matches() -> None:
        body, _ = cluster.query(f"sum:{flow.metric}{{*}} by {{host}}", start, end)
        interval = response_interval(body)
        want = expected_rolled(
            flow.model,
            cluster.org,
            flow.metric,
            "sum",
            interval,
            start=start,
            end=end,
            group_by=["host"],
        )
        assert_same(parse_query_response(body), want, f"query after killing {kind}")

    eventually(query_matches, timeout=60.0, what=f"the query to match (seed {chaos_seed})")
