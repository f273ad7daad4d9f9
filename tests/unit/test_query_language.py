"""The query parser: valid queries to the AST, and every kind of error with its position."""

from __future__ import annotations

import pytest

from query.language import MetricQuery, QuerySyntaxError, SpaceAggregator, TagFilter, parse_query


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
        (":m{*}", 0, "unknown aggregator"),
        ("avg m{*}", 4, "expected ':'"),
        ("avg:{*}", 4, "expected a metric name"),
        ("avg:1m{*}", 4, "must start with a letter"),
        ("avg:m", 5, "expected '{'"),
        ("avg:m{", 6, "expected a tag filter"),
        ("avg:m{}", 6, "expected a tag filter"),
        ("avg:m{env:prod", 14, "expected ',' or '}'"),
        ("avg:m{env:prod,}", 15, "expected a tag filter"),
        ("avg:m{env:pr*}", 6, "wildcard"),
        ("avg:m{env:prod AND host:a}", 15, "boolean operator 'AND'"),
        ("avg:m{env:prod host:a}", 15, "expected ',' or '}'"),
        ("avg:m{env:prod} by", 18, "expected '{' after 'by'"),
        ("avg:m{env:prod} by {}", 20, "expected a tag key"),
        ("avg:m{*} by {env:prod}", 13, "invalid group-by tag key"),
        ("avg:m{*} by {host", 17, "expected ',' or '}'"),
        ("avg:m{*} group {host}", 9, "unexpected 'group {host}'"),
        ("avg:m{*}.rollup(sum)", 8, "unexpected '.rollup(sum)'"),
        ("avg:m{*} by {host} x", 19, "after the end of the query"),
        ("avg:m{!!}", 7, "expected a tag filter"),
        ("avg:m{___}", 6, "no valid characters"),
        ("avg:m{env:a(1)}", 11, "functions are not supported"),
        ("avg:m{*,env:a}", 7, "expected ',' or '}'"),
    ],
)
def test_errors_name_the_position(text: str, position: int, fragment: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(text)
    assert info.value.position == position, str(info.value)
    assert fragment in str(info.value)
    assert str(info.value).endswith(f"at position {position}")


def test_metric_name_too_long() -> None:
    with pytest.raises(QuerySyntaxError, match="longer than 200"):
        parse_query("avg:" + "m" * 201 + "{*}")
