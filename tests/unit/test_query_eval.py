"""Semantics of the query language against an independent Python model of the submitted data.

The fake store (tests/unit/query_fakes.py) holds the points and evaluates filter trees
itself (fnmatch); the model below recomputes every answer with plain loops over the raw
points — no code shared with query.evaluate — for every aggregator, filter form, modifier,
function and arithmetic case.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.v1.model.metrics_query_response import MetricsQueryResponse

from query.evaluate import evaluate, v1_body
from query.language import QuerySyntaxError, parse
from query.plan import TooManySeries
from tests.unit.query_fakes import FakeStore

T0 = 1_700_000_000  # a multiple of 10 and of 100
END = T0 + 599
ORG = "acme"
MAX_POINTS = 60  # -> interval 10 over [T0, END]
INTERVAL = 10
Tags = tuple[str, ...]
Answer = dict[Tags, dict[int, float]]

SERIES: list[tuple[list[str], str]] = [
    (["host:web-1", "env:prod", "role:web"], "gauge"),
    (["host:web-2", "env:prod", "role:web", "canary"], "gauge"),
    (["host:db-1", "env:prod", "role:db"], "gauge"),
    (["host:web-3-canary", "env:staging", "role:web"], "gauge"),
    (["host:db-2", "env:dev"], "gauge"),
]


class Model:
    """The submitted data: (metric, tags, type) -> {ts: value}."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.store = FakeStore()
        self.series: list[tuple[str, frozenset[str], str, dict[int, float]]] = []
        for metric, mtype in [("cpu", "gauge"), ("req", "count"), ("conn", "rate")]:
            for tags, _ in SERIES:
                pts = {
                    T0 + s: float(rng.randint(-50, 100))
                    for s in rng.sample(range(600), rng.randint(0, 80))
                }
                self.store.add(ORG, metric, tags, sorted(pts.items()), mtype)
                self.series.append((metric, frozenset(tags), mtype, pts))
        # another org's data must never show
        self.store.add("other", "cpu", ["host:web-1", "env:prod"], [(T0, 1e6)])

    def query(
        self,
        metric: str,
        select: Callable[[frozenset[str]], bool],
        space: str,
        *,
        by: Tags = (),
        rollup: str | None = None,
        mode: str | None = None,
        interval: int = INTERVAL,
        shift: int = 0,
    ) -> Answer:
        groups: dict[Tags, dict[int, list[float]]] = {}
        for m, tags, mtype, pts in self.series:
            if m != metric or not select(tags):
                continue
            method = rollup or ("sum" if mtype == "count" else "avg")
            buckets: dict[int, list[float]] = {}
            for ts, v in pts.items():
                out_ts = ts - shift
                if T0 <= out_ts <= END:
                    buckets.setdefault(out_ts - out_ts % interval, []).append(v)
            choices = []
            for k in by:
                vals = sorted(t.split(":", 1)[1] for t in tags if t.startswith(k + ":"))
                choices.append([f"{k}:{v}" for v in vals] or [f"{k}:N/A"])
            for combo in itertools.product(*choices):
                g = groups.setdefault(tuple(combo), {})
                for b, vs in buckets.items():
                    value = {
                        "avg": sum(vs) / len(vs),
                        "sum": sum(vs),
                        "min": min(vs),
                        "max": max(vs),
                        "count": float(len(vs)),
                    }[method]
                    if mode == "as_rate" and mtype == "count":
                        value /= interval
                    if mode == "as_count" and mtype == "rate":
                        value *= interval
                    g.setdefault(b, []).append(value)
        out: Answer = {}
        for key, per_bucket in groups.items():
            out[key] = {
                b: {
                    "avg": sum(vs) / len(vs),
                    "sum": sum(vs),
                    "min": min(vs),
                    "max": max(vs),
                    "count": float(len(vs)),
                }[space]
                for b, vs in per_bucket.items()
            }
        return {k: v for k, v in out.items() if v}


def run(model: Model, text: str, start: int = T0, end: int = END) -> Answer:
    result = evaluate(
        parse(text), ORG, start, end, model.store, max_points=MAX_POINTS, max_series=1000
    )
    out: Answer = {}
    for tags, row in zip(result.frame.tag_sets, result.frame.values, strict=True):
        present = ~np.isnan(row)
        if present.any():
            out[tags] = dict(zip(result.grid[present].tolist(), row[present].tolist(), strict=True))
    return out


