"""The request-wide batching (intake.parse + intake.batching) equals a per-series reference.

The reference below is the obvious loop: normalise each series, check each point, append
the accepted rows, count the rejected ones per (metric, reason) in request order. The
implementation does the checks, grouping and (series, bucket) dedup once per request with
numpy and caches series identities across requests; every output (rows and their order,
batch order, rejection messages and their order) must be the same.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from intake.batching import ParsedPayload
from intake.identity import SeriesIdentities
from intake.parse import PayloadError, parse_v1, parse_v2
from intake.rejections import RejectReason, TimeWindow
from strata.model import DATADOG_V2_TYPES, INDEX_BUCKET_SECONDS, TYPE_NAMES
from strata.naming import InvalidName, canonical_tags, normalize_metric_name
from strata.series_id import series_id

NOW = 1_700_000_000
WINDOW = TimeWindow(NOW, late_seconds=3600, future_seconds=600)
ORG = "acme"

# What one parse gives, as plain values: per batch (metric, points, series rows), and the
# rejections as (metric, reason, count, detail), all in output order.
Rows = list[
    tuple[str, list[tuple[int, int, float]], list[tuple[int, int, int, int, tuple[str, ...]]]]
]
Outcome = tuple[Rows, list[tuple[str, RejectReason, int, str]]]


def reference(doc: dict[str, Any], v1: bool) -> Outcome:
    points: dict[str, list[tuple[int, int, float]]] = {}
    rows: dict[str, dict[tuple[int, int], tuple[int, int, tuple[str, ...]]]] = {}
    rejected: dict[tuple[str, RejectReason, str], int] = {}

    def reject(metric: str, reason: RejectReason, n: int, detail: str = "") -> None:
        if n:
            rejected[(metric, reason, detail)] = rejected.get((metric, reason, detail), 0) + n

    for s in doc["series"]:
        raw_tags = list(s.get("tags") or [])
        if v1:
            pts = [(math.trunc(t), _float(v)) for t, v in s["points"]]
            raw_tags += [f"host:{s['host']}"] if s.get("host") else []
            raw_tags += [f"device:{s['device']}"] if s.get("device") else []
            mtype = TYPE_NAMES[(s.get("type") or "gauge").lower()]
        else:
            pts = [(math.trunc(p["timestamp"]), _float(p["value"])) for p in s["points"]]
            raw_tags += [f"{r['type']}:{r['name']}" for r in s.get("resources") or []]
            t = s.get("type")
            mtype = DATADOG_V2_TYPES[t] if type(t) is int else TYPE_NAMES[(t or "gauge").lower()]
        try:
            metric = normalize_metric_name(s["metric"])
        except InvalidName as exc:
            assert not v1, "v1 refuses the request (covered by the unit tests)"
            reject(s["metric"], RejectReason.INVALID_METRIC, len(pts), str(exc))
            continue
        tags = canonical_tags(raw_tags)
        sid = series_id(ORG, metric, tags)
        finite = [(t, v) for t, v in pts if math.isfinite(v)]
        too_new = [t for t, _ in finite if t > WINDOW.newest]
        too_old = [t for t, _ in finite if t < WINDOW.oldest]
        reject(metric, RejectReason.NON_FINITE, len(pts) - len(finite))
        reject(metric, RejectReason.TOO_NEW, len(too_new))
        reject(metric, RejectReason.TOO_OLD, len(too_old))
        kept = [(t, v) for t, v in finite if WINDOW.oldest <= t <= WINDOW.newest]
        if not kept:
            continue
        points.setdefault(metric, []).extend((sid, t, v) for t, v in kept)
        metric_rows = rows.setdefault(metric, {})
        for bucket in sorted({t - t % INDEX_BUCKET_SECONDS for t, _ in kept}):
            metric_rows.setdefault((sid, bucket), (int(mtype), int(s.get("interval") or 0), tags))
    batches = [
        (m, points[m], [(sid, b, *row) for (sid, b), row in rows[m].items()]) for m in points
    ]
    return batches, [(m, r, n, d) for (m, r, d), n in rejected.items()]


def _float(v: float) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf


def outcome(parsed: ParsedPayload) -> Outcome:
    batches: Rows = []
    for b in parsed.batches:
        p, s = b.points, b.series
        assert p.metric == s.metric and p.org == s.org == ORG
        batches.append(
            (
                p.metric,
                list(zip(p.sid.tolist(), p.ts.tolist(), p.value.tolist(), strict=True)),
                list(
                    zip(
                        s.sid.tolist(),
                        s.bucket.tolist(),
                        s.mtype.tolist(),
                        s.interval.tolist(),
                        s.tags,
                        strict=True,
                    )
                ),
            )
        )
    return batches, [(r.metric, r.reason, r.count, r.detail) for r in parsed.rejections]


# --- payloads ------------------------------------------------------------------------------

# Few distinct names so that series repeat (duplicate series, several per metric), plus
# names that normalise to the same metric and invalid ones.
metric_names = st.sampled_from(["cpu.user", "cpu user", "cpu_user", "mem.free", "disk", "9x", ""])
tag_lists = st.lists(
    st.sampled_from(["env:prod", "ENV:prod", "rack:1", "host:A", "!!", "a b"]), max_size=3
)
offsets = st.one_of(
    st.integers(-3600, 600),  # in the window, edges included
    st.integers(-10_000, 10_000),  # often outside it
    st.sampled_from([-3601, 601, -3600, 600, -1 - NOW % INDEX_BUCKET_SECONDS]),
)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**60), 2**60),
    st.sampled_from([2**1023, -(2**1100), 2**1024]),  # the last two are beyond float64
)
intervals = st.one_of(st.none(), st.integers(0, 2**32 - 1), st.sampled_from([10, 10.7]))


@st.composite
def v2_series(draw: st.DrawFn) -> dict[str, Any]:
    pts = draw(st.lists(st.tuples(offsets, values, st.booleans()), max_size=6))
    s: dict[str, Any] = {
        "metric": draw(metric_names),
        # Float timestamps are truncated like v1's.
        "points": [{"timestamp": NOW + o + (0.5 if half else 0), "value": v} for o, v, half in pts],
        "tags": draw(st.one_of(st.none(), tag_lists)),
        "type": draw(st.sampled_from([None, 0, 1, 2, 3, "count", "Rate", "gauge"])),
        "interval": draw(intervals),
    }
    host = draw(st.sampled_from([None, "A", "web-1"]))
    if host is not None:
        s["resources"] = [{"name": host, "type": draw(st.sampled_from(["host", "device"]))}]
    return s


@st.composite
def v1_series(draw: st.DrawFn) -> dict[str, Any]:
    pts = draw(st.lists(st.tuples(offsets, values, st.booleans()), max_size=6))
    return {
        "metric": draw(metric_names.filter(lambda m: m not in ("9x", ""))),
        "points": [[NOW + o + (0.5 if half else 0.0), v] for o, v, half in pts],
        "tags": draw(st.one_of(st.none(), tag_lists)),
        "host": draw(st.sampled_from([None, "", "A", "web-1"])),
        "device": draw(st.sampled_from([None, "sda1"])),
        "type": draw(st.sampled_from([None, "gauge", "count", "RATE"])),
        "interval": draw(intervals),
    }


def _with_repeats(series: list[dict[str, Any]], repeats: list[int]) -> dict[str, Any]:
    """Repeat some series verbatim (an agent resending one) at the end."""
    return {"series": series + [series[i % len(series)] for i in repeats if series]}


repeats = st.lists(st.integers(0, 20), max_size=3)


@settings(max_examples=300)
@given(st.lists(v2_series(), max_size=12), repeats)
def test_v2_equals_the_per_series_reference(series: list[dict[str, Any]], again: list[int]) -> None:
    doc = _with_repeats(series, again)
    expected = reference(doc, v1=False)
    assert outcome(parse_v2(doc, ORG, WINDOW)) == expected
    # A small shared cache: hits, misses and evictions never change the answer.
    cache = SeriesIdentities(3)
    assert outcome(parse_v2(doc, ORG, WINDOW, identities=cache)) == expected
    assert outcome(parse_v2(doc, ORG, WINDOW, identities=cache)) == expected
    assert len(cache) <= 3


@settings(max_examples=300)
@given(st.lists(v1_series(), max_size=12), repeats)
def test_v1_equals_the_per_series_reference(series: list[dict[str, Any]], again: list[int]) -> None:
    doc = _with_repeats(series, again)
    expected = reference(doc, v1=True)
    assert outcome(parse_v1(doc, ORG, WINDOW)) == expected
    cache = SeriesIdentities(3)
    assert outcome(parse_v1(doc, ORG, WINDOW, identities=cache)) == expected
    assert outcome(parse_v1(doc, ORG, WINDOW, identities=cache)) == expected


def test_one_cache_serves_v1_and_v2_and_several_orgs() -> None:
    cache = SeriesIdentities(100)
    v2 = {
        "series": [
            {
                "metric": "m",
                "points": [{"timestamp": NOW, "value": 1}],
                "resources": [{"name": "A", "type": "host"}],
            }
        ]
    }
    v1 = {"series": [{"metric": "m", "points": [[NOW, 1]], "host": "A"}]}
    sids = set()
    for org in ("a", "b"):
        for parsed in (parse_v2(v2, org, WINDOW, cache), parse_v1(v1, org, WINDOW, cache)):
            sids.add((org, parsed.batches[0].points.sid.tolist()[0]))
    assert sids == {(org, series_id(org, "m", ("host:A",))) for org in ("a", "b")}


# --- any JSON in any field: a PayloadError or a result, never anything else ---------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
V2_FIELDS = ["metric", "type", "points", "tags", "resources", "interval"]
V1_FIELDS = ["metric", "type", "points", "tags", "host", "device", "interval"]


@settings(max_examples=300)
@given(
    st.lists(st.one_of(v2_series(), v1_series()), min_size=1, max_size=4),
    st.data(),
)
def test_any_field_value_gives_a_payload_error_or_a_result(
    series: list[dict[str, Any]], data: st.DataObject
) -> None:
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(series))
        where = data.draw(st.sampled_from([*sorted(set(V1_FIELDS + V2_FIELDS)), "point", "item"]))
        value = data.draw(json_values)
        if where == "point" and isinstance(target.get("points"), list) and target["points"]:
            point = data.draw(st.sampled_from(target["points"]))
            if isinstance(point, dict):
                point[data.draw(st.sampled_from(["timestamp", "value"]))] = value
            elif isinstance(point, list) and point:
                point[data.draw(st.integers(0, len(point) - 1))] = value
        elif where == "item" and isinstance(target.get("tags"), list):
            target["tags"].append(value)
        else:
            target[where] = value
    for parse in (parse_v1, parse_v2):
        with contextlib.suppress(PayloadError):
            parse({"series": series}, ORG, WINDOW, SeriesIdentities(4))
