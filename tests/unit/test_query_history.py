"""The query process remembers each point tier's history: a tier that vanishes or restarts
leaves a 503 for the time only it held, never a silently empty answer.

Routing and coverage go through the real :class:`query.stores_client.HttpStoreClient` over a
fake registry whose registrations a test changes between queries (no store is ever read).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from query.app import create_app
from query.history import TierHistory
from query.segments import Segment, Uncovered, plan_segments
from query.settings import QuerySettings
from query.stores_client import HttpStoreClient, RegistryView
from strata.keys import KeyStore, create_keys
from strata.partitioning import partition_for, partition_key
from strata.registry import Registration
from tests.unit.query_fakes import FakeStore, FakeTier

ORG, METRIC = "acme", "cpu"
PART = partition_for(partition_key(ORG, METRIC), 4)
H = 3600
DAY = 86400
NOW = 1_700_000_000 - 1_700_000_000 % DAY + 12 * H + 17 * 60 + 23
ROCKS_LO = NOW - NOW % DAY - 14 * DAY
ARCHIVE_LO = ROCKS_LO - 60 * DAY
# A day well inside the archive's history, older than everything rocks keeps.
OLD = (ROCKS_LO - 30 * DAY, ROCKS_LO - 29 * DAY - 1)


class Registry:
    """A registry the test edits: ``regs`` is what ``discover`` answers right now."""

    def __init__(self) -> None:
        self.regs: dict[str, Registration] = {}

    def put(self, kind: str, lo: int | None, hi: int = NOW) -> None:
        self.regs[kind] = Registration(
            kind=kind,
            instance=f"{kind}-1",
            address=f"http://{kind}-1:1",
            topic="points",
            partition_count=4,
            partitions=[0, 1, 2, 3],
            coverage={} if lo is None else {PART: [lo, hi]},
            updated=NOW,
        )

    def discover(self, kind: str | None = None) -> list[Registration]:
        return [r for r in self.regs.values() if kind is None or r.kind == kind]


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.put("ram", NOW - 3 * H)
    reg.put("rocks", ROCKS_LO)
    reg.put("archive", ARCHIVE_LO, NOW - 2 * H)
    return reg


def make_client(registry: Registry) -> HttpStoreClient:
    view = RegistryView(
        registry, ttl=0.0, topics={k: "points" for k in ("ram", "rocks", "archive")}
    )
    never = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    return HttpStoreClient(view, never, clock=lambda: NOW)


def plan(client: HttpStoreClient, start: int, end: int) -> list[Segment]:
    partition, sources = client.tier_sources(ORG, METRIC)
    return plan_segments(start, end, "1h", sources, partition=partition)


def test_archive_seen_then_unregistered_is_a_503_naming_it(registry: Registry) -> None:
    client = make_client(registry)
    assert {s.source.tier for s in plan(client, *OLD)} == {"archive"}
    del registry.regs["archive"]  # its registration lapsed: crashed or restarting
    with pytest.raises(Uncovered) as info:
        plan(client, *OLD)
    msg = str(info.value)
    assert f"archive unavailable for partition {PART} [{OLD[0]}, {OLD[1]}]" in msg
    assert "retry later" in msg


def test_archive_seen_then_advertising_nothing_is_a_503(registry: Registry) -> None:
    client = make_client(registry)
    plan(client, *OLD)
    registry.put("archive", None)  # restarted, still listing its objects
    with pytest.raises(Uncovered, match=f"archive unavailable for partition {PART}"):
        plan(client, *OLD)
    # A range the remaining tiers hold is still answered.
    assert {s.source.tier for s in plan(client, NOW - DAY - NOW % H, NOW)} == {"ram", "rocks"}


def test_history_is_seeded_from_what_is_registered_at_start(registry: Registry) -> None:
    client = make_client(registry)
    client.remember_coverage()  # what query.__main__ does before serving
    registry.put("archive", None)
    with pytest.raises(Uncovered, match="archive unavailable"):
        plan(client, *OLD)


def test_archive_never_seen_means_before_history_is_empty(registry: Registry) -> None:
    del registry.regs["archive"]
    client = make_client(registry)
    assert plan(client, *OLD) == []
    registry.put("archive", None)  # registered, never advertised anything
    assert plan(client, *OLD) == []


def test_rocks_down_but_archive_covers_is_answered(registry: Registry) -> None:
    client = make_client(registry)
    plan(client, NOW - 5 * DAY, NOW)
    del registry.regs["rocks"]
    start, end = NOW - NOW % H - 5 * DAY, NOW - NOW % H - 1
    segs = plan(client, start, end)
    assert {s.source.tier for s in segs} == {"archive", "ram"}
    assert min(s.start for s in segs) == start and max(s.end for s in segs) == end


def test_history_dropped_by_retention_is_empty_again(registry: Registry) -> None:
    """The tier's latest advertisement wins: after retention moved its start, the expired
    range is before history (empty), even while the tier is restarting."""
    client = make_client(registry)
    plan(client, *OLD)
    registry.put("archive", OLD[1] + 1 - (OLD[1] + 1) % H, NOW - 2 * H)
    assert plan(client, *OLD) == []
    registry.put("archive", None)
    assert plan(client, *OLD) == []


def test_tier_history_keys_by_kind_partition_and_topic() -> None:
    history = TierHistory()
    history.observe("archive", 3, "points", 100)
    history.observe("archive", 3, "points", 200)  # the latest advertisement wins
    assert history.lo("archive", 3, "points") == 200
    assert history.lo("archive", 3, "other") is None
    assert history.lo("archive", 2, "points") is None
    assert history.lo("rocks", 3, "points") is None


# -- whole query API: ranges with nothing to serve are 200 with empty series -----------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, FakeStore, dict[str, str]]]:
    keys = create_keys(tmp_path / "keys.json", "o")
    store = FakeStore(
        tiers={
            "ram": FakeTier((NOW - 3 * H, NOW)),
            "rocks": FakeTier((ROCKS_LO, NOW)),
            "archive": FakeTier((ARCHIVE_LO, NOW - DAY)),
        }
    )
    store.add("o", "m", ["host:a"], [(NOW - 600, 1.0), (ROCKS_LO + H, 2.0)])
    app = create_app(QuerySettings(), store, KeyStore(tmp_path / "keys.json", check_every=0.0))
    headers = {"DD-API-KEY": keys.api_key, "DD-APPLICATION-KEY": keys.app_key}
    with TestClient(app) as client:
        yield client, store, headers


@pytest.mark.parametrize(
    "start,end",
    [
        (NOW + DAY, NOW + 2 * DAY),  # entirely in the future, hour resolution
        (NOW + H, NOW + H + 300),  # entirely in the future, raw
        (ARCHIVE_LO - 40 * DAY, ARCHIVE_LO - 10 * DAY),  # entirely before history
        (ARCHIVE_LO - 600, ARCHIVE_LO - 1),
    ],
)
def test_future_and_before_history_ranges_are_200_and_empty(
    api: tuple[TestClient, FakeStore, dict[str, str]], start: int, end: int
) -> None:
    client, _, headers = api
    params = {"from": start, "to": end, "query": "avg:m{*}"}
    resp = client.get("/api/v1/query", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["series"] == []


def test_remembered_archive_restarting_is_a_503_with_retry_after(
    api: tuple[TestClient, FakeStore, dict[str, str]],
) -> None:
    client, store, headers = api
    store.tiers["archive"] = FakeTier(None, remembered=ARCHIVE_LO)
    params = {"from": ROCKS_LO - 2 * DAY, "to": NOW, "query": "avg:m{*}"}
    resp = client.get("/api/v1/query", params=params, headers=headers)
    assert resp.status_code == 503, resp.text
    assert resp.headers["Retry-After"] == "1"
    [message] = resp.json()["errors"]
    assert f"archive unavailable for partition 1 [{ROCKS_LO - 2 * DAY}, " in message
    # Older than the archive's remembered history: still empty, not an error.
    params = {"from": ARCHIVE_LO - 2 * DAY, "to": ARCHIVE_LO - DAY, "query": "avg:m{*}"}
    resp = client.get("/api/v1/query", params=params, headers=headers)
    assert resp.status_code == 200 and resp.json()["series"] == []
