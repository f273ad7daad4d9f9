"""Stitching over fake tiers: fallback on failures, tiers reported, rollup path == raw path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from query.app import create_app
from query.language import parse_query
from query.plan import execute
from query.segments import Uncovered
from query.settings import QuerySettings
from query.stitch import read_stitched
from query.stores_client import StoreReplyError, StoreServerError, StoreUnavailable
from strata.keys import KeyStore, create_keys
from tests.unit.query_fakes import FakeStore, FakeTier

H = 3600
DAY = 86400
NOW = 1_700_000_000 - 1_700_000_000 % DAY + 12 * H + 17 * 60 + 23


def three_tiers() -> FakeStore:
    """Every hour of the last 20 days has points; each tier holds its coverage."""
    store = FakeStore(
        tiers={
            "ram": FakeTier((NOW - 3 * H, NOW)),
            "rocks": FakeTier((NOW - NOW % DAY - 14 * DAY, NOW)),
            "archive": FakeTier((NOW - 30 * DAY, NOW - DAY)),
        }
    )
    ts = np.arange(NOW - 20 * DAY, NOW, 900)
    store.add("o", "m", ["host:a"], [(int(t), float(t % 7)) for t in ts])
    store.add("o", "m", ["host:b"], [(int(t) + 1, float(t % 11) - 3) for t in ts])
    return store


def run(store: FakeStore, start: int, end: int, agg: str = "avg") -> dict[int, float]:
    result = execute(
        parse_query(f"{agg}:m{{*}}"), "o", start, end, store, max_points=300, max_series=10
    )
    if not result.series:
        return {}
    [s] = result.series
    return dict(zip(s.ts.tolist(), s.value.tolist(), strict=True))


def raw_reference(store: FakeStore, start: int, end: int, agg: str = "avg") -> dict[int, float]:
    """The same query against one RAM tier holding everything, forced down the raw path."""
    single = FakeStore(series=store.series, points=store.points)
    result = execute(
        parse_query(f"{agg}:m{{*}}"), "o", start, end, single, max_points=300, max_series=10
    )
    [s] = result.series
    return dict(zip(s.ts.tolist(), s.value.tolist(), strict=True))


@pytest.mark.parametrize("agg", ["avg", "sum", "min", "max"])
def test_thirty_day_query_over_three_tiers_equals_one_tier(agg: str) -> None:
    store = three_tiers()
    start, end = NOW - 25 * DAY + 17, NOW
    got = run(store, start, end, agg)
    want = raw_reference(store, start, end, agg)
    assert got.keys() == want.keys()
    assert all(got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-9) for k in want)
    assert {r[0] for r in store.reads} == {"ram", "rocks", "archive"}


def test_fifteen_day_query_asks_rollups_only() -> None:
    store = three_tiers()
    end = NOW - NOW % H - 1
    run(store, end + 1 - 15 * DAY, end)
    assert {r[1] for r in store.reads} == {"1h"}


def test_rocks_down_archive_serves_and_tiers_are_reported() -> None:
    store = three_tiers()
    store.tiers["rocks"].error = StoreUnavailable("rocks-1 unreachable")
    store.tiers["archive"] = FakeTier((NOW - 30 * DAY, NOW - 2 * H))
    start, end = NOW - NOW % H - 2 * DAY, NOW - NOW % H - 1
    got = run(store, start, end)
    assert got == pytest.approx(raw_reference(store, start, end))
    sids = np.unique(store.resolve("o", "m", start, end, (), ()))
    stitched = read_stitched(store, "o", "m", sids, start, end, 1800)
    assert stitched.tiers == ("archive", "ram")
    # The failed tier was asked once per attempt, then skipped.
    assert [r[0] for r in store.reads].count("rocks") == 2


def test_server_error_falls_back_but_a_contract_violation_does_not() -> None:
    store = three_tiers()
    start, end = NOW - 2 * H, NOW
    store.tiers["ram"].error = StoreServerError("ram answered 500")
    assert run(store, start, end) == pytest.approx(raw_reference(store, start, end))
    store.tiers["ram"].error = StoreReplyError("ram answered 400")
    with pytest.raises(StoreReplyError, match="400"):
        run(store, start, end)


def test_ram_restarted_and_no_other_tier_is_uncovered() -> None:
    store = FakeStore(tiers={"ram": FakeTier(None)})
    store.add("o", "m", [], [(NOW, 1.0)])
    with pytest.raises(Uncovered, match="partition 1"):
        run(store, NOW - 60, NOW)


def test_every_tier_failing_is_uncovered_with_reasons() -> None:
    store = three_tiers()
    for name in ("ram", "rocks"):
        store.tiers[name].error = StoreUnavailable(f"{name} down")
    with pytest.raises(Uncovered, match="ram: ram down; rocks: rocks down"):
        run(store, NOW - 600, NOW)


def test_no_series_reads_no_tier() -> None:
    store = three_tiers()
    result = execute(
        parse_query("avg:nothing{*}"), "o", 0, NOW, store, max_points=300, max_series=9
    )
    assert result.series == [] and result.tiers == () and store.reads == []


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, FakeStore, dict[str, str]]]:
    keys = create_keys(tmp_path / "keys.json", "o")
    store = three_tiers()
    app = create_app(
        QuerySettings(retry_after_seconds=3),
        store,
        KeyStore(tmp_path / "keys.json", check_every=0.0),
    )
    headers = {"DD-API-KEY": keys.api_key, "DD-APPLICATION-KEY": keys.app_key}
    with TestClient(app) as client:
        yield client, store, headers


def test_tiers_header_names_the_tiers_that_served(
    api: tuple[TestClient, FakeStore, dict[str, str]],
) -> None:
    client, _, headers = api
    params = {"from": NOW - 20 * DAY, "to": NOW, "query": "avg:m{*}"}
    resp = client.get("/api/v1/query", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Strata-Tiers"] == "archive,rocks,ram"
    params["from"] = NOW - 600
    resp = client.get("/api/v1/query", params=params, headers=headers)
    assert resp.headers["X-Strata-Tiers"] == "ram"


def test_uncovered_is_a_503_with_retry_after(
    api: tuple[TestClient, FakeStore, dict[str, str]],
) -> None:
    client, store, headers = api
    store.tiers["rocks"].error = StoreUnavailable("rocks-1 unreachable")
    params = {"from": NOW - 5 * H, "to": NOW, "query": "avg:m{*}"}
    resp = client.get("/api/v1/query", params=params, headers=headers)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "3"
    [message] = resp.json()["errors"]
    assert "partition 1" in message and "rocks-1 unreachable" in message
