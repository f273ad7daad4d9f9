"""Filter trees (pure): parsing with path-naming errors, wildcards, evaluation against a
set model."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from stores.inverted.filters import (
    MAX_DEPTH,
    All,
    And,
    Filter,
    FilterError,
    Not,
    Or,
    Tag,
    Wildcard,
    evaluate,
    from_lists,
    parse_filter,
)

SERIES: dict[int, set[str]] = {
    0: {"env:prod", "host:web-1", "role"},
    1: {"env:prod", "host:web-2"},
    2: {"env:dev", "host:db-1", "role"},
    3: {"env:dev", "host:web-canary"},
    4: {"host:x-web-3"},
}
EVERYTHING = BitMap(SERIES)


def postings(tag: str) -> BitMap:
    # Include a series outside "everything" (inactive in the range): never selected.
    return BitMap([s for s, tags in SERIES.items() if tag in tags] + [99])


def expand(w: Wildcard) -> list[BitMap]:
    tags = {t for ts in SERIES.values() for t in ts}
    m = w.matcher()
    return [postings(t) for t in sorted(tags) if m(t)]


def run(raw: dict[str, Any]) -> list[int]:
    return list(evaluate(parse_filter(raw), EVERYTHING, postings, expand))


def tag(t: str) -> dict[str, Any]:
    return {"op": "tag", "tag": t}


def test_leaf_ops() -> None:
    assert run({"op": "all"}) == [0, 1, 2, 3, 4]
    assert run(tag("env:prod")) == [0, 1]
    assert run(tag("role")) == [0, 2]  # a bare tag
    assert run(tag("env:nope")) == []


@pytest.mark.parametrize(
    ("pattern", "want"),
    [
        ("host:web-*", [0, 1, 3]),  # prefix
        ("host:*-canary", [3]),  # suffix
        ("host:*web*", [0, 1, 3, 4]),  # inner
        ("host:w*-*", [0, 1, 3]),
        ("*", [0, 1, 2, 3, 4]),
        ("env:prod", [0, 1]),  # no star: exact
        ("nothing*", []),
    ],
)
def test_wildcards_match_whole_canonical_tags(pattern: str, want: list[int]) -> None:
    assert run({"op": "wildcard", "pattern": pattern}) == want


def test_wildcard_prefix_is_the_literal_head() -> None:
    assert Wildcard("host:web-*").prefix == "host:web-"
    assert Wildcard("*-canary").prefix == ""
    assert Wildcard("a.b[c]*").matcher()("a.b[c]d")  # regex characters are literal
    assert not Wildcard("a.b*").matcher()("axb")


def test_boolean_ops() -> None:
    assert run({"op": "and", "args": [tag("env:prod"), tag("role")]}) == [0]
    assert run({"op": "or", "args": [tag("env:prod"), tag("role")]}) == [0, 1, 2]
    # not is relative to every series active in the range (4 has no env tag at all)
    assert run({"op": "not", "arg": tag("env:prod")}) == [2, 3, 4]
    nested = {
        "op": "and",
        "args": [
            {"op": "or", "args": [tag("env:dev"), {"op": "wildcard", "pattern": "host:x-*"}]},
            {"op": "not", "arg": tag("role")},
        ],
    }
    assert run(nested) == [3, 4]


def test_inputs_are_not_mutated() -> None:
    before = EVERYTHING.copy()
    run({"op": "and", "args": [{"op": "all"}, {"op": "not", "arg": tag("env:prod")}]})
    assert before == EVERYTHING


def test_lists_equal_their_tree() -> None:
    assert from_lists(["a"], ["b"]) == And((All(), Tag("a"), Not(Tag("b"))))
    got = evaluate(from_lists(["env:prod"], ["role"]), EVERYTHING, postings, expand)
    assert list(got) == [1]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"op": "xor"}, "filter.op: unknown op 'xor'"),
        ([], "filter: expected an object"),
        ({"op": "and", "args": [tag("a"), {"op": 3}]}, "filter.args[1].op: unknown op 3"),
        ({"op": "and", "args": []}, "filter.args: expected a non-empty list"),
        ({"op": "not"}, "filter.arg: missing"),
        ({"op": "tag", "tag": ""}, "filter.tag: expected a non-empty string"),
        ({"op": "tag", "tag": "a\x00b"}, "filter.tag: must not contain NUL"),
        ({"op": "tag", "tag": "a", "args": []}, "filter.args: unexpected field"),
        ({"op": "not", "arg": {"op": "or", "args": [{"pattern": "x"}]}}, "filter.arg.args[0].op"),
    ],
)
def test_malformed_trees_name_the_path(raw: Any, message: str) -> None:
    with pytest.raises(FilterError) as err:
        parse_filter(raw)
    assert str(err.value).startswith(message), str(err.value)


def test_depth_and_size_limits() -> None:
    deep: dict[str, Any] = {"op": "all"}
    for _ in range(MAX_DEPTH - 1):
        deep = {"op": "not", "arg": deep}
    assert isinstance(parse_filter(deep), Not)
    with pytest.raises(FilterError, match="deeper than 32"):
        parse_filter({"op": "not", "arg": deep})
    with pytest.raises(FilterError, match="more than 1000 nodes"):
        parse_filter({"op": "or", "args": [tag("a")] * 1000})


TAGS = ["env:prod", "env:dev", "role", "host:web-1", "host:db-1"]


def trees() -> st.SearchStrategy[Filter]:
    leaves = st.one_of(
        st.just(All()),
        st.sampled_from(TAGS).map(Tag),
        st.sampled_from(["host:*", "*-1", "env:*o*"]).map(Wildcard),
    )
    return st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.lists(kids, min_size=1, max_size=3).map(lambda a: And(tuple(a))),
            st.lists(kids, min_size=1, max_size=3).map(lambda a: Or(tuple(a))),
            kids.map(Not),
        ),
        max_leaves=12,
    )


def model(tree: Filter) -> set[int]:
    every = set(SERIES)
    if isinstance(tree, All):
        return every
    if isinstance(tree, Tag):
        return {s for s in every if tree.tag in SERIES[s]}
    if isinstance(tree, Wildcard):
        m = tree.matcher()
        return {s for s in every if any(m(t) for t in SERIES[s])}
    if isinstance(tree, Not):
        return every - model(tree.arg)
    if isinstance(tree, And):
        return set.intersection(*(model(a) for a in tree.args))
    return set.union(*(model(a) for a in tree.args))


@settings(max_examples=300, deadline=None)
@given(trees())
def test_evaluation_equals_a_set_model(tree: Filter) -> None:
    assert set(evaluate(tree, EVERYTHING, postings, expand)) == model(tree)
