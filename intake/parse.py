"""Datadog v1/v2 series JSON -> columnar batches plus per-group rejections (pure).

Shape errors (malformed JSON, a missing field, a string where a number belongs) reject the
whole request with :class:`PayloadError`, whose message names the field path, e.g.
``series[3].points[0].value: expected a number``. Point-level problems (NaN/Inf values,
timestamps outside the window) reject only those points and are reported per
(metric, reason) group.

Invalid metric names: on v2 the series is rejected and reported in ``errors`` while the rest
of the request is accepted; on v1, whose responses must never carry ``errors`` (the
``datadog`` package treats any as failure), the whole request is refused with a
:class:`PayloadError` naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from intake.batching import BatchBuilder, ParsedPayload
from intake.rejections import RejectReason, TimeWindow
from strata.model import DATADOG_V2_TYPES, TS_DTYPE, TYPE_NAMES, MetricType
from strata.naming import InvalidName, canonical_tags, normalize_metric_name
from strata.series_id import series_id

_NUMBER = frozenset((int, float))
# Timestamps are clipped into this range before the int64 cast; anything near it is far
# outside any window, so clipping never changes which points are accepted.
_TS_CLIP = float(2**62)


class PayloadError(ValueError):
    """The request body does not have the documented shape; ``path`` names the field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def load_json(body: bytes) -> Any:
    """Parse JSON; NaN/Infinity literals (sent by Python's ``json``) become float values.

    orjson refuses those literals, so a refused body is re-read with the standard library,
    which accepts them; the values are then rejected per point rather than the request.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PayloadError("body", f"malformed JSON: {exc}") from None


def parse_v2(doc: Any, org: str, window: TimeWindow) -> ParsedPayload:
    """``POST /api/v2/series`` body (already JSON-decoded) for ``org``."""
    builder = BatchBuilder(org, window)
    for i, item in enumerate(_series_list(doc)):
        path = f"series[{i}]"
        s = _object(item, path)
        raw_metric = _string(s.get("metric"), f"{path}.metric")
        mtype = _v2_type(s.get("type"), f"{path}.type")
        points = _list(s.get("points"), f"{path}.points")
        ts, value = _v2_points(points, f"{path}.points")
        tags = _tag_list(s.get("tags"), f"{path}.tags")
        tags.extend(_resource_tags(s.get("resources"), f"{path}.resources"))
        interval = _interval(s.get("interval"), f"{path}.interval")
        try:
            metric = normalize_metric_name(raw_metric)
        except InvalidName as exc:
            builder.reject(raw_metric, RejectReason.INVALID_METRIC, len(points), str(exc))
            continue
        _add(builder, org, metric, mtype, interval, tags, ts, value)
    return builder.finish()


def parse_v1(doc: Any, org: str, window: TimeWindow) -> ParsedPayload:
    """``POST /api/v1/series`` body (already JSON-decoded) for ``org``."""
    builder = BatchBuilder(org, window)
    for i, item in enumerate(_series_list(doc)):
        path = f"series[{i}]"
        s = _object(item, path)
        raw_metric = _string(s.get("metric"), f"{path}.metric")
        try:
            metric = normalize_metric_name(raw_metric)
        except InvalidName as exc:
            raise PayloadError(f"{path}.metric", str(exc)) from None
        mtype = _v1_type(s.get("type"), f"{path}.type")
        ts, value = _v1_points(_list(s.get("points"), f"{path}.points"), f"{path}.points")
        tags = _tag_list(s.get("tags"), f"{path}.tags")
        host = _optional_string(s.get("host"), f"{path}.host")
        if host:
            tags.append(f"host:{host}")
        device = _optional_string(s.get("device"), f"{path}.device")
        if device:
            tags.append(f"device:{device}")
        interval = _interval(s.get("interval"), f"{path}.interval")
        _add(builder, org, metric, mtype, interval, tags, ts, value)
    return builder.finish()


def _add(
    builder: BatchBuilder,
    org: str,
    metric: str,
    mtype: MetricType,
    interval: int,
    tags: list[str],
    ts: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
) -> None:
    canonical = canonical_tags(tags)
    sid = series_id(org, metric, canonical)
    builder.add_series(metric, sid, mtype, interval, canonical, ts, value)


# --- shapes -------------------------------------------------------------------------------


def _series_list(doc: Any) -> list[Any]:
    if not isinstance(doc, dict):
        raise PayloadError("body", "expected a JSON object")
    if "series" not in doc:
        raise PayloadError("series", "required field is missing")
    return _list(doc["series"], "series")


def _object(v: Any, path: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise PayloadError(path, "expected an object")
    return v


def _list(v: Any, path: str) -> list[Any]:
    if v is None:
        raise PayloadError(path, "required field is missing")
    if not isinstance(v, list):
        raise PayloadError(path, "expected a list")
    return v


def _string(v: Any, path: str) -> str:
    if v is None:
        raise PayloadError(path, "required field is missing")
    if not isinstance(v, str):
        raise PayloadError(path, "expected a string")
    return v


def _optional_string(v: Any, path: str) -> str | None:
    return None if v is None else _string(v, path)


def _is_number(v: Any) -> bool:
    return type(v) in _NUMBER  # bool is not a number here, though it subclasses int


def _tag_list(v: Any, path: str) -> list[str]:
    if v is None:
        return []
    tags = _list(v, path)
    if not all(type(t) is str for t in tags):
        bad = next(i for i, t in enumerate(tags) if type(t) is not str)
        raise PayloadError(f"{path}[{bad}]", "expected a string")
    return list(tags)


def _resource_tags(v: Any, path: str) -> list[str]:
    """v2 resources: ``{"name", "type"}``; type ``host`` becomes a ``host:<name>`` tag and
    any other type ``<type>:<name>``."""
    if v is None:
        return []
    out = []
    for j, r in enumerate(_list(v, path)):
        obj = _object(r, f"{path}[{j}]")
        name = _string(obj.get("name"), f"{path}[{j}].name")
        rtype = _string(obj.get("type"), f"{path}[{j}].type")
        out.append(f"{rtype}:{name}")
    return out


def _interval(v: Any, path: str) -> int:
    if v is None:
        return 0
    if not _is_number(v) or not (0 <= v < 2**32):
        raise PayloadError(path, "expected a non-negative number of seconds")
    return int(v)


def _v2_type(v: Any, path: str) -> MetricType:
    if v is None:
        return MetricType.GAUGE  # unspecified
    if type(v) is int and v in DATADOG_V2_TYPES:
        return DATADOG_V2_TYPES[v]
    if isinstance(v, str) and v.lower() in TYPE_NAMES:
        return TYPE_NAMES[v.lower()]
    raise PayloadError(path, "expected 0-3 or one of unspecified, count, rate, gauge")


def _v1_type(v: Any, path: str) -> MetricType:
    if v is None:
        return MetricType.GAUGE
    if isinstance(v, str) and v.lower() in TYPE_NAMES:
        return TYPE_NAMES[v.lower()]
    raise PayloadError(path, "expected one of gauge, count, rate")


# --- points -------------------------------------------------------------------------------


def _v2_points(
    points: list[Any], path: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    try:
        ts = [p["timestamp"] for p in points]
        value = [p["value"] for p in points]
    except (TypeError, KeyError):
        # Slow path only to name the first bad point.
        for j, p in enumerate(points):
            obj = _object(p, f"{path}[{j}]")
            for name in ("timestamp", "value"):
                if name not in obj:
                    raise PayloadError(f"{path}[{j}].{name}", "required field is missing") from None
        raise
    return _columns(ts, value, path, lambda j, name: f"{path}[{j}].{name}")


def _v1_points(
    points: list[Any], path: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    for j, p in enumerate(points):
        if type(p) is not list or len(p) != 2:
            raise PayloadError(f"{path}[{j}]", "expected a [timestamp, value] pair")
    ts = [p[0] for p in points]
    value = [p[1] for p in points]
    return _columns(
        ts, value, path, lambda j, name: f"{path}[{j}][{0 if name == 'timestamp' else 1}]"
    )


def _columns(
    ts: Sequence[Any],
    value: Sequence[Any],
    path: str,
    field_path: Callable[[int, str], str],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Type-check and convert the point columns; timestamps are truncated to seconds."""
    for name, column in (("timestamp", ts), ("value", value)):
        if not {type(x) for x in column} <= _NUMBER:
            bad = next(j for j, x in enumerate(column) if not _is_number(x))
            raise PayloadError(field_path(bad, name), "expected a number")
    try:
        ts_f = np.array(ts, dtype=np.float64)
    except OverflowError:
        raise PayloadError(path, "timestamp out of range") from None
    if not np.all(np.isfinite(ts_f)):
        bad = int(np.argmin(np.isfinite(ts_f)))
        raise PayloadError(field_path(bad, "timestamp"), "expected a finite number")
    ts_i = np.trunc(np.clip(ts_f, -_TS_CLIP, _TS_CLIP)).astype(TS_DTYPE)
    try:
        val = np.array(value, dtype=np.float64)
    except OverflowError:
        # An integer beyond float64: as unrepresentable as Inf, so it is rejected like Inf.
        val = np.array([float(v) if abs(v) < 2**1023 else np.inf for v in value])
    return ts_i, val
