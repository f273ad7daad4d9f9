"""Heartbeat pieces without servers: watermarks from markers, intake's marker time and emit
time, the gate over registrations, the lag table and the emitter's request."""

from __future__ import annotations

import json

import httpx
import pytest

from heartbeat.emitter import HEARTBEAT_METRIC, Emitter, heartbeat_payload
from heartbeat.gate import PipelineGate, completeness
from intake.heartbeats import InFlight, heartbeat_emit_ms
from intake.parse import PayloadError
from stores.runtime.watermarks import MAX_PENDING, Watermark, Watermarks, as_registry
from strata.partitioning import partition_for, partition_key
from strata.registry import Registration, pipeline_lag

# -- store watermarks -----------------------------------------------------------------------


def test_a_marker_counts_once_everything_before_it_is_durable() -> None:
    w = Watermarks()
    w.seen(0, 10, Watermark(1000, 900))
    w.seen(0, 20, Watermark(2000, 1900))
    w.seen(1, 5, Watermark(1500, 1400))
    assert w.snapshot() == {}  # read, not yet durable
    w.durable({0: 15})
    assert w.snapshot() == {0: Watermark(1000, 900)}
    w.durable({0: 21, 1: 5})  # partition 1: offset 5 itself is not durable yet
    assert w.snapshot() == {0: Watermark(2000, 1900)}
    w.durable({1: 6})
    assert as_registry(w.snapshot()) == {0: [2000, 1900], 1: [1500, 1400]}


def test_watermarks_never_go_back_and_ignore_rereads() -> None:
    w = Watermarks()
    w.seen(0, 10, Watermark(5000, 1))
    w.durable({0: 11})
    w.seen(0, 12, Watermark(4000, 2))  # an older marker (clock skew between intakes)
    w.durable({0: 13})
    assert w.snapshot()[0].marker_ms == 5000
    w.seen(0, 20, Watermark(6000, 3))
    w.seen(0, 20, Watermark(6000, 3))  # the batch was re-read after a rewind
    w.seen(0, 15, Watermark(5500, 3))
    w.durable({0: 21})
    assert w.snapshot()[0].marker_ms == 6000


def test_forgotten_partitions_have_no_watermark_and_pending_is_bounded() -> None:
    w = Watermarks()
    w.seen(3, 1, Watermark(100, 1))
    w.durable({3: 2})
    w.forget([3])
    assert w.snapshot() == {}
    for i in range(MAX_PENDING + 5):
        w.seen(0, i, Watermark(i, i))
    w.durable({0: MAX_PENDING + 5})
    assert w.snapshot()[0].marker_ms == MAX_PENDING + 4


# -- intake ---------------------------------------------------------------------------------


def test_marker_time_is_the_oldest_submission_still_in_flight() -> None:
    f = InFlight()
    assert f.complete_before(100.0) == 100.0
    a = f.start(50.0)
    b = f.start(60.0)
    assert f.complete_before(100.0) == 50.0 and len(f) == 2
    f.end(a)
    assert f.complete_before(100.0) == 60.0
    f.end(b)
    assert f.complete_before(100.0) == 100.0


def test_emit_time_from_v1_and_v2_bodies() -> None:
    assert heartbeat_emit_ms({"series": [{"points": [{"value": 12.0}]}]}, default=1) == 12
    assert heartbeat_emit_ms({"series": [{"points": [[5, 34]]}]}, default=1) == 34
    assert heartbeat_emit_ms({}, default=7) == 7
    for bad in ("x", -1, True, None):
        with pytest.raises(PayloadError, match=r"series\[0\]\.points\[0\]"):
            heartbeat_emit_ms({"series": [{"points": [{"value": bad}]}]}, default=1)


# -- the gate --------------------------------------------------------------------------------

ORG = "acme"
COUNT = 4


def reg(kind: str, name: str, marks: dict[int, int], partitions: list[int]) -> Registration:
    return Registration(
        kind=kind,
        instance=name,
        address="http://x",
        topic="t",
        partition_count=COUNT,
        partitions=partitions,
        watermarks={p: [m, m - 5] for p, m in marks.items()},
    )


class View:
    def __init__(self, regs: list[Registration]) -> None:
        self.regs = regs

    def instances(self, kind: str) -> list[Registration]:
        return [r for r in self.regs if r.kind == kind]


def name_in(partition: int) -> str:
    n = 0
    while partition_for(partition_key(ORG, f"m{n}"), COUNT) != partition:
        n += 1
    return f"m{n}"


