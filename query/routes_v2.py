"""The v2 query API (issue 4 item 2): ``POST /api/v2/query/timeseries`` and
``POST /api/v2/query/scalar`` in the shapes the official ``datadog-api-client``
(``MetricsApi.query_timeseries_data`` / ``query_scalar_data``) sends and deserializes.

A request names metric queries (``{"data_source": "metrics", "name": "a", "query":
"avg:cpu{*} by {host}"}``) and formulas over the names (``a + b``, ``a / b * 100``,
``abs(a)``, ``top(a, 5, 'max', 'desc')``), with ms timestamps (``from`` inclusive, ``to``
exclusive) and an optional interval hint in ms. Each query is parsed by the v1 language
(:mod:`query.language`); a formula is parsed here (:func:`parse_formula`) into a small
tree whose leaves are query names, then:

- timeseries: the names are replaced by the parsed queries and every formula is evaluated
  by :mod:`query.evaluate` on one shared bucket grid (the response has one ``times``);
- scalar: each referenced query is evaluated, reduced over time per group by its
  ``aggregator`` (:func:`reduce_rows`), and the formula combines those numbers.

Layout: pure request validation, formula parsing and response shaping first, the HTTP
router (:func:`v2_router`) last. Errors are ``BadParameter`` (400 ``{"errors": [...]}``
via query/app.py's handlers) naming the JSON path, e.g. ``data.attributes.formulas[0].
formula: unknown query name 'c' at position 4``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import query.app  # authenticate; a module import, since query.app includes this router
from query import ast
from query.evaluate import Evaluations, align, binary, evaluate_all
from query.fanout import warnings
from query.functions import SIGNATURES, Floats, Frame, apply_unary, top
from query.language import QuerySyntaxError, parse
from query.params import MAX_TIMESTAMP, BadParameter
from query.responses import TIERS_HEADER
from query.settings import QuerySettings
from query.stores_client import StoreClient
from strata.keys import KeyStore

ATTRS = "data.attributes"
MAX_QUERIES = 50
SCALAR_AGGREGATORS = ("avg", "mean", "min", "max", "sum", "last", "l2norm", "area")

# -- request bodies (pure) --------------------------------------------------------------------

Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100)]


class _Model(BaseModel):
    # Unknown fields (``cross_org_uuids``, future client fields) are ignored, as Datadog does.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class QuerySpec(_Model):
    data_source: Literal["metrics"]
    name: Name | None = None
    query: Annotated[str, Field(min_length=1, max_length=8000)]
    aggregator: str | None = None  # scalar only (checked there)


class LimitSpec(_Model):
    count: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    order: Literal["asc", "desc"] = "desc"


class FormulaSpec(_Model):
    formula: Annotated[str, Field(min_length=1, max_length=4000)]
    limit: LimitSpec | None = None


class AttributesSpec(_Model):
    from_: Annotated[int, Field(alias="from", ge=0)]
    to: Annotated[int, Field(ge=0)]
    interval: Annotated[int, Field(ge=1)] | None = None  # timeseries only, ms
    queries: Annotated[list[QuerySpec], Field(min_length=1, max_length=MAX_QUERIES)]
    formulas: Annotated[list[FormulaSpec], Field(max_length=MAX_QUERIES)] | None = None


class DataSpec(_Model):
    type: Literal["timeseries_request", "scalar_request"]
    attributes: AttributesSpec


class RequestSpec(_Model):
    data: DataSpec


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


@dataclass(frozen=True, slots=True)
class V2Request:
    """A validated request: inclusive Unix-second range, parsed queries by name (in request
    order), formulas (``None`` = each query is its own formula) and the interval hint."""

    start: int
    end: int
    interval_hint: int | None  # seconds
    queries: dict[str, tuple[int, ast.Expr, str | None]]  # name -> (index, expr, aggregator)
    formulas: list[FormulaSpec]


def validate_request(body: object, kind: Literal["timeseries", "scalar"]) -> V2Request:
    """Check ``body`` against the client's request model and parse its queries; every
    error is a :class:`BadParameter` naming the JSON path of the problem."""
    try:
        spec = RequestSpec.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{_path(e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise BadParameter(f"invalid {kind} request: {problems}") from None
    if spec.data.type != f"{kind}_request":
        raise BadParameter(f"data.type must be '{kind}_request', got {spec.data.type!r}")
    a = spec.data.attributes
    if a.from_ >= a.to:
        raise BadParameter(f"{ATTRS}.from ({a.from_} ms) must be before {ATTRS}.to ({a.to} ms)")
    if a.to > (MAX_TIMESTAMP + 1) * 1000:
        raise BadParameter(f"{ATTRS}.to is out of range: timestamps are Unix milliseconds")
    queries: dict[str, tuple[int, ast.Expr, str | None]] = {}
    for i, q in enumerate(a.queries):
        where = f"{ATTRS}.queries[{i}]"
        name = q.name or f"query{i + 1}"
        if name in queries:
            raise BadParameter(f"{where}.name: {name!r} is used by another query")
        if kind == "scalar" and q.aggregator not in SCALAR_AGGREGATORS:
            raise BadParameter(
                f"{where}.aggregator must be one of {', '.join(SCALAR_AGGREGATORS)}, "
                f"got {q.aggregator!r}"
            )
        try:
            expr = parse(q.query)
        except QuerySyntaxError as exc:
            raise BadParameter(f"{where}.query: {exc}") from None
        queries[name] = (i, expr, q.aggregator)
    formulas = a.formulas if a.formulas else [FormulaSpec(formula=n) for n in queries]
    hint = None if a.interval is None else -(-a.interval // 1000)
    return V2Request(a.from_ // 1000, (a.to - 1) // 1000, hint, queries, formulas)


# -- formulas (pure) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ref:
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Num:
    value: float
    pos: int


@dataclass(frozen=True, slots=True)
class Bin:
    op: str
    left: Formula
    right: Formula
    pos: int


@dataclass(frozen=True, slots=True)
class Fn:
    name: str
    arg: Formula
    params: tuple[int | str, ...]
    pos: int


Formula = Ref | Num | Bin | Fn

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<str>'[^']*'|\"[^\"]*\")|(?P<op>[-+*/(),]))"
)


class FormulaError(ValueError):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"{message} at position {pos}")
        self.pos = pos


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            at = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise FormulaError(f"unexpected character {text[at]!r}", at)
        out.append((m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
        pos = m.end()
    out.append(("end", "", len(text)))
    return out


class _FormulaParser:
    def __init__(self, text: str, names: set[str]) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.names = names

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i]

    def take(self, value: str, what: str) -> None:
        kind, text, pos = self.peek()
        if text != value or kind not in ("op",):
            raise FormulaError(f"expected {what} but found {text or 'the end'!r}", pos)
        self.i += 1

    def expr(self) -> Formula:
        left = self.term()
        while self.peek()[1] in ("+", "-") and self.peek()[0] == "op":
            _, op, pos = self.peek()
            self.i += 1
            left = Bin(op, left, self.term(), pos)
        return left

    def term(self) -> Formula:
        left = self.unary()
        while self.peek()[1] in ("*", "/") and self.peek()[0] == "op":
            _, op, pos = self.peek()
            self.i += 1
            left = Bin(op, left, self.unary(), pos)
        return left

    def unary(self) -> Formula:
        kind, text, pos = self.peek()
        self.i += 1
        if kind == "op" and text == "-":
            return Bin("*", Num(-1.0, pos), self.unary(), pos)
        if kind == "num":
            return Num(float(text), pos)
        if kind == "op" and text == "(":
            inner = self.expr()
            self.take(")", "')'")
            return inner
        if kind == "name" and self.peek()[1] == "(" and self.peek()[0] == "op":
            return self.call(text, pos)
        if kind == "name":
            if text not in self.names:
                known = ", ".join(sorted(self.names))
                raise FormulaError(f"unknown query name {text!r}; the queries are {known}", pos)
            return Ref(text, pos)
        raise FormulaError(
            f"expected a query name, number or '(' but found {text or 'the end'!r}", pos
        )

    def call(self, name: str, pos: int) -> Fn:
        signature = SIGNATURES.get(name.lower())
        if signature is None:
            choices = ", ".join(sorted(SIGNATURES))
            raise FormulaError(f"unknown function {name!r}; expected one of {choices}", pos)
        name = name.lower()
        self.take("(", "'('")
        arg = self.expr()
        params: list[int | str] = []
        for param in signature:
            if self.peek()[1] != ",":
                if param.default is None:
                    raise FormulaError(f"{name}() needs the parameter '{param.name}'", pos)
                params.append(param.default)
                continue
            self.i += 1
            params.append(self.param(name, param.name, param.choices))
        self.take(")", f"',' or ')' in {name}()")
        return Fn(name, arg, tuple(params), pos)

    def param(self, func: str, name: str, choices: tuple[str, ...]) -> int | str:
        neg = self.peek()[1] == "-" and self.peek()[0] == "op"
        self.i += neg
        kind, text, pos = self.peek()
        self.i += 1
        if not choices:
            if kind != "num" or not float(text).is_integer():
                raise FormulaError(f"{func}() parameter '{name}' must be an integer", pos)
            value = -int(float(text)) if neg else int(float(text))
            if name in ("n", "seconds") and func != "timeshift" and value <= 0:
                raise FormulaError(f"{func}() parameter '{name}' must be positive", pos)
            return value
        word = text[1:-1] if kind == "str" else text
        if neg or kind not in ("str", "name") or word.lower() not in choices:
            raise FormulaError(
                f"{func}() parameter '{name}' must be one of {', '.join(choices)}, not {text!r}",
                pos,
            )
        return word.lower()


def parse_formula(text: str, names: set[str]) -> Formula:
    """The formula tree of ``text`` over the query ``names``; :class:`FormulaError` (with
    the 0-based position) for anything else."""
    p = _FormulaParser(text, names)
    tree = p.expr()
    kind, rest, pos = p.peek()
    if kind != "end":
        raise FormulaError(f"unexpected {rest!r} after the formula", pos)
    if not refs(tree):
        raise FormulaError("the formula needs at least one query name", 0)
    return tree


def refs(f: Formula) -> list[str]:
    """The query names of ``f``, left to right."""
    if isinstance(f, Ref):
        return [f.name]
    if isinstance(f, Bin):
        return refs(f.left) + refs(f.right)
    if isinstance(f, Fn):
        return refs(f.arg)
    return []


def to_expr(f: Formula, queries: dict[str, ast.Expr]) -> ast.Expr:
    """``f`` as a v1 expression, each name replaced by its parsed query."""
    if isinstance(f, Ref):
        return queries[f.name]
    if isinstance(f, Num):
        return ast.Number(f.value, f.pos)
    if isinstance(f, Bin):
        return ast.BinOp(f.op, to_expr(f.left, queries), to_expr(f.right, queries), f.pos)
    return ast.Call(f.name, to_expr(f.arg, queries), f.params, f.pos)


def parse_formulas(req: V2Request) -> list[Formula]:
    out = []
    for i, spec in enumerate(req.formulas):
        try:
            out.append(parse_formula(spec.formula, set(req.queries)))
        except FormulaError as exc:
            raise BadParameter(f"{ATTRS}.formulas[{i}].formula: {exc}") from None
    return out


# -- scalar arithmetic (pure) -------------------------------------------------------------------


def reduce_rows(values: Floats, aggregator: str) -> Floats:
    """One number per row (NaN for a row without values): ``avg``/``mean``, ``sum``,
    ``min``, ``max``, ``last`` (latest present value), ``l2norm`` (√Σv²), ``area`` (Σ|v|)."""
    if values.shape[1] == 0:
        return np.full(values.shape[0], np.nan)
    present = ~np.isnan(values)
    any_present = present.any(axis=1)
    zeroed = np.where(present, values, 0.0)
    count = present.sum(axis=1)
    if aggregator in ("avg", "mean"):
        with np.errstate(all="ignore"):
            out = zeroed.sum(axis=1) / count
    elif aggregator == "sum":
        out = zeroed.sum(axis=1)
    elif aggregator == "min":
        out = np.where(present, values, np.inf).min(axis=1)
    elif aggregator == "max":
        out = np.where(present, values, -np.inf).max(axis=1)
    elif aggregator == "last":
        last = values.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)
        out = values[np.arange(values.shape[0]), last]
    elif aggregator == "l2norm":
        out = np.sqrt((zeroed**2).sum(axis=1))
    elif aggregator == "area":
        out = np.abs(zeroed).sum(axis=1)
    else:
        raise ValueError(f"unknown scalar aggregator {aggregator!r}")
    out = np.where(any_present & np.isfinite(out), out, np.nan)
    return np.asarray(out, dtype=np.float64)


_NOT_SCALAR = ("timeshift", "moving_rollup", "cumsum", "integral", "diff", "derivative")


def combine_scalars(f: Formula, scalars: dict[str, Frame]) -> Frame | float:
    """Evaluate ``f`` over one-column frames (one number per group), aligning groups by tag
    set as timeseries arithmetic does."""
    if isinstance(f, Ref):
        return scalars[f.name]
    if isinstance(f, Num):
        return f.value
    if isinstance(f, Bin):
        a, b = combine_scalars(f.left, scalars), combine_scalars(f.right, scalars)
        if isinstance(a, float) and isinstance(b, float):
            return float(binary(f.op, np.array([a]), np.array([b]))[0])
        if isinstance(a, float):
            assert isinstance(b, Frame)
            return Frame(b.tag_sets, binary(f.op, a, b.values))
        if isinstance(b, float):
            return Frame(a.tag_sets, binary(f.op, a.values, b))
        tag_sets, lv, rv = align(a, b)
        return Frame(tag_sets, binary(f.op, lv, rv))
    if f.name in _NOT_SCALAR:
        raise FormulaError(f"{f.name}() works on timeseries, not on scalar queries", f.pos)
    arg = combine_scalars(f.arg, scalars)
    if not isinstance(arg, Frame):
        raise FormulaError(f"{f.name}() needs a query name, not a number", f.pos)
    if f.name == "top":
        n, by, order = f.params
        return top(arg, int(n), str(by), str(order))
    return Frame(arg.tag_sets, apply_unary(f.name, arg.values, 1))


def limit_frame(frame: Frame, limit: LimitSpec | None) -> Frame:
    """At most ``limit.count`` rows, ranked by their mean (``order`` desc by default; rows
    without values last; ties keep the input order) and returned in rank order."""
    if limit is None or limit.count is None:
        return frame
    means = reduce_rows(frame.values, "avg")
    key = -means if limit.order == "desc" else means
    ranked = np.argsort(np.where(np.isnan(key), np.inf, key), kind="stable")[: limit.count]
    return Frame([frame.tag_sets[i] for i in ranked.tolist()], frame.values[ranked])


# -- responses (pure) -----------------------------------------------------------------------------


def _nullable(values: Floats) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.tolist()]


def timeseries_body(grid_seconds: Any, frames: list[Frame]) -> dict[str, Any]:
    """``TimeseriesFormulaQueryResponse``: one series per formula row with a value;
    ``query_index`` is the formula's index; ``values`` parallel to ``series``."""
    series: list[dict[str, Any]] = []
    values: list[list[float | None]] = []
    for index, frame in enumerate(frames):
        for tag_set, row in zip(frame.tag_sets, frame.values, strict=True):
            if np.isnan(row).all():
                continue
            series.append({"group_tags": list(tag_set), "query_index": index, "unit": None})
            values.append(_nullable(row))
    times = (np.asarray(grid_seconds, dtype=np.int64) * 1000).tolist()
    return {
        "data": {
            "type": "timeseries_response",
            "attributes": {"series": series, "times": times, "values": values},
        }
    }


