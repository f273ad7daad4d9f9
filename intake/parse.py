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
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from intake.batching import BatchBuilder, ParsedPayload
from intake.identity import SeriesIdentities
from intake.rejections import RejectReason, TimeWindow
from strata.model import DATADOG_V2_TYPES, TS_DTYPE, TYPE_NAMES, MetricType
from strata.naming import InvalidName, normalize_metric_name

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


def parse_v2(
    doc: Any, org: str, window: TimeWindow, identities: SeriesIdentities | None = None
) -> ParsedPayload:
    """``POST /api/v2/series`` body (already JSON-decoded) for ``org``.

    ``identities`` caches normalised series identities across requests (one per process);
    without it, a cache lives for this request only.
    """
    series = _series_list(doc)
    if identities is None:
        identities = SeriesIdentities(len(series) + 1)
    try:
        return _fast_v2(series, org, window, identities)
    except _Refused:
        pass
    _validate_v2(series)
    raise AssertionError("intake fast path refused a v2 payload the validator accepts")


def parse_v1(
    doc: Any, org: str, window: TimeWindow, identities: SeriesIdentities | None = None
) -> ParsedPayload:
    """``POST /api/v1/series`` body (already JSON-decoded) for ``org``; ``identities`` as
    for :func:`parse_v2`."""
    series = _series_list(doc)
    if identities is None:
        identities = SeriesIdentities(len(series) + 1)
    try:
        return _fast_v1(series, org, window, identities)
    except _Refused:
        pass
    _validate_v1(series)
    raise AssertionError("intake fast path refused a v1 payload the validator accepts")


# --- fast path ----------------------------------------------------------------------------
#
# One pass over the series with type checks and no field paths; point columns are gathered
# for the whole request and checked and converted at once. Anything wrong raises _Refused,
# and the request is then walked again by _validate_v1/_validate_v2, which check field by
# field in document order and raise the PayloadError naming the first bad field.


class _Refused(Exception):
    """The fast path met something invalid; the validator will name it."""


def _fast_v2(
    series: list[Any], org: str, window: TimeWindow, identities: SeriesIdentities
) -> ParsedPayload:
    builder = BatchBuilder(org, window)
    add_series = builder.add_series
    cached = identities.get
    all_points: list[Any] = []
    for s in series:
        if type(s) is not dict:
            raise _Refused
        raw_metric = s.get("metric")
        points = s.get("points")
        if type(raw_metric) is not str or type(points) is not list:
            raise _Refused
        t = s.get("type")
        mtype = _V2_TYPES.get(t) if type(t) in _V2_TYPE_KEYS else None
        if mtype is None:
            mtype = _fast_v2_type(t)
        tags = s.get("tags")
        if tags is None:
            raw_tags: tuple[Any, ...] = ()
        elif type(tags) is list:
            raw_tags = tuple(tags)
        else:
            raise _Refused
        resources = s.get("resources")
        if resources is not None:
            if type(resources) is not list:
                raise _Refused
            for r in resources:
                if type(r) is not dict:
                    raise _Refused
                name = r.get("name")
                rtype = r.get("type")
                if type(name) is not str or type(rtype) is not str:
                    raise _Refused
                raw_tags += (f"{rtype}:{name}",)
        interval = s.get("interval")
        interval = 0 if interval is None else _fast_interval(interval)
        key = (org, raw_metric, raw_tags)
        try:
            ident = cached(key)
        except TypeError:  # an unhashable tag (a list, an object): not a string
            raise _Refused from None
        if ident is None:
            ident = identities.add(key, org, raw_metric, _checked_tags(raw_tags))
        if ident.invalid is not None:
            # Rare: the points must still be valid for the request to be accepted.
            try:
                _v2_points(points, "")
            except PayloadError:
                raise _Refused from None
            builder.reject(raw_metric, RejectReason.INVALID_METRIC, len(points), ident.invalid)
            continue
        add_series(ident, mtype, interval, len(points))
        all_points += points
    try:
        ts = [p["timestamp"] for p in all_points]
        value = [p["value"] for p in all_points]
    except (TypeError, KeyError):
        raise _Refused from None
    return builder.finish(*_fast_columns(ts, value))


def _fast_v1(
    series: list[Any], org: str, window: TimeWindow, identities: SeriesIdentities
) -> ParsedPayload:
    builder = BatchBuilder(org, window)
    add_series = builder.add_series
    cached = identities.get
    all_points: list[Any] = []
    for s in series:
        if type(s) is not dict:
            raise _Refused
        raw_metric = s.get("metric")
        points = s.get("points")
        if type(raw_metric) is not str or type(points) is not list:
            raise _Refused
        t = s.get("type")
        mtype = _V1_TYPES.get(t) if type(t) in _V1_TYPE_KEYS else None
        if mtype is None:
            mtype = _fast_v1_type(t)
        tags = s.get("tags")
        if tags is None:
            raw_tags: tuple[Any, ...] = ()
        elif type(tags) is list:
            raw_tags = tuple(tags)
        else:
            raise _Refused
        host = s.get("host")
        device = s.get("device")
        if (host is not None and type(host) is not str) or (
            device is not None and type(device) is not str
        ):
            raise _Refused
        interval = s.get("interval")
        interval = 0 if interval is None else _fast_interval(interval)
        key = (org, raw_metric, raw_tags, host, device)
        try:
            ident = cached(key)
        except TypeError:  # an unhashable tag (a list, an object): not a string
            raise _Refused from None
        if ident is None:
            full = _checked_tags(raw_tags)
            if host:
                full += (f"host:{host}",)
            if device:
                full += (f"device:{device}",)
            ident = identities.add(key, org, raw_metric, full)
        if ident.invalid is not None:
            raise _Refused  # v1: a 400 naming the metric field
        add_series(ident, mtype, interval, len(points))
        all_points += points
    if not set(map(type, all_points)) <= _LIST or not set(map(len, all_points)) <= _PAIR:
        raise _Refused
    ts = [p[0] for p in all_points]
    value = [p[1] for p in all_points]
    return builder.finish(*_fast_columns(ts, value))


