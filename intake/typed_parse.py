"""v1/v2 series bodies decoded straight into typed structs (msgspec): intake's fast path.

:mod:`intake.parse` works on the generic JSON tree (a dict per series, per point, per
resource; a str per tag). For the agent's shape — 1 000 series of one point each, ~10 tags
apiece — building that tree and walking it cost more than everything else intake does. Here
the body is decoded against the documented shape instead (:mod:`msgspec`): series and points
become slotted structs the garbage collector never tracks, field types are checked in C, and
``tags`` and ``resources`` stay raw JSON bytes. A series' identity-cache key is then
``(org, metric, raw tags, raw resources)`` (v1: raw tags, host, device), so a series seen
before costs two small byte copies and one dict lookup; its tags are decoded, checked and
normalised only on a cache miss. Equal bytes decode to equal values, so a key still
determines the raw series fields and a hit can never answer differently than a miss.

Same contract as :mod:`intake.parse`, by construction: this path takes only bodies that are
well-formed and well-typed with valid metric names, and produces exactly what
:func:`intake.parse.parse_v2` / :func:`~intake.parse.parse_v1` produce for them (the same
column conversion, the same :class:`~intake.batching.BatchBuilder`). Anything else —
malformed or mistyped JSON, ``NaN`` literals, an invalid metric name, a type string in
another case — falls back to :func:`intake.parse.load_json` and the generic parser, which
accepts what it accepts and raises the :class:`~intake.parse.PayloadError` naming the first
bad field, word for word as before. tests/property/test_intake_typed_parse.py checks both
paths agree on generated bodies, good and bad.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
from msgspec import Raw, Struct

from intake.batching import BatchBuilder, ParsedPayload, SeriesRow
from intake.identity import SeriesIdentities, SeriesIdentity
from intake.parse import (
    PayloadError,
    convert_columns,
    load_json,
    parse_v1,
    parse_v2,
    seconds,
)
from intake.rejections import TimeWindow
from strata.model import DATADOG_V2_TYPES, TYPE_NAMES, MetricType

_NULL = Raw(b"null")
# ``_EMPTY + raw`` copies a Raw's bytes into a (hashable) bytes object, in half the time of
# ``bytes(raw)`` (a binary operator instead of a constructor call with argument parsing).
_EMPTY = b""
_INTERVAL_LIMIT = 2**32

# --- the documented shapes (unknown fields are ignored, as by the generic parser) ----------


class _PointV2(Struct, gc=False):
    timestamp: int | float
    value: int | float


class _SeriesV2(Struct, gc=False):
    metric: str
    points: list[_PointV2]
    type: int | str | None = None
    tags: Raw = _NULL
    resources: Raw = _NULL
    interval: int | float | None = None


class _BodyV2(Struct, gc=False):
    series: list[_SeriesV2]


class _PointV1(Struct, gc=False, array_like=True, forbid_unknown_fields=True):
    """``[timestamp, value]``: exactly two numbers."""

    timestamp: int | float
    value: int | float


class _SeriesV1(Struct, gc=False):
    metric: str
    points: list[_PointV1]
    type: str | None = None
    tags: Raw = _NULL
    host: str | None = None
    device: str | None = None
    interval: int | float | None = None


class _BodyV1(Struct, gc=False):
    series: list[_SeriesV1]


class _Resource(Struct, gc=False):
    name: str
    type: str


_DECODE_V2 = msgspec.json.Decoder(_BodyV2).decode
_DECODE_V1 = msgspec.json.Decoder(_BodyV1).decode
_DECODE_TAGS = msgspec.json.Decoder(tuple[str, ...] | None).decode
_DECODE_RESOURCES = msgspec.json.Decoder(list[_Resource] | None).decode
# What the decoder raises on a body it does not take: a wrong shape or type, malformed JSON,
# invalid UTF-8 (a ValueError), nesting deeper than it recurses. The generic parser decides.
_DECODE_ERRORS = (msgspec.MsgspecError, ValueError, RecursionError)
_TIMESTAMP = attrgetter("timestamp")
_VALUE = attrgetter("value")

# Exact lookups of the type field; a string in another case goes through .lower() below.
# msgspec has already refused bools and floats, which would compare equal to the int codes.
# Plain ints (not MetricType members): numpy converts them to a column faster.
_V1_TYPES: dict[str | None, int] = {None: int(MetricType.GAUGE)}
_V1_TYPES.update((name, int(t)) for name, t in TYPE_NAMES.items())
_V2_TYPES: dict[int | str | None, int] = dict(_V1_TYPES.items())
_V2_TYPES.update((code, int(t)) for code, t in DATADOG_V2_TYPES.items())


class _Refused(Exception):
    """Not for this path: the generic parser decides (and names what is wrong)."""


# --- entry points -------------------------------------------------------------------------


def parse_v2_body(
    body: bytes, org: str, window: TimeWindow, identities: SeriesIdentities
) -> ParsedPayload:
    """``POST /api/v2/series`` body (decompressed bytes) for ``org``; the same result, or the
    same :class:`~intake.parse.PayloadError`, as ``parse_v2(load_json(body), ...)``."""
    try:
        return _typed_v2(body, org, window, identities)
    except _Refused:
        return parse_v2(load_json(body), org, window, identities)


def parse_v1_body(
    body: bytes, org: str, window: TimeWindow, identities: SeriesIdentities
) -> ParsedPayload:
    """``POST /api/v1/series`` body, as :func:`parse_v2_body` is for v2."""
    try:
        return _typed_v1(body, org, window, identities)
    except _Refused:
        return parse_v1(load_json(body), org, window, identities)


# --- the typed path -----------------------------------------------------------------------


def _typed_v2(
    body: bytes, org: str, window: TimeWindow, identities: SeriesIdentities
) -> ParsedPayload:
    try:
        series = _DECODE_V2(body).series
    except _DECODE_ERRORS:
        raise _Refused from None
    cached = identities.get
    types = _V2_TYPES
    rows: list[SeriesRow] = []
    add_row = rows.append
    points: list[_PointV2] = []
    for s in series:
        key = (org, s.metric, _EMPTY + s.tags, _EMPTY + s.resources)
        ident = cached(key)
        if ident is None:
            ident = _add_v2(identities, key, s)
        mtype = types.get(s.type)
        if mtype is None:
            mtype = _type_any_case(s.type)
        interval = s.interval
        if interval is not None:
            interval = _interval(interval)
        s_points = s.points
        add_row((ident, mtype, interval or 0, len(s_points)))
        points += s_points
    return _finish(org, window, rows, points)


def _typed_v1(
    body: bytes, org: str, window: TimeWindow, identities: SeriesIdentities
) -> ParsedPayload:
    try:
        series = _DECODE_V1(body).series
    except _DECODE_ERRORS:
        raise _Refused from None
    cached = identities.get
    types = _V1_TYPES
    rows: list[SeriesRow] = []
    add_row = rows.append
    points: list[_PointV1] = []
    for s in series:
        key = (org, s.metric, _EMPTY + s.tags, s.host, s.device)
        ident = cached(key)
        if ident is None:
            ident = _add_v1(identities, key, s)
        mtype = types.get(s.type)
        if mtype is None:
            mtype = _type_any_case(s.type)
        interval = s.interval
        if interval is not None:
            interval = _interval(interval)
        s_points = s.points
        add_row((ident, mtype, interval or 0, len(s_points)))
        points += s_points
    return _finish(org, window, rows, points)


def _finish(
    org: str,
    window: TimeWindow,
    rows: list[SeriesRow],
    points: list[_PointV2] | list[_PointV1],
) -> ParsedPayload:
    n = len(points)
    try:
        # Straight into float64 columns: no intermediate lists of numbers. Python converts
        # each int or float exactly as the list conversion of convert_columns does.
        ts_f = np.fromiter(map(_TIMESTAMP, points), np.float64, n)
        value = np.fromiter(map(_VALUE, points), np.float64, n)
        ts = seconds(ts_f)
    except OverflowError:  # an integer beyond float64: convert_columns' rules
        try:
            ts, value = convert_columns(list(map(_TIMESTAMP, points)), list(map(_VALUE, points)))
        except PayloadError:  # e.g. such an integer as a timestamp
            raise _Refused from None
    except PayloadError:  # a timestamp that is not finite
        raise _Refused from None
    builder = BatchBuilder(org, window)
    builder.add_rows(rows)
    return builder.finish(ts, value)


def _add_v2(identities: SeriesIdentities, key: Any, s: _SeriesV2) -> SeriesIdentity:
    """A cache miss: decode and check the raw tags and resources, then resolve."""
    try:
        tags = _DECODE_TAGS(s.tags) or ()
        resources = _DECODE_RESOURCES(s.resources) or ()
    except _DECODE_ERRORS:
        raise _Refused from None
    full = tags + tuple(f"{r.type}:{r.name}" for r in resources)
    return _remember(identities, key, s.metric, full)


def _add_v1(identities: SeriesIdentities, key: Any, s: _SeriesV1) -> SeriesIdentity:
    try:
        tags = _DECODE_TAGS(s.tags) or ()
    except _DECODE_ERRORS:
        raise _Refused from None
    if s.host:
        tags += (f"host:{s.host}",)
    if s.device:
        tags += (f"device:{s.device}",)
    return _remember(identities, key, s.metric, tags)


def _remember(
    identities: SeriesIdentities, key: Any, raw_metric: str, raw_tags: tuple[str, ...]
) -> SeriesIdentity:
    """Resolve and cache a valid identity. An invalid metric name is never cached under a
    typed key (so a hit needs no check): v2 reports that series in ``errors`` and v1 answers
    400 naming the field, both the generic path's business."""
    identity = identities.resolve(key[0], raw_metric, raw_tags)
    if identity.invalid is not None:
        raise _Refused
    identities.put(key, identity)
    return identity


def _type_any_case(v: int | str | None) -> int:
    if isinstance(v, str) and v.lower() in TYPE_NAMES:
        return int(TYPE_NAMES[v.lower()])
    raise _Refused


def _interval(v: float) -> int:
    if not 0 <= v < _INTERVAL_LIMIT:
        raise _Refused
    return int(v)