def same(got: Answer, want: Answer) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert sorted(got[k]) == sorted(want[k]), k
        for b, v in want[k].items():
            assert math.isclose(got[k][b], v, rel_tol=1e-9, abs_tol=1e-9), (k, b)


@pytest.fixture(scope="module", params=[1, 2, 3])
def model(request: pytest.FixtureRequest) -> Model:
    return Model(request.param)


def has(t: str) -> Callable[[frozenset[str]], bool]:
    return lambda tags: t in tags


EVERY: Callable[[frozenset[str]], bool] = lambda tags: True  # noqa: E731

FILTERS: list[tuple[str, Callable[[frozenset[str]], bool]]] = [
    ("*", EVERY),
    ("env:prod", has("env:prod")),
    ("canary", has("canary")),
    ("!env:prod", lambda t: "env:prod" not in t),
    ("env:prod,!role:db", lambda t: "env:prod" in t and "role:db" not in t),
    ("env:prod AND NOT role:db", lambda t: "env:prod" in t and "role:db" not in t),
    ("env:staging OR role:db", lambda t: "env:staging" in t or "role:db" in t),
    ("Env:Prod or ENV:DEV", lambda t: "env:prod" in t or "env:dev" in t),
    ("NOT (env:prod OR env:dev)", lambda t: not ("env:prod" in t or "env:dev" in t)),
    (
        "(env:prod OR env:dev) AND NOT host:db-1",
        lambda t: bool({"env:prod", "env:dev"} & t) and "host:db-1" not in t,
    ),
    ("env IN (prod, dev)", lambda t: bool({"env:prod", "env:dev"} & t)),
    ("env NOT IN (prod)", lambda t: "env:prod" not in t),
    ("host:web-*", lambda t: any(x.startswith("host:web-") for x in t)),
    ("host:*-canary", lambda t: any(x.startswith("host:") and x.endswith("-canary") for x in t)),
    ("host:*eb*", lambda t: any(x.startswith("host:") and "eb" in x[5:] for x in t)),
    ("role:*", lambda t: any(x.startswith("role:") for x in t)),
    ("!role:*", lambda t: not any(x.startswith("role:") for x in t)),
    ("canar*", lambda t: any(x.startswith("canar") for x in t)),
]


@pytest.mark.parametrize("space", ["avg", "sum", "min", "max", "count"])
@pytest.mark.parametrize(("scope", "select"), FILTERS, ids=[f[0] for f in FILTERS])
def test_filters_and_space_aggregators(
    model: Model, scope: str, select: Callable[[frozenset[str]], bool], space: str
) -> None:
    same(run(model, f"{space}:cpu{{{scope}}}"), model.query("cpu", select, space))


@pytest.mark.parametrize("space", ["avg", "sum", "min", "max", "count"])
@pytest.mark.parametrize("by", [("host",), ("role",), ("env", "role")])
def test_group_by(model: Model, space: str, by: Tags) -> None:
    text = f"{space}:cpu{{*}} by {{{','.join(by)}}}"
    same(run(model, text), model.query("cpu", EVERY, space, by=by))


def test_filter_trees_are_sent_only_when_needed(model: Model) -> None:
    model.store.trees.clear()
    run(model, "avg:cpu{env:prod,!role:db}")
    assert model.store.trees == []
    run(model, "avg:cpu{host:web-*}")
    assert model.store.trees == [{"op": "wildcard", "pattern": "host:web-*"}]


@pytest.mark.parametrize("method", ["avg", "sum", "min", "max", "count"])
@pytest.mark.parametrize("seconds", [None, 60])
def test_rollup_methods_and_intervals(model: Model, method: str, seconds: int | None) -> None:
    arg = method if seconds is None else f"{method}, {seconds}"
    got = run(model, f"sum:cpu{{*}} by {{host}}.rollup({arg})")
    want = model.query("cpu", EVERY, "sum", by=("host",), rollup=method, interval=seconds or 10)
    same(got, want)


def test_type_aware_defaults_and_count_modes(model: Model) -> None:
    # count metrics roll up by sum; rate and gauge metrics by avg
    same(run(model, "sum:req{*} by {host}"), model.query("req", EVERY, "sum", by=("host",)))
    same(run(model, "avg:conn{*}"), model.query("conn", EVERY, "avg"))
    for metric in ("req", "conn", "cpu"):
        for mode in ("as_count", "as_rate"):
            got = run(model, f"sum:{metric}{{*}}.{mode}()")
            same(got, model.query(metric, EVERY, "sum", mode=mode))
    # an explicit rollup wins over the default
    same(run(model, "max:req{*}.rollup(max)"), model.query("req", EVERY, "max", rollup="max"))


