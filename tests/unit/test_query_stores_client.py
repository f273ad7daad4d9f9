"""Routing by the registry and the HTTP client's encoding of the read-API contract.

The HTTP side uses ``httpx.MockTransport`` (a pure unit test of request/response encoding);
the end-to-end test against real store processes lives with the integration tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import numpy as np
import pyarrow as pa
import pytest

from query.routing import NoOwner, owner
from query.segments import TierSource
from query.stores_client import (
    ARROW_STREAM,
    HttpStoreClient,
    PointColumns,
    RegistryView,
    StoreReplyError,
    StoreServerError,
    StoreUnavailable,
    decode_points,
    decode_rollups,
)
from strata.partitioning import partition_for, partition_key
from strata.registry import Registration
from strata.rollup import Rollups

ORG, METRIC = "acme", "cpu"
PART = partition_for(partition_key(ORG, METRIC), 4)


def reg(kind: str, name: str, partitions: list[int], updated: float = 1.0) -> Registration:
    return Registration(
        kind=kind,
        instance=name,
        address=f"http://{name}:1",
        topic="t",
        partition_count=4,
        partitions=partitions,
        # indexes caught up on every partition; point tiers' coverage is set per test
        coverage={p: [0, 2**40] for p in partitions} if kind in ("tags", "inverted") else {},
        updated=updated,
    )


class FakeDiscovery:
    def __init__(self, regs: list[Registration]) -> None:
        self.regs = regs
        self.calls = 0

    def discover(self, kind: str | None = None) -> list[Registration]:
        self.calls += 1
        return [r for r in self.regs if kind is None or r.kind == kind]


def test_owner_picks_the_partition_holder() -> None:
    others = [p for p in range(4) if p != PART]
    regs = [reg("ram", "r1", others), reg("ram", "r2", [PART]), reg("tags", "t1", [PART])]
    assert owner(regs, "ram", ORG, METRIC).instance == "r2"


def test_owner_prefers_freshest_during_rebalance() -> None:
    regs = [reg("ram", "old", [PART], 1.0), reg("ram", "new", [PART], 2.0)]
    assert owner(regs, "ram", ORG, METRIC).instance == "new"


def test_no_owner_names_kind_and_partition() -> None:
    regs = [reg("ram", "r1", [p for p in range(4) if p != PART]), reg("ram", "r0", [], 0)]
    with pytest.raises(NoOwner, match=f"no ram store instance owns partition {PART}"):
        owner(regs, "ram", ORG, METRIC)
    with pytest.raises(NoOwner, match="any partition"):
        owner([], "inverted", ORG, METRIC)


def test_registry_view_caches_for_ttl() -> None:
    now = [0.0]
    disc = FakeDiscovery([reg("ram", "r", [PART])])
    view = RegistryView(disc, ttl=1.0, clock=lambda: now[0])
    view.instances("ram")
    view.instances("ram")
    assert disc.calls == 1
    now[0] = 1.5
    view.instances("ram")
    assert disc.calls == 2


def arrow_bytes(sid: list[int], ts: list[int], value: list[float]) -> bytes:
    batch = pa.record_batch(
        [pa.array(sid, pa.uint64()), pa.array(ts, pa.int64()), pa.array(value, pa.float64())],
        names=["sid", "ts", "value"],
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler) -> HttpStoreClient:
    regs = [reg(k, f"{k}-1", [0, 1, 2, 3]) for k in ("ram", "tags", "inverted")]
    regs.append(reg("tags", "tags-2", []))
    view = RegistryView(FakeDiscovery(regs), ttl=0.0)
    return HttpStoreClient(view, httpx.Client(transport=httpx.MockTransport(handler)))


def test_http_client_speaks_the_contract() -> None:
    big = 2**64 - 1
    seen: list[tuple[str, str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else dict(request.url.params)
        seen.append((request.url.host, request.url.path, body))
        if request.url.path == "/v1/resolve":
            sids = np.array([5, big], dtype="<u8").tobytes()
            return httpx.Response(200, content=sids)
        if request.url.path == "/v1/series/lookup":
            return httpx.Response(
                200,
                json={"series": [{"sid": big, "metric": METRIC, "type": "gauge", "tags": ["a:b"]}]},
            )
        if request.url.path == "/v1/points/read":
            return httpx.Response(
                200, content=arrow_bytes([big], [10], [1.5]), headers={"content-type": ARROW_STREAM}
            )
        if request.url.path == "/v1/metrics":
            names = ["b", "a"] if request.url.host == "tags-1" else ["a", "c"]
            return httpx.Response(200, json={"metrics": names})
        if request.url.path == f"/v1/metrics/{METRIC}/tags":
            return httpx.Response(200, json={"tags": ["host:x"]})
        return httpx.Response(404)

    client = make_client(handler)
    sids = client.resolve(ORG, METRIC, 0, 100, ("env:prod",), ("host:a",))
    assert sids.dtype == np.uint64 and sids.tolist() == [5, big]
    assert client.lookup(ORG, METRIC, sids) == {big: ("a:b",)}
    partition, [ram] = client.tier_sources(ORG, METRIC)
    assert partition == PART and ram.tier == "ram" and ram.coverage is None
    pts = client.read_tier(ram, sids, 0, 100, "raw")
    assert isinstance(pts, PointColumns)
    assert pts.sid.tolist() == [big, big] and pts.ts.tolist() == [10, 10]
    # fanned out, merged, sorted; tags-2 serves no partition, so what it holds is stale
    assert client.list_metrics(ORG, 0) == ["a", "b"]
    assert client.metric_tags(ORG, METRIC, 0) == ["host:x"]
    assert seen[0] == (
        "inverted-1",
        "/v1/resolve",
        {
            "org": ORG,
            "metric": METRIC,
            "from": 0,
            "to": 100,
            "include": ["env:prod"],
            "exclude": ["host:a"],
            "partition": PART,
        },
    )
    lookup = {"org": ORG, "sids": [5, big], "partition": PART}
    assert seen[1] == ("tags-1", "/v1/series/lookup", lookup)
    read = {"sids": [5, big], "from": 0, "to": 100, "partition": PART}
    assert seen[2] == ("ram-1", "/v1/points/read", read)


def test_http_errors_are_classified() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(StoreUnavailable, match="unreachable"):
        make_client(refuse).resolve(ORG, METRIC, 0, 1, (), ())
    with pytest.raises(StoreUnavailable, match="not ready"):
        make_client(lambda r: httpx.Response(503)).resolve(ORG, METRIC, 0, 1, (), ())
    with pytest.raises(StoreServerError, match="answered 500"):
        make_client(lambda r: httpx.Response(500, text="boom")).resolve(ORG, METRIC, 0, 1, (), ())
    with pytest.raises(StoreReplyError, match="7 bytes"):
        make_client(lambda r: httpx.Response(200, content=b"1234567")).resolve(
            ORG, METRIC, 0, 1, (), ()
        )
    with pytest.raises(StoreReplyError, match="invalid JSON"):
        make_client(lambda r: httpx.Response(200, content=b"{")).list_metrics(ORG, 0)


def test_an_index_catching_up_on_the_partition_is_unavailable() -> None:
    """A just-assigned index instance advertises no coverage until it reached the end of
    the partition: asking it would give part of the series, silently."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, content=b"")

    inverted = reg("inverted", "inv-new", [0, 1, 2, 3])
    inverted.coverage = {p: c for p, c in inverted.coverage.items() if p != PART}
    view = RegistryView(FakeDiscovery([inverted]), ttl=0.0)
    client = HttpStoreClient(view, httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(StoreUnavailable, match=f"inv-new is still catching up on partition {PART}"):
        client.resolve(ORG, METRIC, 0, 10, (), ())
    assert calls == []


def test_no_registered_owner_is_unavailable() -> None:
    view = RegistryView(FakeDiscovery([]), ttl=0.0)
    never = httpx.MockTransport(lambda r: httpx.Response(500))
    client = HttpStoreClient(view, httpx.Client(transport=never))
    assert client.tier_sources(ORG, METRIC) == (None, [])
    with pytest.raises(StoreUnavailable, match="no tags store"):
        client.list_metrics(ORG, 0)


def test_decode_points_rejects_garbage_and_wrong_columns() -> None:
    with pytest.raises(StoreReplyError, match="unreadable Arrow"):
        decode_points(b"not arrow", source="ram")
    batch = pa.record_batch([pa.array([1], pa.int64())], names=["x"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    with pytest.raises(StoreReplyError, match="sid/ts/value"):
        decode_points(bytes(sink.getvalue().to_pybytes()), source="ram")
    empty = arrow_bytes([], [], [])
    assert decode_points(empty, source="ram").sid.size == 0


def rollup_bytes(sid: list[int], bucket: list[int], count: list[int]) -> bytes:
    n = len(sid)
    f = [float(c) for c in count]
    batch = pa.record_batch(
        [
            pa.array(sid, pa.uint64()),
            pa.array(bucket, pa.int64()),
            pa.array(count, pa.int64()),
            pa.array(f, pa.float64()),
            pa.array(f, pa.float64()),
            pa.array(f, pa.float64()),
            pa.array(f, pa.float64()),
            pa.array([b + 1 for b in bucket][:n], pa.int64()),
        ],
        names=["sid", "ts", "count", "sum", "min", "max", "last", "last_ts"],
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def test_tier_sources_per_kind_with_coverage_and_ram_margin() -> None:
    now = 10_000.0
    regs = [
        reg("ram", "ram-1", [PART], updated=now - 3),
        reg("rocks", "rocks-1", [PART]),
        reg("archive", "arch-1", [p for p in range(4) if p != PART]),  # owns others only
    ]
    regs[0].coverage = {PART: [5000, 10_000]}
    regs[1].coverage = {PART: [100, 10_000], 99: "garbage"}  # type: ignore[dict-item]
    view = RegistryView(FakeDiscovery(regs), ttl=0.0)
    never = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    client = HttpStoreClient(view, never, coverage_margin_seconds=30, clock=lambda: now)
    partition, sources = client.tier_sources(ORG, METRIC)
    assert partition == PART
    # RAM's sliding window start moved 3 s since publishing; plus the 30 s margin.
    assert sources == [
        TierSource("ram", "ram-1", "http://ram-1:1", (5033, 10_000), partition=PART),
        TierSource("rocks", "rocks-1", "http://rocks-1:1", (100, 10_000), partition=PART),
    ]


def test_rollup_reads_send_the_resolution_and_decode() -> None:
    seen: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, content=rollup_bytes([7, 7], [0, 3600], [2, 3]))

    client = make_client(handler)
    src = TierSource("rocks", "rocks-1", "http://rocks-1:1", (0, 1))
    got = client.read_tier(src, np.array([7], np.uint64), 0, 7199, "1h")
    assert isinstance(got, Rollups)
    assert got.bucket.tolist() == [0, 3600] and got.count.tolist() == [2, 3]
    assert seen == [{"sids": [7], "from": 0, "to": 7199, "resolution": "1h"}]


def test_tier_read_failures_are_classified_for_fallback() -> None:
    src = TierSource("rocks", "rocks-1", "http://rocks-1:1", (0, 1))
    sids = np.array([1], np.uint64)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(StoreUnavailable, match=r"rocks store rocks-1 .* unreachable"):
        make_client(refuse).read_tier(src, sids, 0, 1, "raw")
    with pytest.raises(StoreServerError, match="answered 502"):
        make_client(lambda r: httpx.Response(502)).read_tier(src, sids, 0, 1, "raw")
    # A 4xx is a contract violation, not an outage: no fallback.
    with pytest.raises(StoreReplyError, match="answered 400") as info:
        make_client(lambda r: httpx.Response(400)).read_tier(src, sids, 0, 1, "raw")
    assert not isinstance(info.value, StoreServerError)


def test_decode_rollups_rejects_points_shape() -> None:
    with pytest.raises(StoreReplyError, match="sid/ts/count/sum/min/max/last/last_ts"):
        decode_rollups(arrow_bytes([1], [2], [3.0]), source="rocks")
    with pytest.raises(StoreReplyError, match="unreadable Arrow"):
        decode_rollups(b"nope", source="rocks")
    assert len(decode_rollups(rollup_bytes([], [], []), source="rocks")) == 0


def test_instances_of_another_pipeline_are_ignored() -> None:
    """Two pipelines sharing one Redis: only instances consuming our topics are used."""
    ours = reg("ram", "ram-ours", [PART])
    theirs = reg("ram", "ram-theirs", [PART])
    theirs.topic = "other-pipeline.points"
    view = RegistryView(FakeDiscovery([theirs, ours]), ttl=0.0, topics={"ram": "t"})
    assert [r.instance for r in view.instances("ram")] == ["ram-ours"]
    # Kinds without an expected topic are not filtered.
    assert len(RegistryView(FakeDiscovery([theirs, ours]), ttl=0.0).instances("ram")) == 2
