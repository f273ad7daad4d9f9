"""v1/v2 JSON shapes -> columnar batches and rejections (intake.parse, intake.batching)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from intake.batching import ParsedPayload
from intake.parse import PayloadError, load_json, parse_v1, parse_v2
from intake.rejections import RejectReason, TimeWindow
from strata.model import INDEX_BUCKET_SECONDS, MetricType
from strata.series_id import series_id

NOW = 1_700_000_000
WINDOW = TimeWindow(NOW, late_seconds=3600, future_seconds=600)
ORG = "acme"


def v2(*series: dict[str, Any]) -> dict[str, Any]:
    return {"series": list(series)}


def one(payload: ParsedPayload) -> tuple[list[int], list[int], list[float]]:
    """sid/ts/value of the only batch, as lists."""
    assert len(payload.batches) == 1
    p = payload.batches[0].points
    return p.sid.tolist(), p.ts.tolist(), p.value.tolist()


# --- v2 shapes -------------------------------------------------------------------------


def test_v2_full_shape() -> None:
    doc = v2(
        {
            "metric": "cpu.user",
            "type": 3,
            "points": [{"timestamp": NOW, "value": 1.5}, {"timestamp": NOW - 10, "value": 2}],
            "resources": [{"name": "web-1", "type": "host"}],
            "tags": ["Env:Prod", "role:db"],
            "interval": 10,
            "unit": "percent",
            "source_type_name": "agent",
            "metadata": {"origin": {"origin_product": 1}},
        }
    )
    out = parse_v2(doc, ORG, WINDOW)
    tags = ("env:prod", "host:web-1", "role:db")
    sid = series_id(ORG, "cpu.user", tags)
    assert one(out) == ([sid, sid], [NOW, NOW - 10], [1.5, 2.0])
    series = out.batches[0].series
    assert series.sid.tolist() == [sid]
    assert series.tags == (tags,)
    assert series.bucket.tolist() == [NOW - NOW % INDEX_BUCKET_SECONDS]
    assert series.mtype.tolist() == [MetricType.GAUGE]
    assert series.interval.tolist() == [10]
    assert out.messages() == []
    assert out.batches[0].points.org == ORG


@pytest.mark.parametrize(
    ("given_type", "expected"),
    [
        (0, MetricType.GAUGE),
        (1, MetricType.COUNT),
        (2, MetricType.RATE),
        (3, MetricType.GAUGE),
        ("unspecified", MetricType.GAUGE),
        ("count", MetricType.COUNT),
        ("rate", MetricType.RATE),
        ("gauge", MetricType.GAUGE),
        (None, MetricType.GAUGE),
    ],
)
def test_v2_type_ints_and_strings(given_type: object, expected: MetricType) -> None:
    s: dict[str, Any] = {"metric": "m", "points": [{"timestamp": NOW, "value": 1}]}
    if given_type is not None:
        s["type"] = given_type
    out = parse_v2(v2(s), ORG, WINDOW)
    assert out.batches[0].series.mtype.tolist() == [expected]


def test_v2_resource_of_other_type_becomes_a_tag() -> None:
    s = {
        "metric": "m",
        "points": [{"timestamp": NOW, "value": 1}],
        "resources": [{"name": "sda1", "type": "device"}],
    }
    assert parse_v2(v2(s), ORG, WINDOW).batches[0].series.tags == (("device:sda1",),)


def test_one_batch_per_metric_across_series() -> None:
    doc = v2(
        {"metric": "a", "points": [{"timestamp": NOW, "value": 1}], "tags": ["x:1"]},
        {"metric": "b", "points": [{"timestamp": NOW, "value": 2}]},
        {"metric": "a", "points": [{"timestamp": NOW, "value": 3}], "tags": ["x:2"]},
    )
    out = parse_v2(doc, ORG, WINDOW)
    by_metric = {b.points.metric: b for b in out.batches}
    assert sorted(by_metric) == ["a", "b"]
    assert by_metric["a"].points.value.tolist() == [1.0, 3.0]
    assert len(set(by_metric["a"].points.sid.tolist())) == 2
    assert len(by_metric["a"].series) == 2


def test_series_rows_once_per_bucket() -> None:
    bucket = NOW - NOW % INDEX_BUCKET_SECONDS
    pts = [{"timestamp": t, "value": 1} for t in (bucket - 1, bucket, bucket + 1, bucket - 2)]
    out = parse_v2(v2({"metric": "m", "points": pts}), ORG, WINDOW)
    assert sorted(out.batches[0].series.bucket.tolist()) == [bucket - INDEX_BUCKET_SECONDS, bucket]


def test_empty_series_list() -> None:
    out = parse_v2(v2(), ORG, WINDOW)
    assert out.batches == [] and out.rejections == []


# --- v1 shapes -------------------------------------------------------------------------


def test_v1_shape_with_host_device_and_float_timestamps() -> None:
    doc = {
        "series": [
            {
                "metric": "disk.free",
                "points": [[NOW + 0.9, 10], [float(NOW - 5), 11.25]],
                "type": "gauge",
                "host": "Web-1",
                "tags": ["a:b"],
                "device": "sda1",
                "interval": None,
            }
        ]
    }
    out = parse_v1(doc, ORG, WINDOW)
    tags = ("a:b", "device:sda1", "host:Web-1")
    sid = series_id(ORG, "disk.free", tags)
    assert one(out) == ([sid, sid], [NOW, NOW - 5], [10.0, 11.25])  # truncated, not rounded
    assert out.batches[0].series.interval.tolist() == [0]


def test_v1_null_host_tags_device_and_type() -> None:
    doc = {
        "series": [
            {
                "metric": "m",
                "points": [[NOW, 1]],
                "type": None,
                "host": None,
                "tags": None,
                "device": None,
            }
        ]
    }
    out = parse_v1(doc, ORG, WINDOW)
    assert out.batches[0].series.tags == ((),)
    assert out.batches[0].series.mtype.tolist() == [MetricType.GAUGE]


@pytest.mark.parametrize("mtype", ["gauge", "count", "rate"])
def test_v1_types(mtype: str) -> None:
    out = parse_v1({"series": [{"metric": "m", "points": [[NOW, 1]], "type": mtype}]}, ORG, WINDOW)
    assert out.batches[0].series.mtype.tolist() == [MetricType[mtype.upper()]]


def test_v1_invalid_metric_name_is_a_400_naming_the_field() -> None:
    doc = {"series": [{"metric": "m", "points": []}, {"metric": "9lives", "points": [[NOW, 1]]}]}
    with pytest.raises(PayloadError, match=r"^series\[1\]\.metric: metric name must start"):
        parse_v1(doc, ORG, WINDOW)


def test_metric_names_are_normalised() -> None:
    out = parse_v1({"series": [{"metric": "my metric!", "points": [[NOW, 1]]}]}, ORG, WINDOW)
    assert out.batches[0].points.metric == "my_metric_"


# --- rejections ------------------------------------------------------------------------


def test_nan_and_infinity_are_rejected_per_point() -> None:
    body = json.dumps(
        {
            "series": [
                {"metric": "m", "points": [[NOW, float("nan")], [NOW, 1], [NOW, float("inf")]]}
            ]
        }
    ).encode()
    assert b"NaN" in body  # as Python's json (and the datadog package) sends it
    out = parse_v1(load_json(body), ORG, WINDOW)
    assert one(out)[2] == [1.0]
    assert out.rejected_by_reason() == {RejectReason.NON_FINITE: 2}
    assert out.messages() == ["metric m: 2 points rejected: value is NaN or infinite"]


def test_huge_value_is_rejected_as_infinite() -> None:
    out = parse_v2(
        v2({"metric": "m", "points": [{"timestamp": NOW, "value": 10**400}]}), ORG, WINDOW
    )
    assert out.rejected_by_reason() == {RejectReason.NON_FINITE: 1}


def test_points_too_far_in_the_future_are_rejected() -> None:
    pts = [{"timestamp": NOW + 600, "value": 1}, {"timestamp": NOW + 601, "value": 2}]
    out = parse_v2(v2({"metric": "cpu.user", "points": pts}), ORG, WINDOW)
    assert one(out)[1] == [NOW + 600]
    assert out.messages() == ["metric cpu.user: 1 point rejected: more than 600s in the future"]


def test_points_older_than_the_late_window_are_rejected() -> None:
    pts = [{"timestamp": NOW - 3600 - i, "value": 1} for i in range(4)]
    out = parse_v2(v2({"metric": "cpu.user", "points": pts}), ORG, WINDOW)
    assert one(out)[1] == [NOW - 3600]
    assert out.messages() == [
        "metric cpu.user: 3 points rejected: older than the 3600s late-data window"
    ]


def test_late_window_comes_from_the_request_window() -> None:
    pts = [{"timestamp": NOW - 100, "value": 1}]
    out = parse_v2(v2({"metric": "m", "points": pts}), ORG, TimeWindow(NOW, 60, 600))
    assert out.messages() == ["metric m: 1 point rejected: older than the 60s late-data window"]


def test_v2_invalid_metric_name_rejects_the_series_only() -> None:
    doc = v2(
        {"metric": "", "points": [{"timestamp": NOW, "value": 1}]},
        {"metric": "ok", "points": [{"timestamp": NOW, "value": 2}]},
    )
    out = parse_v2(doc, ORG, WINDOW)
    assert one(out)[2] == [2.0]
    assert out.rejected_by_reason() == {RejectReason.INVALID_METRIC: 1}
    assert out.messages() == [
        "metric : 1 point rejected: invalid metric name (metric name is empty)"
    ]


def test_rejections_are_grouped_per_metric_and_reason() -> None:
    old = {"timestamp": NOW - 7200, "value": 1}
    doc = v2(
        {"metric": "a", "points": [old, old], "tags": ["x:1"]},
        {"metric": "a", "points": [old], "tags": ["x:2"]},
        {"metric": "b", "points": [old]},
    )
    out = parse_v2(doc, ORG, WINDOW)
    assert out.batches == []
    assert out.messages() == [
        "metric a: 3 points rejected: older than the 3600s late-data window",
        "metric b: 1 point rejected: older than the 3600s late-data window",
    ]


# --- shape errors name the field -------------------------------------------------------

GOOD_V2_POINT = {"timestamp": NOW, "value": 1}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "body: expected a JSON object"),
        ({}, "series: required field is missing"),
        ({"series": {}}, "series: expected a list"),
        ({"series": [1]}, "series[0]: expected an object"),
        ({"series": [{"points": []}]}, "series[0].metric: required field is missing"),
        ({"series": [{"metric": 1, "points": []}]}, "series[0].metric: expected a string"),
        ({"series": [{"metric": "m"}]}, "series[0].points: required field is missing"),
        (
            v2({"metric": "m", "points": []}, {"metric": "m", "points": [GOOD_V2_POINT, 5]}),
            "series[1].points[1]: expected an object",
        ),
        (
            v2({"metric": "m", "points": [{"value": 1}]}),
            "series[0].points[0].timestamp: required field is missing",
        ),
        (
            v2({"metric": "m", "points": [{"timestamp": NOW}]}),
            "series[0].points[0].value: required field is missing",
        ),
        (
            v2({"metric": "m", "points": [GOOD_V2_POINT, {"timestamp": NOW, "value": "1"}]}),
            "series[0].points[1].value: expected a number",
        ),
        (
            v2({"metric": "m", "points": [{"timestamp": NOW, "value": True}]}),
            "series[0].points[0].value: expected a number",
        ),
        (
            v2({"metric": "m", "points": [{"timestamp": "now", "value": 1}]}),
            "series[0].points[0].timestamp: expected a number",
        ),
        (
            v2({"metric": "m", "points": [], "type": 7}),
            "series[0].type: expected 0-3 or one of unspecified, count, rate, gauge",
        ),
        (
            v2({"metric": "m", "points": [], "tags": ["a", 1]}),
            "series[0].tags[1]: expected a string",
        ),
        (v2({"metric": "m", "points": [], "tags": "a:b"}), "series[0].tags: expected a list"),
        (
            v2({"metric": "m", "points": [], "resources": [{"type": "host"}]}),
            "series[0].resources[0].name: required field is missing",
        ),
        (
            v2({"metric": "m", "points": [], "interval": -1}),
            "series[0].interval: expected a non-negative number of seconds",
        ),
    ],
)
def test_v2_shape_errors_name_the_field(doc: Any, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_v2(doc, ORG, WINDOW)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("series", "message"),
    [
        (
            {"metric": "m", "points": [[NOW]]},
            "series[0].points[0]: expected a [timestamp, value] pair",
        ),
        (
            {"metric": "m", "points": [NOW, 1]},
            "series[0].points[0]: expected a [timestamp, value] pair",
        ),
        ({"metric": "m", "points": [[NOW, None]]}, "series[0].points[0][1]: expected a number"),
        (
            {"metric": "m", "points": [[NOW, 1], ["x", 1]]},
            "series[0].points[1][0]: expected a number",
        ),
        (
            {"metric": "m", "points": [], "type": "distribution"},
            "series[0].type: expected one of gauge, count, rate",
        ),
        ({"metric": "m", "points": [], "host": 5}, "series[0].host: expected a string"),
        ({"metric": "m", "points": [], "device": ["d"]}, "series[0].device: expected a string"),
    ],
)
def test_v1_shape_errors_name_the_field(series: dict[str, Any], message: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_v1({"series": [series]}, ORG, WINDOW)
    assert str(info.value) == message


def test_nan_timestamp_is_a_shape_error() -> None:
    with pytest.raises(PayloadError, match=r"series\[0\]\.points\[0\]\[0\]: expected a finite"):
        parse_v1(load_json(b'{"series": [{"metric": "m", "points": [[NaN, 1]]}]}'), ORG, WINDOW)


@pytest.mark.parametrize("body", [b"", b"{", b'{"series": [}', b"\xff\xfe"])
def test_malformed_json(body: bytes) -> None:
    with pytest.raises(PayloadError, match=r"^body: malformed JSON"):
        load_json(body)


# --- properties ------------------------------------------------------------------------

values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**60), 2**60))
offsets = st.integers(-7200, 1200)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]), st.lists(st.tuples(offsets, values), max_size=20)
        ),
        max_size=8,
    )
)
def test_every_point_is_accepted_exactly_or_counted_as_rejected(
    series: list[tuple[str, list[tuple[int, float]]]],
) -> None:
    doc = {"series": [{"metric": m, "points": [[NOW + o, v] for o, v in pts]} for m, pts in series]}
    out = parse_v1(doc, ORG, WINDOW)
    total = sum(len(pts) for _, pts in series)
    assert out.accepted + sum(out.rejected_by_reason().values()) == total
    expected: dict[str, list[tuple[int, float]]] = {}
    for m, pts in series:
        for o, v in pts:
            if np.isfinite(float(v)) and -3600 <= o <= 600:
                expected.setdefault(m, []).append((NOW + o, float(v)))
    got = {
        b.points.metric: list(zip(b.points.ts.tolist(), b.points.value.tolist(), strict=True))
        for b in out.batches
    }
    assert got == expected