def test_org_isolation(model: Model) -> None:
    got = run(model, "max:cpu{host:web-1}")
    assert all(v < 1e6 for series in got.values() for v in series.values())


# -- fill: small hand-made series -----------------------------------------------------------


def fill_store() -> FakeStore:
    store = FakeStore()
    # buckets (interval 10): 0:1, 10:-, 20:-, 30:4, 40-80:-, 90:9
    store.add(ORG, "g", ["host:a"], [(T0, 1.0), (T0 + 30, 4.0), (T0 + 90, 9.0)])
    return store


def fill_run(text: str) -> dict[int, float]:
    result = evaluate(parse(text), ORG, T0, T0 + 99, fill_store(), max_points=10, max_series=9)
    [row] = result.frame.values
    present = ~np.isnan(row)
    return {int(t) - T0: float(v) for t, v in zip(result.grid[present], row[present], strict=True)}


def test_fill_modes() -> None:
    base = {0: 1.0, 30: 4.0, 90: 9.0}
    assert fill_run("avg:g{*}") == base
    assert fill_run("avg:g{*}.fill(null)") == base
    assert fill_run("avg:g{*}.fill(zero)") == {
        **base,
        10: 0,
        20: 0,
        40: 0,
        50: 0,
        60: 0,
        70: 0,
        80: 0,
    }
    assert fill_run("avg:g{*}.fill(zero, 20)") == {**base, 10: 0, 20: 0}
    linear = fill_run("avg:g{*}.fill(linear)")
    want = {**base, 10: 2.0, 20: 3.0} | {t: 4.0 + 5.0 * (t - 30) / 60 for t in range(40, 90, 10)}
    assert linear.keys() == want.keys()
    assert all(math.isclose(linear[t], want[t]) for t in want)
    assert fill_run("avg:g{*}.fill(linear, 40)") == {**base, 10: 2.0, 20: 3.0}
    assert fill_run("avg:g{*}.fill(last, 30)") == {
        **base,
        10: 1.0,
        20: 1.0,
        40: 4.0,
        50: 4.0,
        60: 4.0,
    }


# -- functions -------------------------------------------------------------------------------


def grid_series(answer: Answer) -> dict[Tags, list[float | None]]:
    """Each series on the full grid, None where absent."""
    grid = list(range(T0, END + 1, INTERVAL))
    return {k: [v.get(b) for b in grid] for k, v in answer.items()}


def from_grid(rows: dict[Tags, list[float | None]]) -> Answer:
    grid = list(range(T0, END + 1, INTERVAL))
    out: Answer = {}
    for k, vals in rows.items():
        kept = {b: v for b, v in zip(grid, vals, strict=True) if v is not None and math.isfinite(v)}
        if kept:
            out[k] = kept
    return out


def map_present(
    fn: Callable[[float], float | None],
) -> Callable[[list[float | None]], list[float | None]]:
    return lambda vals: [None if v is None else fn(v) for v in vals]


def running(vals: list[float | None], scale: float = 1.0) -> list[float | None]:
    total, out = 0.0, []
    for v in vals:
        if v is not None:
            total += v * scale
        out.append(None if v is None else total)
    return out


def differences(vals: list[float | None], per_second: bool) -> list[float | None]:
    out: list[float | None] = []
    prev: tuple[int, float] | None = None
    for i, v in enumerate(vals):
        if v is None:
            out.append(None)
            continue
        if prev is None:
            out.append(None)
        else:
            d = v - prev[1]
            out.append(d / ((i - prev[0]) * INTERVAL) if per_second else d)
        prev = (i, v)
    return out


def log_or_none(base: float) -> Callable[[float], float | None]:
    return lambda v: math.log(v, base) if v > 0 else None


