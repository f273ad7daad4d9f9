"""The typed fast path (intake.typed_parse) gives what the generic parser gives, body for body.

The generic parser (``parse_vN(load_json(body))``) is checked against a per-series reference
in test_intake_batching.py; here every body — good ones, ones with NaN literals, huge
integers, invalid names, and ones with any JSON value dropped into any field — must give the
same batches, rejections and messages through ``parse_vN_body``, or the same PayloadError
word for word. Identity caches are shared across bodies and paths (typed keys beside the
generic ones, hits, misses and evictions). A separate check makes sure the typed path really
takes the well-typed bodies, so the comparison is not between the generic parser and itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import intake.batching
from bench.workload import CpuOnly, by_series_runs, v1_body, v2_body
from intake import typed_parse
from intake.batching import ParsedPayload
from intake.identity import SeriesIdentities
from intake.parse import PayloadError, load_json, parse_v1, parse_v2
from intake.rejections import TimeWindow
from intake.typed_parse import parse_v1_body, parse_v2_body
from tests.property.test_intake_batching import (
    NOW,
    ORG,
    V1_FIELDS,
    V2_FIELDS,
    WINDOW,
    Outcome,
    json_values,
    outcome,
    reference,
    repeats,
    v1_series,
    v2_series,
)

Generic = Callable[[Any, str, TimeWindow, SeriesIdentities | None], ParsedPayload]
Typed = Callable[[bytes, str, TimeWindow, SeriesIdentities], ParsedPayload]
Result = Outcome | tuple[str, str]


def generic(parse: Generic, body: bytes, cache: SeriesIdentities) -> Result:
    try:
        return outcome(parse(load_json(body), ORG, WINDOW, cache))
    except PayloadError as exc:
        return ("PayloadError", str(exc))


def typed(parse: Typed, body: bytes, cache: SeriesIdentities) -> Result:
    try:
        parsed = parse(body, ORG, WINDOW, cache)
    except PayloadError as exc:
        return ("PayloadError", str(exc))
    return outcome(parsed)


def dumps(doc: Any, compact: bool) -> bytes:
    """Python's json: NaN/Infinity literals for non-finite floats, big ints in full."""
    if compact:
        return json.dumps(doc, separators=(",", ":")).encode()
    return json.dumps(doc, indent=1).encode()


def check_same(body: bytes, v1: bool, shared: SeriesIdentities) -> Result:
    """Both paths, fresh caches and a shared one (used twice: misses, then hits)."""
    g_parse, t_parse = (parse_v1, parse_v1_body) if v1 else (parse_v2, parse_v2_body)
    expected = generic(g_parse, body, SeriesIdentities(1000))
    assert typed(t_parse, body, SeriesIdentities(1000)) == expected
    for _ in range(2):
        assert typed(t_parse, body, shared) == expected
        assert generic(g_parse, body, shared) == expected
    return expected


# --- generated bodies --------------------------------------------------------------------


@settings(max_examples=300)
@given(st.lists(v2_series(), max_size=10), repeats, st.booleans())
def test_v2_bodies_parse_as_the_generic_parser_does(
    series: list[dict[str, Any]], again: list[int], compact: bool
) -> None:
    doc = {"series": series + [series[i % len(series)] for i in again if series]}
    result = check_same(dumps(doc, compact), v1=False, shared=SeriesIdentities(3))
    assert result == reference(doc, v1=False)


@settings(max_examples=300)
@given(st.lists(v1_series(), max_size=10), repeats, st.booleans())
def test_v1_bodies_parse_as_the_generic_parser_does(
    series: list[dict[str, Any]], again: list[int], compact: bool
) -> None:
    doc = {"series": series + [series[i % len(series)] for i in again if series]}
    result = check_same(dumps(doc, compact), v1=True, shared=SeriesIdentities(3))
    assert result == reference(doc, v1=True)