def _key(tag: str) -> tuple[str, str]:
    key, sep, value = tag.partition(":")
    return (key, value) if sep else ("", tag)


def scalar_body(names: list[str], frames: list[Frame]) -> dict[str, Any]:
    """``ScalarFormulaQueryResponse``: group columns (one per tag key of the groups, values
    ``[[value], ...]`` per row), then one number column per formula, all parallel. Rows are
    the groups of the first formula, in its (limited) order, then any other formula's
    groups in sorted order; a formula without a row's group has null there."""
    rows: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()
    for frame in frames:
        extra = [t for t in frame.tag_sets if t not in seen]
        rows.extend(extra if frame is frames[0] else sorted(extra))
        seen.update(extra)
    keys = list(dict.fromkeys(_key(t)[0] for row in rows for t in row))
    columns: list[dict[str, Any]] = []
    for key in keys:
        cells = [[v for k, v in map(_key, row) if k == key] for row in rows]
        columns.append({"name": key, "type": "group", "values": cells})
    for name, frame in zip(names, frames, strict=True):
        by_row = {
            t: float(v) for t, v in zip(frame.tag_sets, frame.values[:, 0].tolist(), strict=True)
        }
        numbers = _nullable(np.array([by_row.get(r, np.nan) for r in rows], dtype=np.float64))
        columns.append({"name": name, "type": "number", "values": numbers, "meta": {"unit": None}})
    return {"data": {"type": "scalar_response", "attributes": {"columns": columns}}}


