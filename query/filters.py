"""Scope AST -> what the inverted index's ``POST /v1/resolve`` takes (docs/architecture.md).

A scope of exact tags and negated exact tags ANDed keeps the ``include``/``exclude`` lists
(every inverted index understands them); anything richer (OR, NOT of a group, IN,
wildcards) becomes the contract's ``filter`` tree::

    {"op": "all"} | {"op": "tag", "tag": "k:v"} | {"op": "wildcard", "pattern": "k:web-*"}
    {"op": "and"|"or", "args": [...]} | {"op": "not", "arg": {...}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from query import ast
from query.language import simple_filters

FilterTree = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Resolution:
    """Either include/exclude lists (``tree`` None) or a filter tree."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    tree: FilterTree | None = None


def to_tree(f: ast.Filter) -> FilterTree:
    """The contract's filter tree for a scope."""
    if isinstance(f, ast.AllSeries):
        return {"op": "all"}
    if isinstance(f, ast.Tag):
        return {"op": "tag", "tag": f.tag}
    if isinstance(f, ast.Wildcard):
        return {"op": "wildcard", "pattern": f.pattern}
    if isinstance(f, ast.In):
        anyof: FilterTree = {
            "op": "or",
            "args": [{"op": "tag", "tag": f"{f.key}:{v}"} for v in f.values],
        }
        if len(f.values) == 1:
            anyof = anyof["args"][0]
        return {"op": "not", "arg": anyof} if f.negated else anyof
    if isinstance(f, ast.Not):
        return {"op": "not", "arg": to_tree(f.arg)}
    op = "and" if isinstance(f, ast.And) else "or"
    return {"op": op, "args": [to_tree(a) for a in f.args]}


# The contract's limits on a filter tree (the inverted index answers 400 beyond them).
MAX_TREE_DEPTH = 32
MAX_TREE_NODES = 1000


class ScopeTooComplex(ValueError):
    """The scope's filter tree exceeds the contract's depth or node limit."""


def tree_size(tree: FilterTree) -> tuple[int, int]:
    """(depth, nodes) of a filter tree; a single node has depth 1."""
    children = tree.get("args", [tree["arg"]] if "arg" in tree else [])
    sizes = [tree_size(c) for c in children]
    return 1 + max((d for d, _ in sizes), default=0), 1 + sum(n for _, n in sizes)


def compile_filter(f: ast.Filter) -> Resolution:
    """Lists for a simple scope, else the filter tree. Raises :class:`ScopeTooComplex`
    when the tree exceeds :data:`MAX_TREE_DEPTH` or :data:`MAX_TREE_NODES`."""
    simple = simple_filters(f)
    if simple is not None:
        return Resolution(
            tuple(t.tag for t in simple if not t.negated),
            tuple(t.tag for t in simple if t.negated),
        )
    tree = to_tree(f)
    depth, nodes = tree_size(tree)
    if depth > MAX_TREE_DEPTH or nodes > MAX_TREE_NODES:
        raise ScopeTooComplex(
            f"scope too complex: its filter has depth {depth} and {nodes} nodes, at most "
            f"{MAX_TREE_DEPTH} and {MAX_TREE_NODES} are allowed"
        )
    return Resolution(tree=tree)