@settings(max_examples=400)
@given(
    st.lists(st.one_of(v2_series(), v1_series()), min_size=1, max_size=4),
    st.data(),
    st.booleans(),
)
def test_any_json_in_any_field_gives_the_same_result_or_error(
    series: list[dict[str, Any]], data: st.DataObject, compact: bool
) -> None:
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(series))
        where = data.draw(st.sampled_from([*sorted(set(V1_FIELDS + V2_FIELDS)), "point", "item"]))
        value = data.draw(json_values)
        if where == "point" and isinstance(target.get("points"), list) and target["points"]:
            point = data.draw(st.sampled_from(target["points"]))
            if isinstance(point, dict):
                point[data.draw(st.sampled_from(["timestamp", "value", "extra"]))] = value
            elif isinstance(point, list) and point:
                point[data.draw(st.integers(0, len(point) - 1))] = value
        elif where == "item" and isinstance(target.get("tags"), list):
            target["tags"].append(value)
        else:
            target[where] = value
    body = dumps({"series": series}, compact)
    shared = SeriesIdentities(4)
    check_same(body, v1=False, shared=shared)
    check_same(body, v1=True, shared=shared)


# Well-typed bodies: finite numbers within float64, valid names, any case of the type.
clean_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**60), 2**60)
)
clean_metrics = st.sampled_from(["cpu.user", "cpu user", "mem.free", "disk"])
clean_tags = st.one_of(
    st.none(), st.lists(st.sampled_from(["env:prod", "ENV:prod", "rack:1", "!!", "a b"]))
)
clean_intervals = st.one_of(st.none(), st.integers(0, 2**32 - 1), st.just(10.7))


@st.composite
def clean_v2(draw: st.DrawFn) -> dict[str, Any]:
    pts = draw(st.lists(st.tuples(st.integers(-5000, 1000), clean_values), max_size=4))
    s: dict[str, Any] = {
        "metric": draw(clean_metrics),
        "points": [{"timestamp": NOW + o, "value": v} for o, v in pts],
        "type": draw(st.sampled_from([None, 0, 1, 2, 3, "count", "Rate", "GAUGE"])),
        "interval": draw(clean_intervals),
        "unit": "byte",
    }
    if (tags := draw(clean_tags)) is not None:
        s["tags"] = tags
    if draw(st.booleans()):
        s["resources"] = [{"name": draw(st.sampled_from(["A", "web-1"])), "type": "host"}]
    return s


@st.composite
def clean_v1(draw: st.DrawFn) -> dict[str, Any]:
    pts = draw(st.lists(st.tuples(st.integers(-5000, 1000), clean_values), max_size=4))
    return {
        "metric": draw(clean_metrics),
        "points": [[NOW + o + 0.5, v] for o, v in pts],
        "tags": draw(clean_tags),
        "host": draw(st.sampled_from([None, "", "A"])),
        "device": draw(st.sampled_from([None, "sda1"])),
        "type": draw(st.sampled_from([None, "gauge", "Count", "RATE"])),
        "interval": draw(clean_intervals),
    }


@settings(max_examples=200)
@given(st.lists(clean_v2(), max_size=8), st.lists(clean_v1(), max_size=8))
def test_well_typed_bodies_take_the_typed_path(
    v2_items: list[dict[str, Any]], v1_items: list[dict[str, Any]]
) -> None:
    cache = SeriesIdentities(100)
    for v1, items in ((False, v2_items), (True, v1_items)):
        body = dumps({"series": items}, compact=True)
        fast = typed_parse._typed_v1 if v1 else typed_parse._typed_v2  # refuses or answers
        got = outcome(fast(body, ORG, WINDOW, cache))
        assert got == generic(parse_v1 if v1 else parse_v2, body, SeriesIdentities(100))


