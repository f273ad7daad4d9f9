"""The query parser: valid queries to the AST, every kind of error with its position, the
legacy single-query entry point, and filter compilation (more cases: tests/golden/queries.json)."""

from __future__ import annotations

import pytest

from query import ast
from query.filters import Resolution, compile_filter
from query.language import (
    MetricQuery,
    QuerySyntaxError,
    SpaceAggregator,
    TagFilter,
    parse,
    parse_query,
)
from query.printer import to_text


def test_minimal_query() -> None:
    q = parse_query("avg:system.cpu.user{*}")
    assert q == MetricQuery(SpaceAggregator.AVG, "system.cpu.user", (), ())
    assert q.scope() == "*"
    assert q.expression() == "avg:system.cpu.user{*}"


def test_filters_negation_and_group_by() -> None:
    q = parse_query("sum:requests{env:prod,!host:a,canary} by {host,env}")
    assert q.aggregator is SpaceAggregator.SUM
    assert q.metric == "requests"
    assert q.filters == (
        TagFilter("env:prod"),
        TagFilter("host:a", negated=True),
        TagFilter("canary"),
    )
    assert q.include == ("env:prod", "canary")
    assert q.exclude == ("host:a",)
    assert q.group_by == ("host", "env")
    assert q.scope(("host:b", "env:prod")) == "env:prod,!host:a,canary,host:b,env:prod"
    assert str(q) == "sum:requests{env:prod,!host:a,canary} by {host,env}"


def test_whitespace_tolerant() -> None:
    q = parse_query("  max : m.x { env:prod ,  ! role:db }   by  { az , host }  ")
    assert q == MetricQuery(
        SpaceAggregator.MAX,
        "m.x",
        (TagFilter("env:prod"), TagFilter("role:db", negated=True)),
        ("az", "host"),
    )


def test_tags_are_normalised_like_intake_and_deduplicated() -> None:
    q = parse_query("min:m{Env:Prod,env:prod,host:MyHost} by {Host,host}")
    assert q.filters == (TagFilter("env:prod"), TagFilter("host:MyHost"))
    assert q.group_by == ("host",)


def test_tag_values_with_url_like_characters() -> None:
    q = parse_query("avg:m{path:/api/v1.2-x,team:a_b}")
    assert q.include == ("path:/api/v1.2-x", "team:a_b")


