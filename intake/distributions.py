"""``POST /api/v1/distribution_points`` JSON -> one sketch per (series, ts), per metric (pure).

The shape is what ``datadog``'s ``api.Distribution.send`` and ``datadog-api-client``'s
``MetricsApi.submit_distribution_points`` (v1 ``DistributionPointsPayload``) send::

    {"series": [{"metric": "req.latency", "points": [[1700000000, [0.12, 0.3, 0.08]]],
                 "tags": ["env:prod"], "host": "web-1", "type": "distribution"}]}

A *point* is one ``[timestamp, [values...]]`` pair; its values are folded at intake into
one DDSketch (:class:`strata.sketch.SketchBatch`), and the points of one (series, ts) in a
request are merged into one row. Validation and rejection follow the v1 series endpoint
(intake/parse.py): a shape error refuses the request with a :class:`PayloadError` naming
the first bad field in document order, an invalid metric name too (v1 answers may never
carry ``errors``); a point with a NaN or infinite value, or a timestamp outside the
late/future window, is rejected whole and counted per (metric, reason). A point with an
empty value list holds nothing and is skipped. A bare number in place of the value list
counts as a list of one (``datadog``'s ``format_points`` sends that for a point given
without a timestamp).

How the window checks, the grouping per metric and the (series, index bucket)
announcements are reused: the points go through :class:`intake.batching.BatchBuilder` as
ordinary points whose *value is the point's index* in the request (NaN when one of its
values is not finite). The builder's accepted rows therefore name the accepted points, and
their values are gathered with one fancy index per metric; nothing loops per value.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from intake.batching import BatchBuilder
from intake.identity import SeriesIdentities
from intake.parse import (
    PayloadError,
    _list,
    _object,
    _optional_string,
    _series_list,
    _string,
    _tag_list,
)
from intake.rejections import Rejection, RejectReason, TimeWindow
from strata.arrays import ranges
from strata.codec import SeriesBatch, SketchMessage
from strata.model import TS_DTYPE, MetricType
from strata.naming import InvalidName, normalize_metric_name
from strata.sketch import SketchBatch, SketchParams

_NUMBER = frozenset((int, float))
_TS_CLIP = float(2**62)
DISTRIBUTION_TYPE = "distribution"

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class MetricSketches:
    """The sketches of one (org, metric) of a request and the (series, bucket) rows they
    touch (to announce to the indexes)."""

    sketches: SketchMessage
    series: SeriesBatch


@dataclass(frozen=True, slots=True)
class ParsedDistributions:
    batches: list[MetricSketches]
    rejections: list[Rejection]
    window: TimeWindow
    #: accepted points ([ts, values] pairs) and the values they held
    points: int
    values: int

    def rejected_by_reason(self) -> Counter[RejectReason]:
        out: Counter[RejectReason] = Counter()
        for r in self.rejections:
            out[r.reason] += r.count
        return out

    def messages(self) -> list[str]:
        return [r.message(self.window) for r in self.rejections]


def parse_distributions(
    doc: Any,
    org: str,
    window: TimeWindow,
    identities: SeriesIdentities | None = None,
    params: SketchParams | None = None,
) -> ParsedDistributions:
    """The body (already JSON-decoded) for ``org``; raises :class:`PayloadError`."""
    params = params or SketchParams()
    series = _series_list(doc)
    if identities is None:
        identities = SeriesIdentities(len(series) + 1)
    builder = BatchBuilder(org, window)
    ts_col: list[Any] = []
    flat: list[Any] = []
    lengths: list[int] = []
    for i, item in enumerate(series):
        path = f"series[{i}]"
        s = _object(item, path)
        raw_metric = _string(s.get("metric"), f"{path}.metric")
        try:
            normalize_metric_name(raw_metric)
        except InvalidName as exc:
            raise PayloadError(f"{path}.metric", str(exc)) from None
        kind = s.get("type")
        if kind is not None and (not isinstance(kind, str) or kind.lower() != DISTRIBUTION_TYPE):
            raise PayloadError(f"{path}.type", "expected 'distribution'")
        points = _list(s.get("points"), f"{path}.points")
        n = 0
        for j, p in enumerate(points):
            if type(p) is not list or len(p) != 2:
                raise PayloadError(f"{path}.points[{j}]", "expected a [timestamp, [values]] pair")
            values = p[1]
            if type(values) is list:
                if not values:
                    continue  # nothing to store
                flat += values
                lengths.append(len(values))
            elif type(values) in _NUMBER:
                flat.append(values)
                lengths.append(1)
            else:
                raise PayloadError(f"{path}.points[{j}][1]", "expected a list of numbers")
            ts_col.append(p[0])
            n += 1
        tags = tuple(_tag_list(s.get("tags"), f"{path}.tags"))
        host = _optional_string(s.get("host"), f"{path}.host")
        if n == 0:
            continue
        key = (org, raw_metric, tags, host, None)
        ident = identities.get(key)
        if ident is None:
            full = tags + ((f"host:{host}",) if host else ())
            ident = identities.add(key, org, raw_metric, full)
        builder.add_series(ident, MetricType.DISTRIBUTION, 0, n)
    ts = _timestamps(ts_col, series)
    values = _values(flat, series)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # The builder's "value" of a point is its index, NaN when a value of it is not finite
    # (the builder then rejects it as non-finite, like a series point).
    finite = np.ones(len(lengths), dtype=bool)
    bad = ~np.isfinite(values)
    if bad.any():
        owner = np.repeat(np.arange(len(lengths)), np.diff(offsets))
        finite[owner[bad]] = False
    index = np.where(finite, np.arange(len(lengths), dtype=np.float64), np.nan)
    parsed = builder.finish(ts, index)
    batches = []
    for b in parsed.batches:
        rows = b.points.value.astype(np.int64)
        starts, sizes = offsets[rows], np.diff(offsets)[rows]
        row_offsets = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(sizes, out=row_offsets[1:])
        sketches = SketchBatch.from_ragged(
            params, b.points.sid, b.points.ts, row_offsets, values[ranges(starts, sizes)]
        ).merge_by_key()
        batches.append(MetricSketches(SketchMessage(org, b.points.metric, sketches), b.series))
    accepted = [b.sketches.batch for b in batches]
    return ParsedDistributions(
        batches,
        parsed.rejections,
        window,
        points=parsed.accepted,
        values=int(sum(float(x.count.sum()) for x in accepted)),
    )


def _first_bad(series: list[Any], check: str) -> PayloadError:
    """The :class:`PayloadError` of the first point (in document order) whose timestamp
    (``check == "ts"``) or one of whose values (``"value"``) is not a finite number."""
    for i, s in enumerate(series):
        for j, p in enumerate(s["points"]):
            if check == "ts":
                if type(p[0]) not in _NUMBER or not np.isfinite(float(p[0])):
                    return PayloadError(f"series[{i}].points[{j}][0]", "expected a number")
                continue
            values = p[1] if type(p[1]) is list else [p[1]]
            for k, v in enumerate(values):
                if type(v) not in _NUMBER:
                    return PayloadError(f"series[{i}].points[{j}][1][{k}]", "expected a number")
    return PayloadError("series", "expected numbers")  # pragma: no cover - callers found one


def _timestamps(ts: list[Any], series: list[Any]) -> I64:
    if not {type(x) for x in ts} <= _NUMBER:
        raise _first_bad(series, "ts")
    try:
        ts_f = np.array(ts, dtype=np.float64)
    except OverflowError:
        raise PayloadError("series", "timestamp out of range") from None
    if not np.all(np.isfinite(ts_f)):
        raise _first_bad(series, "ts")
    return np.trunc(np.clip(ts_f, -_TS_CLIP, _TS_CLIP)).astype(TS_DTYPE)


def _values(flat: list[Any], series: list[Any]) -> F64:
    if not {type(x) for x in flat} <= _NUMBER:
        raise _first_bad(series, "value")
    try:
        return np.array(flat, dtype=np.float64)
    except OverflowError:
        # An integer beyond float64 is as unrepresentable as Inf: its point is rejected.
        return np.array([_float_or_inf(v) for v in flat], dtype=np.float64)


def _float_or_inf(v: float) -> float:
    try:
        return float(v)
    except OverflowError:
        return float("inf")
