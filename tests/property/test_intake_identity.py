"""Series identities computed through the cache's tag memo (intake.identity) equal the ones
computed from scratch with strata.naming, whatever tags repeat, and across memo resets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from intake.identity import SeriesIdentities, resolve
from strata.naming import canonical_tags, normalize_metric_name
from strata.series_id import series_id

# A small pool (tags repeat across series, in other cases and spellings) plus any text.
pool = st.sampled_from(
    ["env:prod", "ENV:Prod", "host:Web-1", "HOST:Web-1", "a b", "!!", "", "région:é", "x" * 250]
)
tags = st.lists(st.one_of(pool, st.text(max_size=12)), max_size=6)


@settings(max_examples=300)
@given(
    st.integers(1, 5),
    st.lists(st.tuples(st.sampled_from(["cpu.user", "9x", "m"]), tags), max_size=12),
)
def test_memoised_normalisation_equals_the_reference(
    capacity: int, series: list[tuple[str, list[str]]]
) -> None:
    cache = SeriesIdentities(capacity)  # a tiny memo: it is reset again and again
    for metric, raw in series:
        got = cache.resolve("acme", metric, raw)
        assert got == resolve("acme", metric, raw)
        if got.invalid is None:
            canonical = canonical_tags(raw)
            assert got.tags == canonical
            name = normalize_metric_name(metric)
            assert got.sid == series_id("acme", name, canonical)
        key = ("acme", metric, tuple(raw))
        assert cache.add(key, "acme", metric, raw) == got
        assert cache.get(key) == got