def test_uppercase_aggregator_accepted() -> None:
    assert parse_query("AVG:m{*}").aggregator is SpaceAggregator.AVG


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("", 0, "query is empty"),
        ("   ", 0, "query is empty"),
        ("median:m{*}", 0, "unknown aggregator 'median'"),
        ("avg m{*}", 4, "expected ':'"),
        ("avg:{*}", 4, "expected a metric name"),
        ("avg:1m{*}", 4, "must start with a letter"),
        ("avg:m", 5, "expected '{'"),
        ("avg:m{", 6, "expected a tag filter"),
        ("avg:m{env:prod", 14, "expected ',' or '}'"),
        ("avg:m{env:prod,}", 15, "expected a tag filter"),
        ("avg:m{env:prod host:a}", 15, "expected ',' or '}'"),
        ("avg:m{env:prod} by", 18, "expected '{' after 'by'"),
        ("avg:m{*} by {env:prod}", 13, "invalid group-by tag key"),
        ("avg:m{*} group {host}", 9, "unexpected 'group {host}'"),
        ("avg:m{!!}", 7, "expected a tag filter"),
        ("avg:m{___}", 6, "no valid characters"),
        ("avg:m{env:a(1)}", 11, "functions are not supported"),
        ("avg:m{*,env:a}", 6, "'*' must be the whole scope"),
        ("avg:m{a, b OR c}", 11, "cannot mix"),
        ("p42:m{*}", 0, "unknown aggregator 'p42'; expected one of avg, sum, min, max, count, p50"),
        ("avg:m{*}.rollup(sum) * (", 24, "expected a query"),
    ],
)
def test_errors_name_the_position(text: str, position: int, fragment: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse(text)
    assert info.value.position == position, str(info.value)
    assert fragment in str(info.value)
    assert str(info.value).endswith(f"at position {position}")


@pytest.mark.parametrize(
    "text",
    ["avg:m{env:pr*}", "avg:m{a OR b}", "avg:m{*}.rollup(sum)", "count:m{*}", "avg:m{*} + 1"],
)
def test_legacy_entry_point_refuses_the_rich_language(text: str) -> None:
    parse(text)  # valid in the full language
    with pytest.raises(QuerySyntaxError, match="full evaluator"):
        parse_query(text)


def test_ast_positions_point_into_the_text() -> None:
    text = "abs(sum:m{env:a OR host:web-*} by {host}) / 2"
    e = parse(text)
    assert isinstance(e, ast.BinOp) and text[e.pos] == "/"
    assert isinstance(e.left, ast.Call) and e.left.pos == 0
    q = e.left.arg
    assert isinstance(q, ast.MetricQuery) and text[q.pos :].startswith("sum:m")
    assert isinstance(q.filter, ast.Or)
    tag, wild = q.filter.args
    assert text[tag.pos :].startswith("env:a") and text[wild.pos :].startswith("host:web-*")


def test_filter_compiles_to_lists_or_the_contract_tree() -> None:
    def compiled(scope: str) -> Resolution:
        q = parse(f"avg:m{{{scope}}}")
        assert isinstance(q, ast.MetricQuery)
        return compile_filter(q.filter)

    assert compiled("*") == Resolution()
    assert compiled("env:a,!host:b") == Resolution(("env:a",), ("host:b",))
    assert compiled("env:a AND NOT host:b") == Resolution(("env:a",), ("host:b",))
    assert compiled("env:a OR NOT role:web-*").tree == {
        "op": "or",
        "args": [
            {"op": "tag", "tag": "env:a"},
            {"op": "not", "arg": {"op": "wildcard", "pattern": "role:web-*"}},
        ],
    }
    assert compiled("env NOT IN (a, b)").tree == {
        "op": "not",
        "arg": {"op": "or", "args": [{"op": "tag", "tag": "env:a"}, {"op": "tag", "tag": "env:b"}]},
    }
    assert compiled("env IN (A)").tree == {"op": "tag", "tag": "env:a"}
    assert compiled("!env:*").tree == {"op": "not", "arg": {"op": "wildcard", "pattern": "env:*"}}


def test_wildcards_are_normalised_like_tags() -> None:
    q = parse("avg:m{Env:Web-*,host:Web-*,role:a%b*}")
    assert isinstance(q, ast.MetricQuery) and isinstance(q.filter, ast.And)
    assert [f.pattern for f in q.filter.args if isinstance(f, ast.Wildcard)] == [
        "env:web-*",
        "host:Web-*",
        "role:a_b*",
    ]


def test_limits_on_nesting_and_size() -> None:
    deep = "avg:m{" + "(" * 40 + "a" + ")" * 40 + "}"
    with pytest.raises(QuerySyntaxError, match="nested deeper than 32"):
        parse(deep)
    wide = "avg:m{" + " OR ".join(f"t{i}" for i in range(1001)) + "}"
    with pytest.raises(QuerySyntaxError, match="more than 1000 filters"):
        parse(wide)


def test_metric_name_too_long() -> None:
    with pytest.raises(QuerySyntaxError, match="longer than 200"):
        parse_query("avg:" + "m" * 201 + "{*}")


@pytest.mark.parametrize("name", ["p50", "p75", "p90", "P95", "p99"])
def test_percentiles_parse_for_distributions(name: str) -> None:
    q = parse(f"{name}:latency{{env:prod}} by {{host}}")
    assert isinstance(q, ast.MetricQuery)
    assert q.aggregator is ast.Percentile(name.lower())
    assert q.aggregator.quantile == int(name[1:]) / 100
    assert to_text(q) == f"{name.lower()}:latency{{env:prod}} by {{host}}"
    with pytest.raises(QuerySyntaxError, match="query needs the full evaluator"):
        parse_query(f"{name}:latency{{*}}")