UNARY: dict[str, Callable[[list[float | None]], list[float | None]]] = {
    "abs": map_present(abs),
    "log2": map_present(log_or_none(2)),
    "log10": map_present(log_or_none(10)),
    "cumsum": running,
    "integral": lambda vals: running(vals, INTERVAL),
    "diff": lambda vals: differences(vals, per_second=False),
    "derivative": lambda vals: differences(vals, per_second=True),
    "per_second": map_present(lambda v: v / INTERVAL),
    "per_minute": map_present(lambda v: v * 60 / INTERVAL),
    "per_hour": map_present(lambda v: v * 3600 / INTERVAL),
    "default_zero": lambda vals: [0.0 if v is None else v for v in vals],
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_functions(model: Model, name: str) -> None:
    base = grid_series(model.query("cpu", EVERY, "sum", by=("host",)))
    want = from_grid({k: UNARY[name](v) for k, v in base.items()})
    got = run(model, f"{name}(sum:cpu{{*}} by {{host}})")
    if name == "log10" or name == "log2":  # log of float rounding: compare loosely
        for k in want:
            for b in want[k]:
                assert math.isclose(got[k][b], want[k][b], rel_tol=1e-12)
    same(got, want)


def test_timeshift(model: Model) -> None:
    start, end = T0 + 300, END
    got = run(model, "sum:cpu{*} by {host}", start, end)
    shifted = run(model, "timeshift(sum:cpu{*} by {host}, -300)", start, end)
    earlier = run(model, "sum:cpu{*} by {host}", T0, T0 + 299)
    # the shifted query shows the earlier window's buckets, 300 s later
    assert shifted == {k: {b + 300: v for b, v in s.items()} for k, s in earlier.items()}
    assert got  # the unshifted one differs in general
    same(
        run(model, "timeshift(sum:cpu{*}, 120)"),
        model.query("cpu", EVERY, "sum", shift=120),
    )


@pytest.mark.parametrize("by", ["mean", "max", "min", "sum", "last", "area", "norm"])
@pytest.mark.parametrize("order", ["desc", "asc"])
def test_top(model: Model, by: str, order: str) -> None:
    base = model.query("cpu", EVERY, "avg", by=("host",))

    def score(s: dict[int, float]) -> float:
        vals = [s[b] for b in sorted(s)]
        return {
            "mean": sum(vals) / len(vals),
            "max": max(vals),
            "min": min(vals),
            "sum": sum(vals),
            "last": vals[-1],
            "area": sum(abs(v) for v in vals),
            "norm": math.sqrt(sum(v * v for v in vals)),
        }[by]

    ranked = sorted(
        sorted(base), key=lambda k: -score(base[k]) if order == "desc" else score(base[k])
    )
    want = {k: base[k] for k in ranked[:2]}
    same(run(model, f"top(avg:cpu{{*}} by {{host}}, 2, '{by}', '{order}')"), want)


@pytest.mark.parametrize("method", ["avg", "sum", "min", "max", "count"])
def test_moving_rollup(model: Model, method: str) -> None:
    base = grid_series(model.query("cpu", EVERY, "avg", by=("host",)))
    window = 3  # 30 s at interval 10
    want_rows: dict[Tags, list[float | None]] = {}
    for k, vals in base.items():
        row: list[float | None] = []
        for i in range(len(vals)):
            got = [v for v in vals[max(0, i - window + 1) : i + 1] if v is not None]
            if not got:
                row.append(None)
                continue
            row.append(
                {
                    "avg": sum(got) / len(got),
                    "sum": sum(got),
                    "min": min(got),
                    "max": max(got),
                    "count": float(len(got)),
                }[method]
            )
        want_rows[k] = row
    same(
        run(model, f"moving_rollup(avg:cpu{{*}} by {{host}}, 30, '{method}')"), from_grid(want_rows)
    )


# -- arithmetic ---------------------------------------------------------------------------------


def combine(a: Answer, b: Answer, op: Callable[[float, float], float]) -> Answer:
    out: Answer = {}
    pairs: list[tuple[Tags, Tags, Tags]]
    if list(b) == [()]:
        pairs = [(k, k, ()) for k in a]
    elif list(a) == [()]:
        pairs = [(k, (), k) for k in b]
    else:
        pairs = [(k, k, k) for k in a if k in b]
    for k, ka, kb in pairs:
        row = {}
        for t in set(a[ka]) & set(b[kb]):
            try:
                v = op(a[ka][t], b[kb][t])
            except ZeroDivisionError:
                continue
            row[t] = v
        if row:
            out[k] = row
    return out


def test_arithmetic_between_queries_and_numbers(model: Model) -> None:
    a = model.query("cpu", EVERY, "sum", by=("host",))
    b = model.query("req", EVERY, "sum", by=("host",))
    total = model.query("cpu", EVERY, "sum")
    same(
        run(model, "sum:cpu{*} by {host} + sum:req{*} by {host}"), combine(a, b, lambda x, y: x + y)
    )
    same(
        run(model, "sum:cpu{*} by {host} - sum:req{*} by {host}"), combine(a, b, lambda x, y: x - y)
    )
    same(
        run(model, "sum:cpu{*} by {host} / sum:req{*} by {host} * 100"),
        combine(
            combine(a, b, lambda x, y: x / y),
            {(): {t: 100.0 for t in range(T0, END, 10)}},
            lambda x, y: x * y,
        ),
    )
    # an ungrouped side pairs with every group
    same(run(model, "sum:cpu{*} by {host} / sum:cpu{*}"), combine(a, total, lambda x, y: x / y))
    same(
        run(model, "2 * sum:cpu{*} - 1"),
        {k: {t: 2 * v - 1 for t, v in s.items()} for k, s in total.items()},
    )
    same(run(model, "-sum:cpu{*}"), {k: {t: -v for t, v in s.items()} for k, s in total.items()})
    # groups match by tag set; unmatched groups are dropped
    env = model.query("cpu", EVERY, "sum", by=("env",))
    prod = model.query("cpu", has("env:prod"), "sum", by=("env",))
    same(
        run(model, "sum:cpu{*} by {env} - sum:cpu{env:prod} by {env}"),
        combine(env, prod, lambda x, y: x - y),
    )


def test_expression_errors() -> None:
    store = FakeStore()
    with pytest.raises(QuerySyntaxError, match="at least one metric query"):
        evaluate(parse("1 + 2"), ORG, T0, END, store, max_points=60, max_series=9)
    with pytest.raises(QuerySyntaxError, match=r"abs\(\) needs a metric query.*position 8"):
        evaluate(
            parse("1 + 2 * abs(3) + avg:m{*}"), ORG, T0, END, store, max_points=60, max_series=9
        )
    wide = "avg:m{" + " OR ".join(f"k{i} NOT IN (a, b, c)" for i in range(240)) + "}"
    with pytest.raises(QuerySyntaxError, match=r"scope too complex.*1201 nodes.*position 6"):
        evaluate(parse(wide), ORG, T0, END, store, max_points=60, max_series=9)
    deep = "avg:m{" + "NOT (a OR " * 15 + "k NOT IN (x, y)" + ")" * 15 + "}"
    with pytest.raises(QuerySyntaxError, match="depth 33"):
        evaluate(parse(deep), ORG, T0, END, store, max_points=60, max_series=9)
    for i in range(3):
        store.add(ORG, "m", [f"h:{i}"], [(T0, 1.0)])
    with pytest.raises(TooManySeries, match="3 series"):
        evaluate(parse("avg:m{*}"), ORG, T0, END, store, max_points=60, max_series=2)


def test_auto_interval_bounds_points_and_never_goes_below_one_second() -> None:
    store = FakeStore()
    store.add(ORG, "m", [], [(T0 + s, 1.0) for s in range(0, 86400, 7)])
    day = evaluate(parse("avg:m{*}"), ORG, T0, T0 + 86399, store, max_points=350, max_series=9)
    assert day.interval == 300 and day.grid.size <= 350
    tiny = evaluate(parse("avg:m{*}"), ORG, T0, T0 + 5, store, max_points=350, max_series=9)
    assert tiny.interval == 1
    coarse = evaluate(
        parse("avg:m{*}.rollup(avg, 3600)"),
        ORG,
        T0,
        T0 + 86399,
        store,
        max_points=350,
        max_series=9,
    )
    assert coarse.interval == 3600


def test_v1_body_deserializes_for_expressions(model: Model) -> None:
    for text in ["avg:cpu{env:prod OR role:db} by {host}", "top(sum:cpu{*} by {host}, 2) / 2"]:
        result = evaluate(parse(text), ORG, T0, END, model.store, max_points=60, max_series=99)
        body: dict[str, Any] = v1_body(result, text)
        with ApiClient(Configuration()) as api:  # type: ignore[no-untyped-call]
            resp = api.deserialize(json.dumps(body), (MetricsQueryResponse,), True)
        assert isinstance(resp, MetricsQueryResponse)
        assert resp.query == text and len(resp.series) >= 1
        assert all(s.interval == 10 for s in resp.series)
