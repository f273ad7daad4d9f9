"""The v2 formula parser and the scalar reductions (pure)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from query import ast
from query.functions import Frame
from query.routes_v2 import (
    Bin,
    Fn,
    FormulaError,
    Num,
    Ref,
    combine_scalars,
    parse_formula,
    reduce_rows,
    to_expr,
)

NAMES = {"a", "b", "query1"}


def test_precedence_and_parentheses() -> None:
    assert parse_formula("a + b * 2", NAMES) == Bin(
        "+", Ref("a", 0), Bin("*", Ref("b", 4), Num(2.0, 8), 6), 2
    )
    assert parse_formula("(a + b) / query1", NAMES) == Bin(
        "/", Bin("+", Ref("a", 1), Ref("b", 5), 3), Ref("query1", 10), 8
    )
    assert parse_formula("-a", NAMES) == Bin("*", Num(-1.0, 0), Ref("a", 1), 0)


def test_functions_take_defaults_and_quoted_or_bare_names() -> None:
    assert parse_formula("top(a, 3, 'max')", NAMES) == Fn("top", Ref("a", 4), (3, "max", "desc"), 0)
    assert parse_formula("ABS(a)", NAMES) == Fn("abs", Ref("a", 4), (), 0)
    assert parse_formula('moving_rollup(a, 60, "sum")', NAMES) == Fn(
        "moving_rollup", Ref("a", 14), (60, "sum"), 0
    )
    assert parse_formula("timeshift(a, -3600)", NAMES) == Fn("timeshift", Ref("a", 10), (-3600,), 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a + c", "unknown query name 'c'; the queries are a, b, query1 at position 4"),
        ("a +", "expected a query name, number or '(' but found 'the end' at position 3"),
        ("a b", "unexpected 'b' after the formula at position 2"),
        ("a % b", "unexpected character '%' at position 2"),
        ("(a", "expected ')' but found 'the end' at position 2"),
        ("median(a)", "unknown function 'median'; expected one of abs,"),
        ("timeshift(a)", "timeshift() needs the parameter 'seconds' at position 0"),
        ("top(a, 0)", "top() parameter 'n' must be positive at position 7"),
        ("top(a, 1.5)", "top() parameter 'n' must be an integer at position 7"),
        ("1 + 2", "the formula needs at least one query name at position 0"),
    ],
)
def test_errors_point_at_the_position(text: str, message: str) -> None:
    with pytest.raises(FormulaError) as err:
        parse_formula(text, NAMES)
    assert str(err.value).startswith(message)


def test_names_become_the_parsed_queries() -> None:
    q = ast.MetricQuery(ast.Aggregator.SUM, "cpu", ast.AllSeries())
    expr = to_expr(parse_formula("abs(a) * 2", {"a"}), {"a": q})
    assert expr == ast.BinOp("*", ast.Call("abs", q), ast.Number(2.0))


def test_reduce_rows_against_python() -> None:
    nan = np.nan
    values = np.array([[1.0, nan, -3.0, 2.0], [nan, nan, nan, nan], [nan, 5.0, nan, nan]])
    rows = [[1.0, -3.0, 2.0], [], [5.0]]
    expected: dict[str, Callable[[list[float]], float]] = {
        "avg": lambda v: sum(v) / len(v),
        "sum": sum,
        "min": min,
        "max": max,
        "last": lambda v: v[-1],
        "l2norm": lambda v: sum(x * x for x in v) ** 0.5,
        "area": lambda v: sum(abs(x) for x in v),
    }
    for agg, fn in expected.items():
        got = reduce_rows(values, agg).tolist()
        want = [float(fn(r)) if r else nan for r in rows]
        np.testing.assert_allclose(got, want, err_msg=agg)


def test_scalar_formulas_align_by_tag_set() -> None:
    a = Frame([("host:a",), ("host:b",)], np.array([[2.0], [4.0]]))
    b = Frame([("host:b",), ("host:c",)], np.array([[8.0], [1.0]]))
    total = Frame([()], np.array([[10.0]]))
    out = combine_scalars(parse_formula("b / a", {"a", "b"}), {"a": a, "b": b})
    assert isinstance(out, Frame) and out.tag_sets == [("host:b",)]
    assert out.values.tolist() == [[2.0]]
    out = combine_scalars(parse_formula("a / t * 100", {"a", "t"}), {"a": a, "t": total})
    assert isinstance(out, Frame) and out.values.tolist() == [[20.0], [40.0]]
