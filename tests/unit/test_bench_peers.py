"""The hand-written peer encoders of bench/bench_peers.py, checked by independent decoders.

Remote write: a generic protobuf wire-format reader written here from the encoding rules
(varint, fixed64, length-delimited), a snappy block decoder written from the format
description, hand-assembled byte vectors, and (when the protobuf package is installed)
byte identity with Google's serializer for the same message. Line protocol: exact lines for
known inputs, and a parser written from the escaping rules reading random values back.
No peer server is needed.
"""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.machine import keep_logs
from bench.peers import line_protocol, plan, remote_write
from bench.peers.systems import incomplete
from bench.workload import CPU_FIELDS

# --- an independent protobuf wire reader and snappy decoder ------------------------------


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of every field in a message, in order."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    value: Any
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = read_varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((number, wire, value))
    assert pos == len(buf), "message overran its end"
    return out


def decode_write_request(
    buf: bytes,
) -> list[tuple[list[tuple[str, str]], list[tuple[float, int]]]]:
    """WriteRequest -> [(labels, [(value, timestamp ms)])] by the prompb field numbers."""
    series = []
    for number, wire, ts_msg in fields(buf):
        assert (number, wire) == (1, 2)
        labels: list[tuple[str, str]] = []
        samples: list[tuple[float, int]] = []
        for n, w, v in fields(ts_msg):
            if (n, w) == (1, 2):
                parts = {fn: fv.decode() for fn, fw, fv in fields(v) if fw == 2}
                labels.append((parts.get(1, ""), parts.get(2, "")))
            else:
                assert (n, w) == (2, 2)
                value, ts = 0.0, 0
                for sn, sw, sv in fields(v):
                    if sn == 1:
                        assert sw == 1
                        value = struct.unpack("<d", sv)[0]
                    else:
                        assert (sn, sw) == (2, 0)
                        ts = sv - (1 << 64) if sv >= 1 << 63 else sv
                samples.append((value, ts))
        series.append((labels, samples))
    return series


def snappy_decompress(buf: bytes) -> bytes:
    """Snappy block format: varint length, then literals and back-references."""
    size, pos = read_varint(buf, 0)
    out = bytearray()
    while pos < len(buf):
        tag = buf[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            n = tag >> 2
            if n >= 60:
                extra = n - 59
                n = int.from_bytes(buf[pos : pos + extra], "little")
                pos += extra
            n += 1
            out += buf[pos : pos + n]
            pos += n
            continue
        if kind == 1:
            length = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | buf[pos]
            pos += 1
        elif kind == 2:
            length = 1 + (tag >> 2)
            offset = int.from_bytes(buf[pos : pos + 2], "little")
            pos += 2
        else:
            length = 1 + (tag >> 2)
            offset = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        for _ in range(length):  # byte by byte: copies may overlap their own output
            out.append(out[-offset])
    assert len(out) == size
    return bytes(out)


# --- remote write ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (-1, "ff" * 9 + "01")],
)
def test_varint_known_vectors(n: int, encoded: str) -> None:
    assert remote_write.varint(n).hex() == encoded


def test_write_request_matches_a_hand_assembled_vector() -> None:
    labels = [remote_write.encode_labels([("__name__", "up"), ("job", "a")])]
    got = remote_write.write_request(
        labels, np.array([0]), np.array([1000], dtype=np.int64), np.array([1.0])
    )
    label1 = "0a0e" + "0a085f5f6e616d655f5f" + "1202" + "7570"  # name "__name__", value "up"
    label2 = "0a08" + "0a036a6f62" + "1201" + "61"  # name "job", value "a"
    # Sample: 0x09 + 1.0 little-endian, 0x10 + varint(1000) = e807
    sample = "120c" + "09" + "000000000000f03f" + "10" + "e807"
    timeseries = label1 + label2 + sample
    assert got.hex() == "0a" + f"{len(timeseries) // 2:02x}" + timeseries


