"""The bounded series-identity cache (intake.identity)."""

from __future__ import annotations

import pytest

from intake.identity import SeriesIdentities, SeriesIdentity, resolve
from strata.naming import canonical_tags
from strata.series_id import series_id


def test_resolve_normalises_and_hashes() -> None:
    ident = resolve("acme", "cpu user", ["ENV:Prod", "host:Web-1", "env:prod"])
    tags = canonical_tags(["env:prod", "host:Web-1"])
    assert ident == SeriesIdentity("cpu_user", tags, series_id("acme", "cpu_user", tags), None)


def test_invalid_metric_name_is_remembered_with_its_reason() -> None:
    cache = SeriesIdentities(10)
    ident = cache.add(("acme", "9x", ()), "acme", "9x", ())
    assert ident.invalid == "metric name must start with a letter: '9x'"
    assert cache.get(("acme", "9x", ())) is ident


def test_hits_return_the_stored_identity() -> None:
    cache = SeriesIdentities(10)
    key = ("acme", "m", ("a:b",))
    assert cache.get(key) is None
    ident = cache.add(key, "acme", "m", ("a:b",))
    assert cache.get(("acme", "m", ("a:b",))) is ident


def test_size_is_bounded_and_the_oldest_go_first() -> None:
    cache = SeriesIdentities(16)
    for i in range(100):
        cache.add(("acme", f"m{i}", ()), "acme", f"m{i}", ())
        assert len(cache) <= 16
    assert cache.get(("acme", "m99", ())) is not None
    assert cache.get(("acme", "m0", ())) is None


def test_capacity_one() -> None:
    cache = SeriesIdentities(1)
    cache.add("a", "acme", "a", ())
    cache.add("b", "acme", "b", ())
    assert len(cache) == 1 and cache.get("b") is not None


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SeriesIdentities(0)
