"""Evaluate a query expression (:mod:`query.ast`) against the stores, then shape the v1 answer.

Order of operations per metric query, as at Datadog (docs/query.md, "Evaluation"):
resolve series (inverted index; a filter tree when the scope needs one) -> read points
from the tiers as rollups at the expression's interval -> time rollup per series
(``.rollup()`` method, else the type-aware default) -> ``.as_count()``/``.as_rate()`` ->
``.fill()`` per series -> space aggregation per group. Then functions and arithmetic work
on :class:`query.functions.Frame` matrices (one row per group, NaN = no value) sharing one
bucket grid; binary operations align rows by tag set.

The numeric work is numpy over whole matrices; loops run per series/group/segment only.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from query import ast
from query.cache import scope_key
from query.distributions import DISTRIBUTION, distribution_frame, is_distribution_query
from query.fanout import parallel, warn
from query.filters import ScopeTooComplex, compile_filter
from query.functions import Floats, Frame, apply_unary, moving, top
from query.interval import choose_interval
from query.language import QuerySyntaxError
from query.plan import TooManySeries, group_membership
from query.printer import filter_text, query_text, to_text
from query.segments import Uncovered
from query.stitch import stitched_rollups
from query.stores_client import StoreClient, StoreUnavailable
from strata.rollup import Rollups

DEFAULT_FILL_LIMIT = 300
_OLDEST_FIRST = ("archive", "rocks", "ram")


@dataclass
class Context:
    """One evaluation: the org, range, grid and the tiers that served it so far."""

    org: str
    client: StoreClient
    grid: npt.NDArray[np.int64]  # bucket starts, multiples of ``interval``
    interval: int
    max_series: int
    start: int
    end: int
    tiers: set[str] = field(default_factory=set)
    # (id of a MetricQuery node, time shift) -> its frame, or why it could not be read;
    # filled in parallel by :func:`prefetch` before the expression is combined.
    leaves: dict[tuple[int, int], Frame | Exception] = field(default_factory=dict)


# What makes one query of a request unanswerable right now while others may still be
# answered: the partial answer then names it (query/fanout.py). Anything else (bad query,
# too many series, a store breaking the contract, the time budget) fails the request.
PARTIAL_ERRORS = (StoreUnavailable, Uncovered)


@dataclass(frozen=True, slots=True)
class Evaluation:
    expr: ast.Expr
    start: int
    end: int
    interval: int
    grid: npt.NDArray[np.int64]
    frame: Frame
    tiers: tuple[str, ...]


# -- interval and grid ----------------------------------------------------------------------


def expression_interval(expr: ast.Expr, start: int, end: int, max_points: int) -> int:
    """The automatic interval (at most ``max_points`` buckets, never finer than 1 s), or a
    coarser ``.rollup(method, seconds)`` interval asked for by any of the queries."""
    auto = choose_interval(start, end, max_points)
    asked = [
        q.rollup.seconds
        for q in ast.metric_queries(expr)
        if q.rollup is not None and q.rollup.seconds is not None
    ]
    return max([auto, *asked])


def make_grid(start: int, end: int, interval: int) -> npt.NDArray[np.int64]:
    first = start - start % interval
    return np.arange(first, end - end % interval + 1, interval, dtype=np.int64)


# -- reading points ---------------------------------------------------------------------------


# -- one metric query ---------------------------------------------------------------------------


def metric_type(types: dict[int, str]) -> str:
    """The metric's type: the most common among its series (gauge when none is known)."""
    if not types:
        return "gauge"
    return Counter(types.values()).most_common(1)[0][0]


def rollup_method(q: ast.MetricQuery, mtype: str) -> ast.Aggregator:
    """``.rollup()``'s method, else sum for count metrics and avg otherwise (Datadog)."""
    if q.rollup is not None:
        return q.rollup.method
    return ast.Aggregator.SUM if mtype == "count" else ast.Aggregator.AVG


def rollup_values(r: Rollups, method: ast.Aggregator) -> Floats:
    if method is ast.Aggregator.SUM:
        return r.sum
    if method is ast.Aggregator.MIN:
        return r.min
    if method is ast.Aggregator.MAX:
        return r.max
    if method is ast.Aggregator.COUNT:
        return r.count.astype(np.float64)
    return r.sum / r.count


