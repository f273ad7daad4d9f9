"""Printing an AST and parsing the text gives the same AST back (and the same text again).

ASTs are generated directly, in the normal form the parser builds (AND/OR flattened and
deduplicated, canonical tags), so every construct of the language is exercised.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from query import ast
from query.functions import SIGNATURES
from query.language import parse
from query.printer import to_text

_WORDS = {"and", "or", "not", "in", "by"}
_name = st.from_regex(r"[a-z][a-z0-9.\-/]{0,6}", fullmatch=True).filter(lambda s: s not in _WORDS)
_value = st.from_regex(r"[a-z0-9][a-z0-9.\-/]{0,6}", fullmatch=True).filter(
    lambda s: s not in _WORDS
)
_key = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True).filter(
    lambda s: s not in _WORDS and not s.endswith("_") and "__" not in s
)
_tag = st.one_of(_name, st.builds(lambda k, v: f"{k}:{v}", _key, _value))
_pattern = st.one_of(
    st.builds(lambda t: t + "*", _tag),
    st.builds(lambda t: "*" + t, _value),
    st.builds(lambda k: k + ":*", _key),
    st.builds(lambda k, a, b: f"{k}:{a}*{b}", _key, _value, _value),
)
_atom: st.SearchStrategy[ast.Filter] = st.one_of(
    st.builds(ast.Tag, _tag),
    st.builds(ast.Wildcard, _pattern),
    st.builds(
        ast.In,
        _key,
        st.lists(_value, min_size=1, max_size=3, unique=True).map(tuple),
        st.booleans(),
    ),
)


def _combine(children: st.SearchStrategy[ast.Filter]) -> st.SearchStrategy[ast.Filter]:
    def nary(kind: type[ast.And] | type[ast.Or]) -> st.SearchStrategy[ast.Filter]:
        args = st.lists(
            children.filter(lambda c: not isinstance(c, kind)), min_size=2, max_size=3, unique=True
        )
        return args.map(lambda a: kind(tuple(a)))

    return st.one_of(st.builds(ast.Not, children), nary(ast.And), nary(ast.Or))


filters = st.one_of(st.just(ast.AllSeries()), st.recursive(_atom, _combine, max_leaves=8))

queries = st.builds(
    ast.MetricQuery,
    st.sampled_from([*ast.Aggregator, *ast.Percentile]),
    st.from_regex(r"[a-zA-Z][a-zA-Z0-9_.]{0,10}", fullmatch=True),
    filters,
    st.lists(_key, max_size=3, unique=True).map(tuple),
    st.none()
    | st.builds(
        ast.Rollup, st.sampled_from(list(ast.Aggregator)), st.none() | st.integers(1, 86400)
    ),
    st.none() | st.sampled_from(list(ast.CountMode)),
    st.none()
    | st.builds(ast.Fill, st.sampled_from(list(ast.FillMode)), st.none() | st.integers(1, 3600)),
)

numbers = st.builds(
    ast.Number,
    st.one_of(
        st.integers(-(10**6), 10**6).map(float),
        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
    ),
)


@st.composite
def calls(draw: st.DrawFn, arg: st.SearchStrategy[ast.Expr]) -> ast.Call:
    name = draw(st.sampled_from(sorted(SIGNATURES)))
    params: list[int | float | str] = []
    for p in SIGNATURES[name]:
        if p.choices:
            params.append(draw(st.sampled_from(p.choices)))
        elif name == "timeshift":
            params.append(draw(st.integers(-(10**6), 10**6)))
        else:
            params.append(draw(st.integers(1, 10**5)))
    return ast.Call(name, draw(arg), tuple(params))


def _expr_children(children: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Expr]:
    return st.one_of(
        st.builds(ast.BinOp, st.sampled_from(["+", "-", "*", "/"]), children, children),
        calls(children),
    )


expressions: st.SearchStrategy[ast.Expr] = st.recursive(
    st.one_of(queries, numbers), _expr_children, max_leaves=6
)


@settings(max_examples=400, deadline=None)
@given(expr=expressions)
def test_print_then_parse_is_identity(expr: ast.Expr) -> None:
    text = to_text(expr)
    again = parse(text)
    assert again == expr, text
    assert to_text(again) == text


@settings(max_examples=200, deadline=None)
@given(f=filters, group_by=st.lists(_key, max_size=2, unique=True).map(tuple))
def test_scopes_round_trip(f: ast.Filter, group_by: tuple[str, ...]) -> None:
    q = ast.MetricQuery(ast.Aggregator.AVG, "m", f, group_by)
    assert parse(to_text(q)) == q
