"""The request-wide fast path of intake.parse still names the first bad field in document
order, whatever else is wrong later in the request, and never accepts a bad request."""

from __future__ import annotations

from typing import Any

import pytest

from intake.identity import SeriesIdentities
from intake.parse import PayloadError, parse_v1, parse_v2
from intake.rejections import RejectReason, TimeWindow

NOW = 1_700_000_000
WINDOW = TimeWindow(NOW, late_seconds=3600, future_seconds=600)
GOOD_V2 = {"metric": "m", "points": [{"timestamp": NOW, "value": 1}]}
GOOD_V1 = {"metric": "m", "points": [[NOW, 1]]}


@pytest.mark.parametrize(
    ("series", "message"),
    [
        # A bad point before a bad tag: the point is named, though points are checked last.
        (
            [
                {"metric": "m", "points": [{"timestamp": NOW, "value": "x"}]},
                {**GOOD_V2, "tags": [1]},
            ],
            "series[0].points[0].value: expected a number",
        ),
        (
            [
                {**GOOD_V2, "tags": [1]},
                {"metric": "m", "points": [{"timestamp": NOW, "value": "x"}]},
            ],
            "series[0].tags[0]: expected a string",
        ),
        (
            [GOOD_V2, {"metric": "m", "points": [{"timestamp": NOW, "value": None}]}],
            "series[1].points[0].value: expected a number",
        ),
        (
            [GOOD_V2, {"metric": "m", "points": [{"timestamp": 2**1100, "value": 1}]}],
            "series[1].points: timestamp out of range",
        ),
        (
            [GOOD_V2, {"metric": "m", "points": [{"timestamp": float("nan"), "value": 1}]}],
            "series[1].points[0].timestamp: expected a finite number",
        ),
        # An invalid metric name is a rejection on v2, but its points must still be valid.
        (
            [{"metric": "9x", "points": [{"timestamp": NOW, "value": False}]}],
            "series[0].points[0].value: expected a number",
        ),
        (
            [GOOD_V2, {**GOOD_V2, "type": True}],
            "series[1].type: expected 0-3 or one of unspecified, count, rate, gauge",
        ),
        (
            [GOOD_V2, {**GOOD_V2, "type": 3.0}],
            "series[1].type: expected 0-3 or one of unspecified, count, rate, gauge",
        ),
        (
            [GOOD_V2, {**GOOD_V2, "interval": True}],
            "series[1].interval: expected a non-negative number of seconds",
        ),
        (
            [GOOD_V2, {**GOOD_V2, "resources": [{"name": 1, "type": "host"}]}],
            "series[1].resources[0].name: expected a string",
        ),
        ([GOOD_V2, {**GOOD_V2, "resources": {}}], "series[1].resources: expected a list"),
        ([GOOD_V2, {**GOOD_V2, "tags": [["a"]]}], "series[1].tags[0]: expected a string"),
    ],
)
def test_v2_names_the_first_bad_field(series: list[dict[str, Any]], message: str) -> None:
    for cache in (None, SeriesIdentities(10)):
        with pytest.raises(PayloadError) as info:
            parse_v2({"series": series}, "acme", WINDOW, cache)
        assert str(info.value) == message


@pytest.mark.parametrize(
    ("series", "message"),
    [
        (
            [{"metric": "m", "points": [[NOW, "1"]]}, {"metric": "9x", "points": []}],
            "series[0].points[0][1]: expected a number",
        ),
        (
            [{"metric": "9x", "points": [[NOW, "1"]]}, GOOD_V1],
            "series[0].metric: metric name must start with a letter: '9x'",
        ),
        (
            [GOOD_V1, {"metric": "m", "points": [[NOW, 1, 2]]}],
            "series[1].points[0]: expected a [timestamp, value] pair",
        ),
        (
            [GOOD_V1, {"metric": "m", "points": [[NOW, 1]], "host": 1}],
            "series[1].host: expected a string",
        ),
        ([GOOD_V1, {**GOOD_V1, "type": 1}], "series[1].type: expected one of gauge, count, rate"),
    ],
)
def test_v1_names_the_first_bad_field(series: list[dict[str, Any]], message: str) -> None:
    for cache in (None, SeriesIdentities(10)):
        with pytest.raises(PayloadError) as info:
            parse_v1({"series": series}, "acme", WINDOW, cache)
        assert str(info.value) == message


def test_a_cached_v2_invalid_name_still_rejects_per_series() -> None:
    cache = SeriesIdentities(10)
    doc = {"series": [{"metric": "9x", "points": [{"timestamp": NOW, "value": 1}]}, GOOD_V2]}
    for _ in range(2):
        out = parse_v2(doc, "acme", WINDOW, cache)
        assert out.accepted == 1
        assert out.rejected_by_reason() == {RejectReason.INVALID_METRIC: 1}


def test_a_cached_v1_invalid_name_is_still_a_400() -> None:
    cache = SeriesIdentities(10)
    parse_v2({"series": [{"metric": "9x", "points": []}]}, "acme", WINDOW, cache)
    with pytest.raises(PayloadError, match=r"^series\[0\]\.metric: "):
        parse_v1({"series": [{"metric": "9x", "points": []}]}, "acme", WINDOW, cache)


def test_one_overflowing_value_does_not_change_the_others() -> None:
    doc = {"series": [{"metric": "m", "points": [[NOW, 2**1100], [NOW + 1, 2**1023]]}]}
    out = parse_v1(doc, "acme", WINDOW)
    assert out.batches[0].points.value.tolist() == [float(2**1023)]
    assert out.rejected_by_reason() == {RejectReason.NON_FINITE: 1}
