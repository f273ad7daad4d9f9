"""AST -> canonical query text. ``parse(to_text(e)) == e`` for every AST the parser builds
(a property test checks it).

Canonical form: lower-case aggregators and keywords; a scope that is only (negated) tags
and patterns ANDed is written Datadog's classic way (``env:prod,!host:a``), any other
scope with ``AND``/``OR``/``NOT``/``IN``; ``by {...}`` before the modifiers, which come in
the order rollup, count mode, fill; arithmetic with the parentheses precedence needs; every
function parameter written out (defaults included).
"""

from __future__ import annotations

from query import ast

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def number_text(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _atom(f: ast.Filter) -> bool:
    return isinstance(f, ast.Tag | ast.Wildcard)


def _classic(f: ast.Filter) -> bool:
    """Writable with ',' and '!' only."""
    items = f.args if isinstance(f, ast.And) else (f,)
    return all(_atom(i) or (isinstance(i, ast.Not) and _atom(i.arg)) for i in items)


def _leaf(f: ast.Tag | ast.Wildcard) -> str:
    return f.tag if isinstance(f, ast.Tag) else f.pattern


def _bool(f: ast.Filter) -> str:
    if isinstance(f, ast.Tag | ast.Wildcard):
        return _leaf(f)
    if isinstance(f, ast.AllSeries):
        return "*"
    if isinstance(f, ast.In):
        op = "NOT IN" if f.negated else "IN"
        return f"{f.key} {op} ({', '.join(f.values)})"
    if isinstance(f, ast.Not):
        inner = _bool(f.arg)
        return (
            f"NOT {inner}"
            if isinstance(f.arg, ast.Tag | ast.Wildcard | ast.In | ast.Not)
            else f"NOT ({inner})"
        )
    if isinstance(f, ast.And):
        return " AND ".join(f"({_bool(a)})" if isinstance(a, ast.Or) else _bool(a) for a in f.args)
    return " OR ".join(f"({_bool(a)})" if isinstance(a, ast.And) else _bool(a) for a in f.args)


def filter_text(f: ast.Filter) -> str:
    """The scope as written between the braces."""
    if isinstance(f, ast.AllSeries):
        return "*"
    if _classic(f):
        items = f.args if isinstance(f, ast.And) else (f,)
        parts = []
        for i in items:
            if isinstance(i, ast.Not) and isinstance(i.arg, ast.Tag | ast.Wildcard):
                parts.append("!" + _leaf(i.arg))
            elif isinstance(i, ast.Tag | ast.Wildcard):
                parts.append(_leaf(i))
        return ",".join(parts)
    return _bool(f)


def query_text(q: ast.MetricQuery, *, scope: str | None = None) -> str:
    """One metric query; ``scope`` replaces the written scope (a group's expression)."""
    text = f"{q.aggregator.value}:{q.metric}{{{filter_text(q.filter) if scope is None else scope}}}"
    if q.group_by and scope is None:
        text += " by {" + ",".join(q.group_by) + "}"
    if q.rollup is not None:
        seconds = "" if q.rollup.seconds is None else f", {q.rollup.seconds}"
        text += f".rollup({q.rollup.method.value}{seconds})"
    if q.count_mode is not None:
        text += f".{q.count_mode.value}()"
    if q.fill is not None:
        limit = "" if q.fill.limit is None else f", {q.fill.limit}"
        text += f".fill({q.fill.mode.value}{limit})"
    return text


def to_text(e: ast.Expr) -> str:
    """Canonical text of an expression."""
    if isinstance(e, ast.MetricQuery):
        return query_text(e)
    if isinstance(e, ast.Number):
        return number_text(e.value)
    if isinstance(e, ast.Call):
        params = "".join(
            f", '{p}'" if isinstance(p, str) else f", {number_text(float(p))}" for p in e.params
        )
        return f"{e.name}({to_text(e.arg)}{params})"
    prec = _PRECEDENCE[e.op]
    left = to_text(e.left)
    if isinstance(e.left, ast.BinOp) and _PRECEDENCE[e.left.op] < prec:
        left = f"({left})"
    right = to_text(e.right)
    if isinstance(e.right, ast.BinOp) and _PRECEDENCE[e.right.op] <= prec:
        right = f"({right})"
    return f"{left} {e.op} {right}"
