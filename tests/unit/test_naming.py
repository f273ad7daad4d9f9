"""Datadog metric-name and tag normalisation, canonical tag sets, series ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strata.naming import InvalidName, canonical_tags, normalize_metric_name, normalize_tag
from strata.series_id import series_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("system.load.1", "system.load.1"),
        ("My Metric-name!", "My_Metric_name_"),
        ("app.requests_total", "app.requests_total"),
    ],
)
def test_metric_names(raw: str, expected: str) -> None:
    assert normalize_metric_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "1abc", "_x", "é.metric", "a" * 201])
def test_invalid_metric_names(raw: str) -> None:
    with pytest.raises(InvalidName):
        normalize_metric_name(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Env:Prod", "env:prod"),
        ("host:Web-01.Example.com", "host:Web-01.Example.com"),
        ("HOST:Web-01", "host:Web-01"),
        ("device:/dev/SDA1", "device:/dev/SDA1"),
        ("team:a b  c", "team:a_b_c"),
        ("path:/var/log", "path:/var/log"),
        ("trailing!!", "trailing"),
        ("1leading:digit", "leading:digit"),
        ("région:été", "région:été"),
        ("a,b", "a_b"),
        ("!!!", None),
        ("", None),
    ],
)
def test_tags(raw: str, expected: str | None) -> None:
    assert normalize_tag(raw) == expected


def test_tag_length_is_capped() -> None:
    tag = normalize_tag("k:" + "v" * 500)
    assert tag is not None and len(tag) == 200


def test_canonical_tags_dedupe_and_sort() -> None:
    assert canonical_tags(["b:2", "A:1", "a:1", "!!"]) == ("a:1", "b:2")


@given(st.lists(st.text(max_size=20), max_size=8))
def test_canonical_is_a_fixed_point(tags: list[str]) -> None:
    once = canonical_tags(tags)
    assert canonical_tags(once) == once
    assert all("," not in t for t in once)  # the series codec relies on it


def test_series_id_depends_on_every_part() -> None:
    base = series_id("acme", "cpu", ("env:prod",))
    assert base == series_id("acme", "cpu", ("env:prod",))
    assert 0 <= base < 2**64
    assert base != series_id("other", "cpu", ("env:prod",))
    assert base != series_id("acme", "cpu2", ("env:prod",))
    assert base != series_id("acme", "cpu", ("env:prod", "host:a"))
    # No ambiguity from concatenation.
    assert series_id("ab", "c", ()) != series_id("a", "bc", ())