def test_write_request_decodes_to_the_series_and_samples_given() -> None:
    rng = np.random.default_rng(3)
    names = [
        remote_write.labels_for("cpu.usage_user", ["host:h1", "region:eu"]),
        remote_write.labels_for("cpu.usage_idle", ["host:h1", "region:eu"]),
        remote_write.labels_for("mem.free", ["host:h2"]),
    ]
    labels = [remote_write.encode_labels(lab) for lab in names]
    series = np.array([2, 0, 1, 0, 2, 1, 0, 0])
    ts = np.array([0, 1_700_000_000_000, 5, -20, 2**40, 127, 128, 1_700_000_010_000])
    value = rng.normal(0, 1e6, series.size)
    value[[1, 4]] = 0.0  # proto3 leaves zero fields out: they must still read as zero
    value[2] = -0.0
    got = decode_write_request(remote_write.write_request(labels, series, ts, value))
    assert [lab for lab, _ in got] == [names[2], names[0], names[1]]  # first appearance
    for (_, samples), s in zip(got, [2, 0, 1], strict=True):
        idx = np.flatnonzero(series == s)
        assert samples == list(zip(value[idx].tolist(), ts[idx].tolist(), strict=True))
    assert np.signbit(got[2][1][0][0])  # -0.0 survives (its bits are not all zero)


def test_labels_follow_prometheus_naming() -> None:
    assert remote_write.labels_for("cpu.usage-user", ["zone:a", "host:h", "rack.id:7"]) == [
        ("__name__", "cpu_usage_user"),
        ("host", "h"),
        ("rack_id", "7"),
        ("zone", "a"),
    ]
    assert remote_write.metric_name("9lives") == "_9lives"
    with pytest.raises(ValueError):
        remote_write.labels_for("m", ["bare"])


def test_body_is_snappy_of_the_request() -> None:
    labels = [
        remote_write.encode_labels([("__name__", f"m{i}"), ("k", "v" * 40)]) for i in range(50)
    ]
    series = np.tile(np.arange(50), 20)
    ts = np.repeat(np.arange(20, dtype=np.int64) * 10_000, 50)
    value = np.round(np.random.default_rng(1).uniform(0, 100, series.size))
    raw = remote_write.write_request(labels, series, ts, value)
    body = remote_write.body(labels, series, ts, value)
    assert len(body) < len(raw) // 2  # repeated labels compress: back-references were used
    assert snappy_decompress(body) == raw


def test_byte_identical_to_the_protobuf_serializer() -> None:
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import (  # type: ignore[import-untyped,unused-ignore]
        descriptor_pool,
        message_factory,
    )

    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="rw.proto", package="t", syntax="proto3")
    for name, flds in {
        "Label": [("name", 1, f.TYPE_STRING, ""), ("value", 2, f.TYPE_STRING, "")],
        "Sample": [("value", 1, f.TYPE_DOUBLE, ""), ("timestamp", 2, f.TYPE_INT64, "")],
        "TimeSeries": [
            ("labels", 1, f.TYPE_MESSAGE, ".t.Label"),
            ("samples", 2, f.TYPE_MESSAGE, ".t.Sample"),
        ],
        "WriteRequest": [("timeseries", 1, f.TYPE_MESSAGE, ".t.TimeSeries")],
    }.items():
        msg = proto.message_type.add(name=name)
        for fname, number, ftype, tname in flds:
            repeated = ftype == f.TYPE_MESSAGE
            field = msg.field.add(
                name=fname,
                number=number,
                type=ftype,
                label=f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL,
            )
            if tname:
                field.type_name = tname
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    write_request = message_factory.GetMessageClass(pool.FindMessageTypeByName("t.WriteRequest"))

    names = [[("__name__", "a"), ("host", "h")], [("__name__", "b"), ("e", "")]]
    series = np.array([0, 1, 0, 1, 0])
    ts = np.array([1_700_000_000_000, 0, -5, 3, 1_700_000_010_000])
    value = np.array([1.5, 0.0, -2.25, 1e300, 42.0])
    ours = remote_write.write_request(
        [remote_write.encode_labels(n) for n in names], series, ts, value
    )
    msg = write_request()
    for s, lab in enumerate(names):
        item = msg.timeseries.add()
        for k, v in lab:
            item.labels.add(name=k, value=v)
        for i in np.flatnonzero(series == s).tolist():
            item.samples.add(value=float(value[i]), timestamp=int(ts[i]))
    assert ours == msg.SerializeToString(deterministic=True)