def apply_count_mode(
    values: Floats, mode: ast.CountMode | None, mtype: str, interval: int
) -> Floats:
    """Counts are per interval, rates per second; ``.as_rate()`` on a count divides by the
    interval, ``.as_count()`` on a rate multiplies by it; gauges are left as they are."""
    if mode is ast.CountMode.AS_RATE and mtype == "count":
        return values / interval
    if mode is ast.CountMode.AS_COUNT and mtype == "rate":
        return values * interval
    return values


def _neighbours(values: Floats) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per cell, the column of the previous and of the next present cell (-1 when none)."""
    m = values.shape[1]
    present = ~np.isnan(values)
    cols = np.arange(m)[None, :]
    prev = np.maximum.accumulate(np.where(present, cols, -1), axis=1)
    nxt_rev = np.minimum.accumulate(np.where(present, cols, m)[:, ::-1], axis=1)[:, ::-1]
    nxt = np.where(nxt_rev >= m, -1, nxt_rev)
    return prev.astype(np.int64), nxt.astype(np.int64)


def apply_fill(values: Floats, fill: ast.Fill | None, interval: int) -> Floats:
    """Fill missing buckets of each series: ``zero``/``linear`` inside gaps between two
    values, ``last`` after a value; only gaps of at most ``limit`` seconds (default 300)."""
    if fill is None or fill.mode is ast.FillMode.NULL or values.size == 0:
        return values
    limit = DEFAULT_FILL_LIMIT if fill.limit is None else fill.limit
    missing = np.isnan(values)
    prev, nxt = _neighbours(values)
    cols = np.arange(values.shape[1])[None, :]
    rows = np.arange(values.shape[0])[:, None]
    prev_v = values[rows, prev.clip(min=0)]
    if fill.mode is ast.FillMode.LAST:
        ok = missing & (prev >= 0) & ((cols - prev) * interval <= limit)
        return np.where(ok, prev_v, values)
    interior = missing & (prev >= 0) & (nxt >= 0) & ((nxt - prev - 1) * interval <= limit)
    if fill.mode is ast.FillMode.ZERO:
        return np.where(interior, 0.0, values)
    next_v = values[rows, nxt.clip(min=0)]
    with np.errstate(all="ignore"):
        line = prev_v + (next_v - prev_v) * (cols - prev) / (nxt - prev)
    return np.where(interior, line, values)


def space_aggregate(
    values: Floats,
    series: npt.NDArray[np.int64],
    group: npt.NDArray[np.int64],
    n_groups: int,
    aggregator: ast.Aggregator,
) -> Floats:
    """Combine series rows into group rows per bucket (NaN-aware; NaN where no series of
    the group has a value). ``series``/``group`` are membership pairs."""
    out_shape = (n_groups, values.shape[1])
    if series.size == 0:
        return np.full(out_shape, np.nan)
    order = np.argsort(group, kind="stable")
    g = group[order]
    rows = values[series[order]]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    present = ~np.isnan(rows)
    count = np.add.reduceat(present.astype(np.float64), starts, axis=0)
    if aggregator is ast.Aggregator.COUNT:
        agg = count
    elif aggregator is ast.Aggregator.MIN:
        agg = np.fmin.reduceat(rows, starts, axis=0)
    elif aggregator is ast.Aggregator.MAX:
        agg = np.fmax.reduceat(rows, starts, axis=0)
    else:
        total = np.add.reduceat(np.where(present, rows, 0.0), starts, axis=0)
        with np.errstate(all="ignore"):
            agg = total / count if aggregator is ast.Aggregator.AVG else total
    out = np.full(out_shape, np.nan)
    out[g[starts]] = np.where(count > 0, agg, np.nan)
    return out


def eval_query(q: ast.MetricQuery, ctx: Context, shift: int) -> Frame:
    n = ctx.grid.size
    try:
        res = compile_filter(q.filter)
    except ScopeTooComplex as exc:
        raise QuerySyntaxError(str(exc), q.filter.pos) from None
    start, end = ctx.start + shift, ctx.end + shift
    if res.tree is None:
        raw = ctx.client.resolve(ctx.org, q.metric, start, end, res.include, res.exclude)
    else:
        raw = ctx.client.resolve_filter(ctx.org, q.metric, start, end, res.tree)
    sids = np.unique(raw)
    if sids.size > ctx.max_series:
        raise TooManySeries(
            f"query {query_text(q)!r} matches {sids.size} series, more than the limit of "
            f"{ctx.max_series}; narrow the scope"
        )
    if sids.size == 0:
        return Frame([], np.empty((0, n)))
    if is_distribution_query(q):
        mtype = DISTRIBUTION
    else:
        # A metric has one type: without a rollup method or count mode to choose, one series
        # still says whether it is a distribution (sketches, not points).
        needs_type = q.rollup is None or q.count_mode is not None
        typed = sids if needs_type else sids[:1]
        mtype = metric_type(ctx.client.series_types(ctx.org, q.metric, typed))
    tags = ctx.client.lookup(ctx.org, q.metric, sids) if q.group_by else {}
    membership, labels = group_membership(sids, tags, q.group_by)
    if mtype == DISTRIBUTION:
        groups = (membership, labels)
        span = (start, end)
        frame, tiers = distribution_frame(
            q, ctx.client, ctx.org, sids, groups, ctx.grid, ctx.interval, span, shift
        )
        ctx.tiers.update(tiers)
        return Frame(frame.tag_sets, apply_fill(frame.values, q.fill, ctx.interval))
    assert isinstance(q.aggregator, ast.Aggregator)  # percentiles took the branch above

    rolled, tiers = stitched_rollups(
        ctx.client, ctx.org, q.metric, sids, start, end, ctx.interval, scope=scope_key(res)
    )
    ctx.tiers.update(tiers)
    per_series = np.full((sids.size, n), np.nan)
    row = np.searchsorted(sids, rolled.sid)
    col = (rolled.bucket - shift - int(ctx.grid[0])) // ctx.interval
    inside = (col >= 0) & (col < n)
    per_series[row[inside], col[inside]] = rollup_values(rolled, rollup_method(q, mtype))[inside]
    per_series = apply_count_mode(per_series, q.count_mode, mtype, ctx.interval)
    per_series = apply_fill(per_series, q.fill, ctx.interval)
    grouped = space_aggregate(
        per_series, membership.series, membership.group, len(labels), q.aggregator
    )
    return Frame(list(labels), grouped)


# -- expressions ---------------------------------------------------------------------------


def binary(op: str, a: Floats | float, b: Floats | float) -> Floats:
    with np.errstate(all="ignore"):
        if op == "+":
            out = np.add(a, b)
        elif op == "-":
            out = np.subtract(a, b)
        elif op == "*":
            out = np.multiply(a, b)
        else:
            out = np.divide(a, b)
    out = np.asarray(out, dtype=np.float64)
    return np.where(np.isfinite(out), out, np.nan)


def align(left: Frame, right: Frame) -> tuple[list[tuple[str, ...]], Floats, Floats]:
    """Rows of both sides paired by tag set; a side of one untagged series (no ``by``)
    pairs with every row of the other. Rows without a partner are dropped."""
    if len(right.tag_sets) == 1 and right.tag_sets[0] == ():
        return left.tag_sets, left.values, np.broadcast_to(right.values, left.values.shape)
    if len(left.tag_sets) == 1 and left.tag_sets[0] == ():
        return right.tag_sets, np.broadcast_to(left.values, right.values.shape), right.values
    index = {t: i for i, t in enumerate(right.tag_sets)}
    pairs = [(i, index[t]) for i, t in enumerate(left.tag_sets) if t in index]
    li = np.array([p[0] for p in pairs], dtype=np.int64)
    ri = np.array([p[1] for p in pairs], dtype=np.int64)
    return [left.tag_sets[i] for i in li.tolist()], left.values[li], right.values[ri]


def leaves(e: ast.Expr, interval: int, shift: int = 0) -> list[tuple[ast.MetricQuery, int]]:
    """Every metric query of ``e`` with the time shift it is read at (timeshift nests)."""
    if isinstance(e, ast.Number):
        return []
    if isinstance(e, ast.MetricQuery):
        return [(e, shift)]
    if isinstance(e, ast.BinOp):
        return leaves(e.left, interval, shift) + leaves(e.right, interval, shift)
    if e.name == "timeshift":
        seconds = int(e.params[0])
        return leaves(e.arg, interval, shift + seconds - seconds % interval)
    return leaves(e.arg, interval, shift)


def prefetch(exprs: list[ast.Expr], ctx: Context) -> None:
    """Evaluate every metric query of ``exprs`` in parallel (each reads its own metric's
    owners: independent store calls) into ``ctx.leaves``; failures are kept per leaf."""
    todo = {(id(q), shift): (q, shift) for e in exprs for q, shift in leaves(e, ctx.interval)}
    results = parallel([functools.partial(eval_query, q, ctx, shift) for q, shift in todo.values()])
    for key, result in zip(todo, results, strict=True):
        if isinstance(result, Exception) and not isinstance(result, PARTIAL_ERRORS):
            raise result
        ctx.leaves[key] = result


def _eval(e: ast.Expr, ctx: Context, shift: int) -> Frame | float:
    if isinstance(e, ast.Number):
        return e.value
    if isinstance(e, ast.MetricQuery):
        got = ctx.leaves.get((id(e), shift))
        if got is None:
            return eval_query(e, ctx, shift)
        if isinstance(got, Exception):
            raise got
        return got
    if isinstance(e, ast.BinOp):
        a, b = _eval(e.left, ctx, shift), _eval(e.right, ctx, shift)
        if isinstance(a, float) and isinstance(b, float):
            return float(binary(e.op, np.array([a]), np.array([b]))[0])
        if isinstance(a, float):
            assert isinstance(b, Frame)
            return Frame(b.tag_sets, binary(e.op, a, b.values))
        if isinstance(b, float):
            return Frame(a.tag_sets, binary(e.op, a.values, b))
        tag_sets, lv, rv = align(a, b)
        return Frame(tag_sets, binary(e.op, lv, rv))
    if e.name == "timeshift":
        seconds = int(e.params[0])
        # Whole buckets only, so shifted buckets land on the grid.
        shifted = _eval(e.arg, ctx, shift + seconds - seconds % ctx.interval)
        return _frame_arg(e, shifted)
    arg = _frame_arg(e, _eval(e.arg, ctx, shift))
    if e.name == "top":
        n, by, order = e.params
        return top(arg, int(n), str(by), str(order))
    if e.name == "moving_rollup":
        window_seconds, method = e.params
        window = max(1, int(window_seconds) // ctx.interval)
        return Frame(arg.tag_sets, moving(arg.values, window, str(method)))
    return Frame(arg.tag_sets, apply_unary(e.name, arg.values, ctx.interval))


def _frame_arg(call: ast.Call, value: Frame | float) -> Frame:
    if not isinstance(value, Frame):
        raise QuerySyntaxError(f"{call.name}() needs a metric query, not a number", call.pos)
    return value


@dataclass(frozen=True, slots=True)
class Evaluations:
    """Several expressions evaluated on one grid; ``frames[i]`` is None when expression i
    could not be answered (the reason is a warning of the request, query/fanout.py)."""

    exprs: list[ast.Expr]
    start: int
    end: int
    interval: int
    grid: npt.NDArray[np.int64]
    frames: list[Frame | None]
    tiers: tuple[str, ...]


def evaluate_all(
    exprs: list[ast.Expr],
    org: str,
    start: int,
    end: int,
    client: StoreClient,
    *,
    max_points: int,
    max_series: int,
    interval_hint: int | None = None,
) -> Evaluations:
    """Evaluate ``exprs`` for ``org`` over [start, end] (inclusive Unix seconds) on one grid
    (the coarsest interval any of them needs, or ``interval_hint`` when coarser); their
    metric queries are read in parallel.

    An expression whose stores cannot answer now (:data:`PARTIAL_ERRORS`) gets a None frame
    and a warning naming it, so the others are still answered; when every expression fails
    that way, the first error is raised (503). Raises :class:`QuerySyntaxError` for an
    expression without any metric query, :class:`TooManySeries` and other client errors.
    """
    for e in exprs:
        if not ast.metric_queries(e):
            raise QuerySyntaxError("the expression needs at least one metric query", e.pos)
    needed = [expression_interval(e, start, end, max_points) for e in exprs]
    interval = max([*needed, interval_hint or 1])
    grid = make_grid(start, end, interval)
    ctx = Context(org, client, grid, interval, max_series, start, end)
    prefetch(exprs, ctx)
    frames: list[Frame | None] = []
    errors: list[Exception] = []
    for e in exprs:
        try:
            out = _eval(e, ctx, 0)
        except PARTIAL_ERRORS as exc:
            errors.append(exc)
            frames.append(None)
            warn(f"partial answer: {to_text(e)!r} could not be answered: {exc}")
            continue
        assert isinstance(out, Frame)
        frames.append(out)
    if errors and len(errors) == len(exprs):
        raise errors[0]
    tiers = tuple(t for t in _OLDEST_FIRST if t in ctx.tiers)
    return Evaluations(exprs, start, end, interval, grid, frames, tiers)


def evaluate(
    expr: ast.Expr,
    org: str,
    start: int,
    end: int,
    client: StoreClient,
    *,
    max_points: int,
    max_series: int,
) -> Evaluation:
    """Evaluate one expression; raises what :func:`evaluate_all` raises (a store that cannot
    answer it raises: one expression has no partial answer)."""
    out = evaluate_all(
        [expr], org, start, end, client, max_points=max_points, max_series=max_series
    )
    frame = out.frames[0]
    assert frame is not None  # a failing single expression raised
    return Evaluation(expr, start, end, out.interval, out.grid, frame, out.tiers)


# -- the v1 response ----------------------------------------------------------------------------


def _scope(q: ast.MetricQuery, tag_set: tuple[str, ...]) -> str:
    written = [] if isinstance(q.filter, ast.AllSeries) else [filter_text(q.filter)]
    if written and tag_set and " " in written[0]:
        return f"({written[0]}) AND " + " AND ".join(tag_set)
    parts = written + list(tag_set)
    return ",".join(parts) if parts else "*"


def v1_series(
    expr: ast.Expr,
    frame: Frame,
    grid: npt.NDArray[np.int64],
    interval: int,
    query_index: int,
) -> list[dict[str, Any]]:
    """The ``series`` entries of one expression: one per output row with at least one
    value; missing buckets are left out, ±inf is sent as null."""
    leaves = ast.metric_queries(expr)
    single = expr if isinstance(expr, ast.MetricQuery) else None
    first = leaves[0]
    series: list[dict[str, Any]] = []
    for tag_set, row in zip(frame.tag_sets, frame.values, strict=True):
        present = ~np.isnan(row)
        if not present.any():
            continue
        ts = grid[present]
        pointlist = [
            [float(t * 1000), v if np.isfinite(v) else None]
            for t, v in zip(ts.tolist(), row[present].tolist(), strict=True)
        ]
        scope = _scope(single, tag_set) if single is not None else ",".join(tag_set) or "*"
        expression = query_text(single, scope=scope) if single is not None else to_text(expr)
        series.append(
            {
                "metric": first.metric,
                "display_name": first.metric if single is not None else to_text(expr),
                "expression": expression,
                "scope": scope,
                "tag_set": list(tag_set),
                "aggr": first.aggregator.value,
                "pointlist": pointlist,
                "start": int(ts[0]) * 1000,
                "end": (int(ts[-1]) + interval) * 1000 - 1,
                "interval": interval,
                "length": len(pointlist),
                "unit": [None, None],
                "query_index": query_index,
                "attributes": {},
            }
        )
    return series


def v1_body(
    result: Evaluation | Evaluations, query: str, warnings: list[str] | None = None
) -> dict[str, Any]:
    """``GET /api/v1/query``'s body (``MetricsQueryResponse``). Each comma-separated
    expression's series carry its ``query_index``; an expression that could not be answered
    has none, and ``message`` says why (a partial answer is never silent)."""
    if isinstance(result, Evaluation):
        exprs: list[ast.Expr] = [result.expr]
        frames: list[Frame | None] = [result.frame]
    else:
        exprs, frames = result.exprs, result.frames
    series: list[dict[str, Any]] = []
    for index, (expr, frame) in enumerate(zip(exprs, frames, strict=True)):
        if frame is not None:
            series.extend(v1_series(expr, frame, result.grid, result.interval, index))
    leaves = [q for e in exprs for q in ast.metric_queries(e)]
    return {
        "status": "ok",
        "res_type": "time_series",
        "resp_version": 1,
        "query": query,
        "from_date": result.start * 1000,
        "to_date": result.end * 1000,
        "group_by": list(dict.fromkeys(k for q in leaves for k in q.group_by)),
        "series": series,
        "message": "; ".join(warnings or []),
        "values": [],
        "times": [],
    }