def pipeline(ram: dict[int, int]) -> View:
    everything = list(range(COUNT))
    idx = {p: 90_000 for p in everything}
    return View(
        [
            reg("ram", "ram-1", ram, everything),
            reg("rocks", "rocks-1", {p: 10_000 for p in everything}, everything),
            reg("tags", "tags-1", idx, everything),
            reg("inverted", "inv-1", idx, everything),
        ]
    )


def test_only_the_partition_holding_a_metric_gates_it() -> None:
    view = pipeline({0: 50_000, 1: 80_000, 2: 80_000, 3: 80_000})  # partition 0 lags
    gate = PipelineGate(view)
    assert gate(ORG, [name_in(1)]) == 80  # ram (not rocks) and the indexes: min = ram
    assert gate(ORG, [name_in(0)]) == 50
    assert gate(ORG, [name_in(1), name_in(0)]) == 50
    c = completeness(view, ORG, name_in(2))
    assert c.partition == 2
    assert c.watermarks == {"ram": 80_000, "tags": 90_000, "inverted": 90_000}


def test_unknown_when_an_owner_or_a_watermark_is_missing() -> None:
    view = pipeline({1: 80_000})  # ram owns 0..3 but has no marker for 0 yet
    assert PipelineGate(view)(ORG, [name_in(0)]) is None
    view.regs = [r for r in view.regs if r.kind != "inverted"]
    assert PipelineGate(view)(ORG, [name_in(1)]) is None


def test_rocks_gates_when_no_ram_instance_runs() -> None:
    view = pipeline({})
    view.regs = [r for r in view.regs if r.kind != "ram"]
    assert PipelineGate(view)(ORG, [name_in(2)]) == 10


def test_percentile_metrics_gate_on_the_sketch_tiers() -> None:
    everything = list(range(COUNT))
    view = pipeline({p: 80_000 for p in everything})
    view.regs += [
        reg("ram-sketches", "ram-1", {p: 30_000 for p in everything}, everything),
        reg("rocks-sketches", "rocks-1", {p: 5_000 for p in everything}, everything),
    ]
    gate = PipelineGate(view)
    assert gate(ORG, [name_in(1)]) == 80  # points only: the sketch stores do not matter
    assert gate(ORG, [], [name_in(1)]) == 30  # the RAM sketch store, not rocks
    assert gate(ORG, [name_in(1)], [name_in(1)]) == 30
    view.regs = [r for r in view.regs if r.kind != "ram-sketches"]
    assert gate(ORG, [], [name_in(1)]) == 5  # rocks when no RAM sketch store runs
    view.regs = [r for r in view.regs if r.kind != "rocks-sketches"]
    assert gate(ORG, [name_in(1)], [name_in(1)]) is None  # no sketch owner: unknown


def test_registry_errors_make_the_gate_unknown() -> None:
    class Broken:
        def instances(self, kind: str) -> list[Registration]:
            raise ConnectionError("redis down")

    seen: list[Exception] = []
    assert PipelineGate(Broken(), on_error=seen.append)(ORG, ["m"]) is None
    assert isinstance(seen[0], ConnectionError)


def test_lag_per_store_and_partition() -> None:
    rows = pipeline_lag([reg("ram", "ram-1", {0: 95_000}, [0, 1])], now=100.0)
    assert [(r.partition, r.lag_seconds) for r in rows] == [(0, 5.0), (1, None)]


# -- the emitter -------------------------------------------------------------------------


def test_emitter_posts_a_v2_heartbeat_with_the_key_and_counts_failures() -> None:
    seen: list[httpx.Request] = []
    status = [202]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status[0], json={"errors": []})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    e = Emitter("http://intake:1/", "k3y", clock=lambda: 1700000000.25, http=http)
    assert e.beat()
    body = json.loads(seen[0].content)
    assert seen[0].url.path == "/api/v2/series" and seen[0].headers["dd-api-key"] == "k3y"
    assert body == json.loads(heartbeat_payload(1700000000.25))
    assert body["series"][0]["metric"] == HEARTBEAT_METRIC
    assert body["series"][0]["points"] == [{"timestamp": 1700000000, "value": 1700000000250}]
    status[0] = 503
    assert not e.beat()
    assert (e.stats.sent, e.stats.failed) == (1, 1) and "503" in e.stats.last_error
    assert "k3y" not in e.stats.last_error