# --- line protocol -----------------------------------------------------------------------------


def test_lines_known_output_and_escaping() -> None:
    tag_sets = [
        line_protocol.tag_set(["host:h 1", "region:eu,west", "a=b:c"]),
        line_protocol.tag_set(["host:h2"]),
    ]
    assert tag_sets[0] == r",a\=b=c,host=h\ 1,region=eu\,west"
    text = line_protocol.lines(
        "cpu load",
        tag_sets,
        np.array([1, 0]),
        ["usage_user", "f,x"],
        np.array([[58.0, 0.5], [-1e-7, 1e20]]),
        np.array([1_700_000_000, 1_700_000_010]),
    )
    assert text == (
        b"cpu\\ load,host=h2 usage_user=58.0,f\\,x=0.5 1700000000\n"
        b"cpu\\ load,a\\=b=c,host=h\\ 1,region=eu\\,west usage_user=-1e-7,f\\,x=1e+20 1700000010\n"
    )
    with pytest.raises(ValueError):
        line_protocol.lines(
            "m", tag_sets, np.array([0]), ["f"], np.array([[np.nan]]), np.array([1])
        )
    with pytest.raises(ValueError):
        line_protocol.tag_set(["bare"])


_UNESCAPED = re.compile(r"(?<!\\)[ ,=]")


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped (the line-protocol rule)."""
    parts, start = [], 0
    for m in _UNESCAPED.finditer(text):
        if m.group() == sep:
            parts.append(text[start : m.start()])
            start = m.end()
    parts.append(text[start:])
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def test_lines_parse_back_to_the_values_given() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(0, 1, (30, 4)) * 10.0 ** rng.integers(-12, 12, (30, 4))
    values[0, 0] = 0.0
    tags = [line_protocol.tag_set([f"host:h{i}", f"rack:r {i}"]) for i in range(3)]
    which = rng.integers(0, 3, 30)
    ts = np.arange(30, dtype=np.int64) * 10 + 1_700_000_000
    text = line_protocol.lines("cpu", tags, which, ["a", "b", "c", "d"], values, ts).decode()
    rows = text.splitlines()
    assert len(rows) == 30
    for i, row in enumerate(rows):
        series, field_set, stamp = _split(row, " ")
        name, *pairs = _split(series, ",")
        assert name == "cpu"
        assert dict(_split(p, "=") for p in pairs) == {
            "host": f"h{which[i]}",
            "rack": f"r\\ {which[i]}",
        }
        assert {_unescape(p.split("=")[1]) for p in pairs if p.startswith("rack")} == {
            f"r {which[i]}"
        }
        got = dict(_split(p, "=") for p in _split(field_set, ","))
        assert list(got) == ["a", "b", "c", "d"]
        assert [float(v) for v in got.values()] == values[i].tolist()  # shortest repr: exact
        assert int(stamp) == ts[i]


# --- the requests cut for the three systems ------------------------------------------------


def test_the_three_encodings_carry_the_same_points() -> None:
    ds = plan.dataset(hosts=5, hours=1, seed=4, now=1_800_003_599)
    cube, _ = plan.generate(ds, set())
    rounds = plan.cut(ds.hosts, ds.steps, connections=2, points_per_request=100)
    assert [s.tolist() for s in rounds.shards] == [[0, 1, 2], [3, 4]]
    dd = plan.datadog_requests(cube, rounds)
    rw = plan.remote_write_requests(cube, rounds)
    lp = plan.line_protocol_requests(cube, rounds)
    assert sum(r.points for shard in dd for r in shard) == cube.points == ds.points
    for j, hosts in enumerate(rounds.shards):
        for r in (0, rounds.rounds - 1):
            lo, hi = rounds.step_range(r)
            want = {
                (f"cpu.{f}", f"host_{h}", int(cube.ts[s])): float(cube.values[s, m, h])
                for s in range(lo, hi)
                for m, f in enumerate(CPU_FIELDS)
                for h in hosts.tolist()
            }
            assert dd[j][r].points == rw[j][r].points == lp[j][r].points == len(want)
            assert _datadog_points(dd[j][r].body) == want
            assert _remote_write_points(rw[j][r].body) == want
            assert _line_points(lp[j][r].body) == want


def _datadog_points(body: bytes) -> dict[tuple[str, str, int], float]:
    import orjson

    out = {}
    for s in orjson.loads(gzip.decompress(body))["series"]:
        host = s["resources"][0]["name"]
        for p in s["points"]:
            out[(s["metric"], host, p["timestamp"])] = p["value"]
    return out


def _remote_write_points(body: bytes) -> dict[tuple[str, str, int], float]:
    out = {}
    for labels, samples in decode_write_request(snappy_decompress(body)):
        lab = dict(labels)
        metric = lab["__name__"].replace("cpu_", "cpu.", 1)
        for value, ts in samples:
            assert ts % 1000 == 0
            out[(metric, lab["host"], ts // 1000)] = value
    return out


def _line_points(body: bytes) -> dict[tuple[str, str, int], float]:
    out = {}
    for row in gzip.decompress(body).decode().splitlines():
        series, field_set, stamp = row.split(" ")
        host = dict(p.split("=") for p in series.split(",")[1:])["host"]
        for pair in field_set.split(","):
            name, value = pair.split("=")
            out[(f"cpu.{name}", host, int(stamp))] = float(value)
    return out


def test_keep_logs_copies_the_logs_of_a_run_and_nothing_else(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "strata" / "data" / "logs").mkdir(parents=True)
    (run / "strata" / "data" / "logs" / "query.log").write_text("partial answer: x\n")
    (run / "strata" / "data" / "points.sst").write_bytes(b"\0" * 10)
    kept = keep_logs(run, "kept-", tmp_path)
    assert kept is not None and kept.parent == tmp_path
    assert [p.relative_to(kept).as_posix() for p in kept.rglob("*") if p.is_file()] == [
        "strata/data/logs/query.log"
    ]
    assert (kept / "strata/data/logs/query.log").read_text() == "partial answer: x\n"
    assert keep_logs(tmp_path / "empty", "x-", tmp_path) is None


def _health(**marks: int) -> dict[str, Any]:
    """A store's /health answer with these partitions' watermarks (ms)."""
    return {
        "status": "ok",
        "watermarks": {
            p.lstrip("p"): {"complete_through_ms": ms, "lag_seconds": 0.5}
            for p, ms in marks.items()
        },
    }


def test_incomplete_names_the_partitions_behind_the_last_answer() -> None:
    """The bench counts Strata's points once its stores' watermarks pass the last 202."""
    assert incomplete("rocks", _health(p0=2_000, p1=2_500), 2_000.0) == ""
    assert incomplete("rocks", _health(p0=2_000, p10=1_999, p2=1_000), 2_000.0) == (
        "rocks: partitions [2, 10] behind"
    )
    # No watermark yet (no heartbeat applied, or a store without them) is never complete.
    assert incomplete("ram", {"status": "ok", "watermarks": {}}, 0.0) == "ram: no watermarks yet"
    assert incomplete("ram", {"status": "ok"}, 0.0) == "ram: no watermarks yet"
