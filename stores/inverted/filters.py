"""The resolve API's ``filter`` tree (pure): parsing with path-naming errors, wildcard
matching, and evaluation over postings bitmaps (no storage, no clock).

Grammar (docs/stores.md, "Filter trees")::

    filter := {"op": "all"} | {"op": "tag", "tag": "k:v"} | {"op": "wildcard", "pattern": "k:web-*"}
            | {"op": "and", "args": [filter, ...]} | {"op": "or", "args": [filter, ...]}
            | {"op": "not", "arg": filter}

``not`` is relative to "all" (series of the metric active in the range); a wildcard
matches canonical tags, never "all".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Union

from pyroaring import BitMap

MAX_DEPTH = 32
MAX_NODES = 1000
MAX_TAG_LENGTH = 400  # canonical tags are at most 200 characters; leave room for ``*``


class FilterError(ValueError):
    """A malformed filter tree; the message starts with the path of the offending node
    (``filter.args[1].op``)."""


@dataclass(frozen=True, slots=True)
class All:
    pass


@dataclass(frozen=True, slots=True)
class Tag:
    tag: str


@dataclass(frozen=True, slots=True)
class Wildcard:
    pattern: str

    @property
    def prefix(self) -> str:
        """The literal text before the first ``*``: the tag-key range a scan must visit."""
        return self.pattern.split("*", 1)[0]

    def matcher(self) -> Callable[[str], bool]:
        """A predicate matching whole canonical tags (``*`` = any run, possibly empty)."""
        regex = re.compile(".*".join(re.escape(p) for p in self.pattern.split("*")), re.DOTALL)
        return lambda tag: regex.fullmatch(tag) is not None


@dataclass(frozen=True, slots=True)
class And:
    args: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    args: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    arg: Filter


Filter = Union[All, Tag, Wildcard, And, Or, Not]  # noqa: UP007 (a runtime alias)

_OPS = ("all", "tag", "wildcard", "and", "or", "not")


def parse_filter(raw: object, path: str = "filter") -> Filter:
    """The typed tree of a decoded JSON ``filter``; raises :class:`FilterError` naming the
    path of the first problem (unknown op, missing/extra field, wrong type, NUL in a tag,
    depth over :data:`MAX_DEPTH`, more than :data:`MAX_NODES` nodes)."""
    count = [0]
    return _parse(raw, path, 1, count)


def _parse(raw: object, path: str, depth: int, count: list[int]) -> Filter:
    if depth > MAX_DEPTH:
        raise FilterError(f"{path}: filter nested deeper than {MAX_DEPTH} levels")
    count[0] += 1
    if count[0] > MAX_NODES:
        raise FilterError(f"{path}: filter has more than {MAX_NODES} nodes")
    if not isinstance(raw, dict):
        raise FilterError(f"{path}: expected an object with an 'op', got {type(raw).__name__}")
    op = raw.get("op")
    if op not in _OPS:
        raise FilterError(f"{path}.op: unknown op {op!r} (expected one of {', '.join(_OPS)})")
    fields = {"all": (), "tag": ("tag",), "wildcard": ("pattern",), "not": ("arg",)}.get(
        str(op), ("args",)
    )
    extra = sorted(set(raw) - {"op", *fields})
    if extra:
        raise FilterError(f"{path}.{extra[0]}: unexpected field for op {op!r}")
    for name in fields:
        if name not in raw:
            raise FilterError(f"{path}.{name}: missing (required by op {op!r})")
    if op == "all":
        return All()
    if op in ("tag", "wildcard"):
        name = fields[0]
        text = _text(raw[name], f"{path}.{name}")
        return Tag(text) if op == "tag" else Wildcard(text)
    if op == "not":
        return Not(_parse(raw["arg"], f"{path}.arg", depth + 1, count))
    args = raw["args"]
    if not isinstance(args, list) or not args:
        raise FilterError(f"{path}.args: expected a non-empty list of filters")
    parsed = tuple(_parse(a, f"{path}.args[{i}]", depth + 1, count) for i, a in enumerate(args))
    return And(parsed) if op == "and" else Or(parsed)


def _text(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise FilterError(f"{path}: expected a non-empty string")
    if len(value) > MAX_TAG_LENGTH:
        raise FilterError(f"{path}: longer than {MAX_TAG_LENGTH} characters")
    if "\x00" in value:
        raise FilterError(f"{path}: must not contain NUL")
    return value


Postings = Callable[[str], BitMap]
Expand = Callable[[Wildcard], Iterable[BitMap]]


def evaluate(tree: Filter, everything: BitMap, postings: Postings, expand: Expand) -> BitMap:
    """Members of ``everything`` selected by ``tree``. ``postings(tag)`` is the tag's set
    over the query's buckets; ``expand(w)`` yields the sets of every tag ``w`` matches.
    Inputs are never mutated."""
    out = _eval(tree, everything, postings, expand)
    return out & everything


def _eval(tree: Filter, everything: BitMap, postings: Postings, expand: Expand) -> BitMap:
    if isinstance(tree, All):
        return everything
    if isinstance(tree, Tag):
        return postings(tree.tag)
    if isinstance(tree, Wildcard):
        return BitMap.union(BitMap(), *expand(tree))
    if isinstance(tree, Not):
        return everything - _eval(tree.arg, everything, postings, expand)
    if isinstance(tree, Or):
        return BitMap.union(*(_eval(a, everything, postings, expand) for a in tree.args))
    # And: plain sets first (cheapest), stop as soon as nothing is left.
    ordered = sorted(tree.args, key=lambda a: 0 if isinstance(a, Tag) else 1)
    acc: BitMap | None = None
    for arg in ordered:
        part = _eval(arg, everything, postings, expand)
        acc = part.copy() if acc is None else acc & part
        if not acc:
            break
    assert acc is not None  # parse_filter rejects empty argument lists
    return acc


def from_lists(include: Iterable[str], exclude: Iterable[str]) -> Filter:
    """The tree equivalent to the legacy ``include``/``exclude`` lists."""
    parts: list[Filter] = [All()]
    parts += [Tag(t) for t in include]
    parts += [Not(Tag(t)) for t in exclude]
    return And(tuple(parts))