def test_benchmark_payloads_take_the_typed_path() -> None:
    """The agent shape and 100 series x 10 points from the workload generator (what
    bench_intake and the load driver send), 10 tags per series."""
    for per_series in (1, 10):
        workload = CpuOnly(100 // per_series, NOW - 600, seed=3)
        points = by_series_runs(workload.points(per_series), len(workload.series), per_series)
        for v1, body in ((False, v2_body(points)), (True, v1_body(points))):
            cache = SeriesIdentities(10_000)
            fast = typed_parse._typed_v1 if v1 else typed_parse._typed_v2
            first = outcome(fast(body, ORG, WINDOW, cache))
            assert outcome(fast(body, ORG, WINDOW, cache)) == first  # warm cache
            assert first == generic(parse_v1 if v1 else parse_v2, body, SeriesIdentities(10))
            assert sum(len(b[1]) for b in first[0]) == 1000


# --- the fallback branch of the batching's series dedup ------------------------------------


@settings(max_examples=150)
@given(st.lists(v2_series(), max_size=10), repeats)
def test_three_column_dedup_equals_the_packed_key(
    series: list[dict[str, Any]], again: list[int]
) -> None:
    doc = {"series": series + [series[i % len(series)] for i in again if series]}
    expected = outcome(parse_v2(doc, ORG, WINDOW))
    limit = intake.batching._KEY_LIMIT
    intake.batching._KEY_LIMIT = 0  # every request takes the lexsort branch
    try:
        assert outcome(parse_v2(doc, ORG, WINDOW)) == expected
    finally:
        intake.batching._KEY_LIMIT = limit


# --- hand-picked bodies --------------------------------------------------------------------

P2 = f'"points":[{{"timestamp":{NOW},"value":1.5}}]'
P1 = f'"points":[[{NOW},1.5]]'


@pytest.mark.parametrize(
    ("v1", "body"),
    [
        # Duplicate keys: the last one wins, in both decoders.
        (False, '{"series":[{"metric":"a","metric":"b",' + P2 + "}]}"),
        (False, '{"series":[{"metric":"a","tags":["x:1"],"tags":["y:2"],' + P2 + "}]}"),
        (True, '{"series":[{"metric":"a","host":"h1","host":"h2",' + P1 + "}]}"),
        (True, '{"series":[], "series":[{"metric":"a",' + P1 + "}]}"),
        # Unknown fields anywhere are ignored.
        (False, '{"x":1,"series":[{"metric":"a","unit":"b","metadata":{},' + P2 + "}]}"),
        (
            False,
            '{"series":[{"metric":"a","resources":[{"name":"h","type":"host","x":1}],' + P2 + "}]}",
        ),
        # Shapes the typed decoder refuses but the generic parser takes or names.
        (False, '{"series":[{"metric":"a","type":true,' + P2 + "}]}"),
        (False, '{"series":[{"metric":"a","type":3.0,' + P2 + "}]}"),
        (False, '{"series":[{"metric":"a","type":7,' + P2 + "}]}"),
        (False, '{"series":[{"metric":"a","type":"Gauge",' + P2 + "}]}"),
        (False, '{"series":[{"metric":"a","tags":"x",' + P2 + "}]}"),
        (False, '{"series":[{"metric":"a","tags":[1],' + P2 + "}]}"),
        (False, '{"series":[{"metric":"a","tags":null,"resources":null,' + P2 + "}]}"),
        (False, '{"series":[{"metric":"a","resources":[{"name":"h"}],' + P2 + "}]}"),
        (False, '{"series":[{"metric":"a","interval":-1,' + P2 + "}]}"),
        (False, '{"series":[{"metric":"a","interval":4294967296,' + P2 + "}]}"),
        (False, '{"series":[{"metric":"a","interval":null,' + P2 + "}]}"),
        (False, '{"series":[{"metric":"a","points":[{"timestamp":1,"value":true}]}]}'),
        (False, '{"series":[{"metric":"a","points":[{"timestamp":1}]}]}'),
        (False, '{"series":[{"metric":"9a",' + P2 + "}]}"),  # reported, the rest accepted
        (False, '{"series":[{"metric":"",' + P2 + '},{"metric":"b",' + P2 + "}]}"),
        (True, '{"series":[{"metric":"9a",' + P1 + "}]}"),  # v1: 400
        (True, '{"series":[{"metric":"a","points":[[1,2,3]]}]}'),
        (True, '{"series":[{"metric":"a","points":[[1]]}]}'),
        (True, '{"series":[{"metric":"a","points":[{"timestamp":1,"value":2}]}]}'),
        (True, '{"series":[{"metric":"a","host":5,' + P1 + "}]}"),
        (True, '{"series":[{"metric":"a","type":"COUNT","device":"",' + P1 + "}]}"),
        # Numbers: NaN/Infinity literals, beyond float64, beyond 64 bits, exponents.
        (True, f'{{"series":[{{"metric":"a","points":[[{NOW},NaN],[{NOW},Infinity]]}}]}}'),
        (True, f'{{"series":[{{"metric":"a","points":[[{NOW},1e400],[{NOW},-1e400]]}}]}}'),
        (True, f'{{"series":[{{"metric":"a","points":[[{NOW},{10**400}]]}}]}}'),
        (True, f'{{"series":[{{"metric":"a","points":[[{10**400},1]]}}]}}'),
        (True, f'{{"series":[{{"metric":"a","points":[[{NOW},{2**64 + 1}]]}}]}}'),
        (True, f'{{"series":[{{"metric":"a","points":[[{NOW}.9e0,-0.0]]}}]}}'),
        (True, '{"series":[{"metric":"a","points":[[1e20,1],[-1e20,2],[1.5,3]]}]}'),
        (False, '{"series":[{"metric":"a","points":[{"timestamp":NaN,"value":1}]}]}'),
        (
            False,
            f'{{"series":[{{"metric":"a","points":[{{"timestamp":{NOW},"value":{10**400}}}]}}]}}',
        ),
        (False, f'{{"series":[{{"metric":"a","points":[{{"timestamp":{10**400},"value":1}}]}}]}}'),
        (False, '{"series":[{"metric":"a","points":[{"timestamp":1e400,"value":1}]}]}'),
        (False, f'{{"series":[{{"metric":"a","points":[{{"timestamp":{NOW},"value":-1e400}}]}}]}}'),
        (
            False,
            f'{{"series":[{{"metric":"a","points":[{{"timestamp":{2**64 + 1},"value":1}}]}}]}}',
        ),
        # Not a series body at all.
        (False, ""),
        (False, "null"),
        (False, "[]"),
        (False, "{}"),
        (False, '{"series":null}'),
        (False, '{"series":{}}'),
        (False, '{"series":[1]}'),
        (False, '{"series":[]} x'),
        (False, '\ufeff{"series":[]}'),
        (True, '{"series":[{"metric":"\\ud800",' + P1 + "}]}"),
        # Nesting deeper than msgspec recurses, in an ignored field: orjson takes it.
        (False, '{"x":' + "[" * 2000 + "]" * 2000 + ',"series":[{"metric":"a",' + P2 + "}]}"),
        (True, '{"series":[{"metric":"a","x":' + "[" * 2000 + "]" * 2000 + "," + P1 + "}]}"),
    ],
)
def test_hand_picked_bodies(v1: bool, body: str) -> None:
    check_same(body.encode(), v1=v1, shared=SeriesIdentities(2))


def test_invalid_utf8_is_the_generic_error() -> None:
    body = b'{"series":[{"metric":"a\xff",' + P2.encode() + b"}]}"
    for v1 in (False, True):
        result = check_same(body, v1=v1, shared=SeriesIdentities(2))
        assert result[0] == "PayloadError"


def test_a_hit_never_answers_for_different_fields() -> None:
    """Keys are raw bytes: tags spelled differently (escapes, spacing) are other keys with
    the same identity; different tags never share one."""
    cache = SeriesIdentities(100)
    bodies = [
        '{"series":[{"metric":"m","tags":["a:1","b:2"],' + P2 + "}]}",
        '{"series":[{"metric":"m","tags":[ "a:1" , "b:2" ],' + P2 + "}]}",
        '{"series":[{"metric":"m","tags":["\\u0061:1","b:2"],' + P2 + "}]}",
        '{"series":[{"metric":"m","tags":["b:2","a:1"],' + P2 + "}]}",
        '{"series":[{"metric":"m","tags":["a:1","b:3"],' + P2 + "}]}",
    ]
    sids = [
        int(parse_v2_body(b.encode(), ORG, WINDOW, cache).batches[0].points.sid[0]) for b in bodies
    ]
    assert len(set(sids[:4])) == 1
    assert sids[4] != sids[0]
    assert len(cache) == 5
    assert (
        np.uint64(sids[0])
        == parse_v2(load_json(bodies[0].encode()), ORG, WINDOW).batches[0].points.sid[0]
    )