_LIST = frozenset((list,))
_PAIR = frozenset((2,))
# Exact lookups for the usual type values. Only these key types are looked up: a list is
# unhashable, and bool or float would compare equal to the int codes, which they are not.
_V2_TYPES: dict[Any, MetricType] = {None: MetricType.GAUGE, **DATADOG_V2_TYPES, **TYPE_NAMES}
_V2_TYPE_KEYS = frozenset((type(None), int, str))
_V1_TYPES: dict[Any, MetricType] = {None: MetricType.GAUGE, **TYPE_NAMES}
_V1_TYPE_KEYS = frozenset((type(None), str))


def _checked_tags(raw_tags: tuple[Any, ...]) -> tuple[str, ...]:
    """Tags of a cache miss must be strings; a hit has them so (only valid keys are stored,
    and a string never equals a non-string)."""
    if not all(type(t) is str for t in raw_tags):
        raise _Refused
    return raw_tags


def _fast_interval(v: Any) -> int:
    if type(v) not in _NUMBER or not (0 <= v < 2**32):
        raise _Refused
    return int(v)


def _fast_v2_type(v: Any) -> MetricType:
    if v is None:
        return MetricType.GAUGE
    try:
        return _v2_type(v, "")
    except PayloadError:
        raise _Refused from None


def _fast_v1_type(v: Any) -> MetricType:
    if v is None:
        return MetricType.GAUGE
    try:
        return _v1_type(v, "")
    except PayloadError:
        raise _Refused from None


def _fast_columns(
    ts: list[Any], value: list[Any]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """:func:`_columns` for the whole request, refusing instead of naming the field."""
    try:
        return _columns(ts, value, "", _no_path)
    except PayloadError:
        raise _Refused from None


def _no_path(_j: int, _name: str) -> str:
    return ""


# --- validation in document order (only after the fast path refused) -----------------------


def _validate_v2(series: list[Any]) -> None:
    """Raise the :class:`PayloadError` for the first bad field, in document order."""
    for i, item in enumerate(series):
        path = f"series[{i}]"
        s = _object(item, path)
        _string(s.get("metric"), f"{path}.metric")
        _v2_type(s.get("type"), f"{path}.type")
        points = _list(s.get("points"), f"{path}.points")
        _v2_points(points, f"{path}.points")
        _tag_list(s.get("tags"), f"{path}.tags")
        _resource_tags(s.get("resources"), f"{path}.resources")
        _interval(s.get("interval"), f"{path}.interval")


def _validate_v1(series: list[Any]) -> None:
    """Raise the :class:`PayloadError` for the first bad field, in document order."""
    for i, item in enumerate(series):
        path = f"series[{i}]"
        s = _object(item, path)
        raw_metric = _string(s.get("metric"), f"{path}.metric")
        try:
            normalize_metric_name(raw_metric)
        except InvalidName as exc:
            raise PayloadError(f"{path}.metric", str(exc)) from None
        _v1_type(s.get("type"), f"{path}.type")
        _v1_points(_list(s.get("points"), f"{path}.points"), f"{path}.points")
        _tag_list(s.get("tags"), f"{path}.tags")
        _optional_string(s.get("host"), f"{path}.host")
        _optional_string(s.get("device"), f"{path}.device")
        _interval(s.get("interval"), f"{path}.interval")


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
    return convert_columns(ts, value, path, field_path)


def convert_columns(
    ts: Sequence[int | float],
    value: Sequence[int | float],
    path: str = "",
    field_path: Callable[[int, str], str] = _no_path,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Point columns of numbers (ints or floats, never bools: checked by the caller) as
    int64 seconds (truncated) and float64 values; a value beyond float64 becomes infinite
    (and is then rejected per point). Raises :class:`PayloadError` for a timestamp that is
    not finite or beyond float64."""
    try:
        ts_f = np.array(ts, dtype=np.float64)
    except OverflowError:
        raise PayloadError(path, "timestamp out of range") from None
    ts_i = seconds(ts_f, field_path)
    try:
        val = np.array(value, dtype=np.float64)
    except OverflowError:
        # An integer beyond float64: as unrepresentable as Inf, so it is rejected like Inf.
        # Element by element, so one such value never changes how the others convert.
        val = np.array([_float_or_inf(v) for v in value], dtype=np.float64)
    return ts_i, val


def seconds(
    ts_f: npt.NDArray[np.float64], field_path: Callable[[int, str], str] = _no_path
) -> npt.NDArray[np.int64]:
    """Timestamps converted to float64 as int64 seconds (truncated, clipped far beyond any
    window); :class:`PayloadError` for one that is not finite."""
    if not np.all(np.isfinite(ts_f)):
        bad = int(np.argmin(np.isfinite(ts_f)))
        raise PayloadError(field_path(bad, "timestamp"), "expected a finite number")
    return np.trunc(np.clip(ts_f, -_TS_CLIP, _TS_CLIP)).astype(TS_DTYPE)


def _float_or_inf(v: float) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf
