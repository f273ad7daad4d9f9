# datadog-api-client ships partial annotations: its constructors are untyped.
# mypy: disable-error-code="no-untyped-call"
"""``POST /api/v1/distribution_points`` bodies -> one sketch per (series, ts) (pure).

The expected sketches are built value list by value list with :meth:`Sketch.from_values`
(one sketch of all values of a (series, ts), not the columnar path under test), and series
ids from the canonical tags with :func:`strata.series_id.series_id`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pytest
from datadog_api_client.model_utils import model_to_dict
from datadog_api_client.v1.model.distribution_point import DistributionPoint
from datadog_api_client.v1.model.distribution_points_payload import DistributionPointsPayload
from datadog_api_client.v1.model.distribution_points_series import DistributionPointsSeries
from datadog_api_client.v1.model.distribution_points_type import DistributionPointsType

from intake.distributions import ParsedDistributions, parse_distributions
from intake.parse import PayloadError
from intake.rejections import RejectReason, TimeWindow
from strata.model import MetricType
from strata.naming import canonical_tags
from strata.series_id import series_id
from strata.sketch import Sketch

NOW = 1_700_000_000
WINDOW = TimeWindow(NOW, 3600, 600)
ORG = "acme"


def parse(doc: Any) -> ParsedDistributions:
    return parse_distributions(doc, ORG, WINDOW)


def sid(metric: str, *tags: str) -> int:
    return series_id(ORG, metric, canonical_tags(tags))


def rows(parsed: ParsedDistributions) -> dict[tuple[str, int, int], Sketch]:
    out = {}
    for b in parsed.batches:
        batch = b.sketches.batch
        assert b.sketches.org == ORG
        for i in range(len(batch)):
            key = (b.sketches.metric, int(batch.sid[i]), int(batch.ts[i]))
            assert key not in out, "one row per (series, ts)"
            out[key] = batch.row(i)
    return out


def expected(points: list[tuple[str, int, int, list[float]]]) -> dict[tuple[str, int, int], Sketch]:
    values: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for metric, s, ts, vs in points:
        values[(metric, s, ts)] += vs
    return {k: Sketch.from_values(v) for k, v in values.items()}


def test_values_fold_into_one_sketch_per_series_and_timestamp() -> None:
    t0, t1 = NOW - 20, NOW - 10
    doc = {
        "series": [
            {
                "metric": "req.latency",
                "points": [[t0, [0.5, 1.0, 250.0]], [t1, [2.0]], [t0 + 0.9, [7.0, -1.0, 0.0]]],
                "tags": ["env:prod", "Env:Prod"],
                "host": "web-1",
                "type": "distribution",
            },
            {"metric": "req.latency", "points": [[t0, [3.0, 4.0]]], "tags": ["env:prod"]},
            # The same series as the first one, in another series entry.
            {
                "metric": "req.latency",
                "points": [[t1, [9.5]]],
                "tags": ["env:prod"],
                "host": "web-1",
            },
            {"metric": "db.rows", "points": [[t1, 12]], "type": "Distribution"},
        ]
    }
    parsed = parse(doc)
    a, b, c = (
        sid("req.latency", "env:prod", "host:web-1"),
        sid("req.latency", "env:prod"),
        sid("db.rows"),
    )
    want = expected(
        [
            ("req.latency", a, t0, [0.5, 1.0, 250.0, 7.0, -1.0, 0.0]),
            ("req.latency", a, t1, [2.0, 9.5]),
            ("req.latency", b, t0, [3.0, 4.0]),
            ("db.rows", c, t1, [12.0]),
        ]
    )
    assert rows(parsed) == want
    assert (parsed.points, parsed.values, parsed.rejections) == (6, 11, [])
    assert [bt.sketches.metric for bt in parsed.batches] == ["req.latency", "db.rows"]
    series = parsed.batches[0].series
    assert set(series.mtype.tolist()) == {int(MetricType.DISTRIBUTION)}
    assert sorted(series.sid.tolist()) == sorted([a, b])
    assert set(series.bucket.tolist()) == {NOW - NOW % 3600}
    tags = dict(zip(series.sid.tolist(), series.tags, strict=True))
    assert tags[a] == ("env:prod", "host:web-1")


def test_the_official_client_body_parses() -> None:
    body = DistributionPointsPayload(
        series=[
            DistributionPointsSeries(
                metric="client.latency",
                points=[DistributionPoint([float(NOW - 5), [1.0, 2.5, 2.5]])],
                tags=["env:e2e"],
                host="h0",
                type=DistributionPointsType.DISTRIBUTION,
            )
        ]
    )
    parsed = parse(model_to_dict(body))
    key = ("client.latency", sid("client.latency", "env:e2e", "host:h0"), NOW - 5)
    assert rows(parsed) == {key: Sketch.from_values([1.0, 2.5, 2.5])}


def test_bad_points_are_rejected_whole_and_counted() -> None:
    doc = {
        "series": [
            {
                "metric": "m",
                "points": [
                    [NOW, [1.0, float("nan"), 2.0]],  # one bad value: the point goes
                    [NOW - 7200, [1.0]],  # too old
                    [NOW + 3600, [1.0]],  # too new
                    [NOW - 1, [1e400, 3.0]],  # inf (as Python's json sends it)
                    [NOW - 2, [10**400]],  # an integer beyond float64
                    [NOW - 3, []],  # nothing to store: skipped, not counted
                    [NOW - 4, [4.0, 5.0]],
                ],
            }
        ]
    }
    parsed = parse(doc)
    assert rows(parsed) == expected([("m", sid("m"), NOW - 4, [4.0, 5.0])])
    assert parsed.rejected_by_reason() == {
        RejectReason.NON_FINITE: 3,
        RejectReason.TOO_OLD: 1,
        RejectReason.TOO_NEW: 1,
    }
    assert (parsed.points, parsed.values) == (1, 2)
    assert "3 points rejected: value is NaN or infinite" in "".join(parsed.messages())


def test_nothing_accepted_gives_no_batches() -> None:
    parsed = parse({"series": [{"metric": "m", "points": [[NOW - 7200, [1.0]], [NOW, []]]}]})
    assert parsed.batches == [] and parsed.points == 0
    assert parse({"series": []}).batches == []


@pytest.mark.parametrize(
    ("doc", "path", "problem"),
    [
        ([], "body", "expected a JSON object"),
        ({}, "series", "required field is missing"),
        ({"series": [{"points": []}]}, "series[0].metric", "required field is missing"),
        ({"series": [{"metric": "1bad", "points": []}]}, "series[0].metric", ""),
        (
            {"series": [{"metric": "m", "points": [], "type": "gauge"}]},
            "series[0].type",
            "distribution",
        ),
        ({"series": [{"metric": "m"}]}, "series[0].points", "required field is missing"),
        ({"series": [{"metric": "m", "points": [[NOW]]}]}, "series[0].points[0]", "pair"),
        ({"series": [{"metric": "m", "points": [[NOW, "1"]]}]}, "series[0].points[0][1]", "list"),
        (
            {
                "series": [
                    {"metric": "m", "points": [[NOW, [1]]]},
                    {"metric": "m", "points": [[NOW, [1, True]]]},
                ]
            },
            "series[1].points[0][1][1]",
            "expected a number",
        ),
        (
            {"series": [{"metric": "m", "points": [["now", [1]]]}]},
            "series[0].points[0][0]",
            "number",
        ),
        (
            {"series": [{"metric": "m", "points": [[NOW, [1]]], "tags": [1]}]},
            "series[0].tags[0]",
            "string",
        ),
        (
            {"series": [{"metric": "m", "points": [[NOW, [1]]], "host": 5}]},
            "series[0].host",
            "string",
        ),
    ],
)
def test_shape_errors_name_the_first_bad_field(doc: Any, path: str, problem: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse(doc)
    assert err.value.path == path
    assert problem in err.value.problem


def test_exact_summary_survives_the_fold() -> None:
    values = [0.1 * i for i in range(1, 1001)]
    parsed = parse(
        {"series": [{"metric": "m", "points": [[NOW, values[:400]], [NOW, values[400:]]]}]}
    )
    (sketch,) = rows(parsed).values()
    assert sketch.count == 1000
    assert math.isclose(sketch.sum, math.fsum(values), rel_tol=1e-12)
    assert (sketch.min, sketch.max) == (min(values), max(values))
    exact = sorted(values)[int(0.99 * 999)]
    assert abs(sketch.quantile(0.99) - exact) <= 0.01 * exact