# -- evaluation over the stores -------------------------------------------------------------------


EMPTY = Frame([], np.empty((0, 0)))


def with_errors(body: dict[str, Any]) -> dict[str, Any]:
    """Add the request's partial-answer warnings as the response's ``errors`` string (the
    field both v2 response models carry), so clients see what is missing."""
    found = warnings()
    if found:
        body["errors"] = "; ".join(found)
    return body


def v2_router(settings: QuerySettings, client: StoreClient, keys: KeyStore) -> APIRouter:
    """The v2 query endpoints; errors go through query/app.py's exception handlers."""
    router = APIRouter()

    def run(req: V2Request, exprs: list[ast.Expr], org: str, response: Response) -> Evaluations:
        result = evaluate_all(
            exprs,
            org,
            req.start,
            req.end,
            client,
            max_points=settings.max_points,
            max_series=settings.max_series,
            interval_hint=req.interval_hint,
        )
        if result.tiers:
            response.headers[TIERS_HEADER] = ",".join(result.tiers)
        return result

    @router.post("/api/v2/query/timeseries")
    def timeseries(
        request: Request, response: Response, body: Annotated[Any, Body()] = None
    ) -> dict[str, Any]:
        org = query.app.authenticate(request, keys)
        req = validate_request(body, "timeseries")
        formulas = parse_formulas(req)
        parsed = {name: expr for name, (_, expr, _) in req.queries.items()}
        result = run(req, [to_expr(f, parsed) for f in formulas], org, response)
        frames = [
            limit_frame(frame if frame is not None else EMPTY, spec.limit)
            for frame, spec in zip(result.frames, req.formulas, strict=True)
        ]
        return with_errors(timeseries_body(result.grid, frames))

    @router.post("/api/v2/query/scalar")
    def scalar(
        request: Request, response: Response, body: Annotated[Any, Body()] = None
    ) -> dict[str, Any]:
        org = query.app.authenticate(request, keys)
        req = validate_request(body, "scalar")
        formulas = parse_formulas(req)
        used = list(dict.fromkeys(n for f in formulas for n in refs(f)))
        result = run(req, [req.queries[n][1] for n in used], org, response)
        scalars: dict[str, Frame] = {}
        for name, frame in zip(used, result.frames, strict=True):
            if frame is None:
                continue  # a warning names it; formulas over it have no rows
            aggregator = req.queries[name][2] or "avg"
            scalars[name] = Frame(frame.tag_sets, reduce_rows(frame.values, aggregator)[:, None])
        frames: list[Frame] = []
        for i, (f, spec) in enumerate(zip(formulas, req.formulas, strict=True)):
            if not set(refs(f)) <= scalars.keys():
                frames.append(EMPTY)
                continue
            try:
                out = combine_scalars(f, scalars)
            except FormulaError as exc:
                raise BadParameter(f"{ATTRS}.formulas[{i}].formula: {exc}") from None
            assert isinstance(out, Frame)
            keep = ~np.isnan(out.values[:, 0])
            kept = Frame(
                [t for t, k in zip(out.tag_sets, keep.tolist(), strict=True) if k], out.values[keep]
            )
            frames.append(limit_frame(kept, spec.limit))
        return with_errors(scalar_body([spec.formula for spec in req.formulas], frames))

    return router
