"""The typed AST of the metric query language (docs/query.md).

Every node carries ``pos``, the 0-based offset in the query text where it starts; positions
are excluded from equality so a printed-and-reparsed AST compares equal to the original.
Filter nodes are normalised by the parser: an AND/OR of one argument is that argument, and
comma lists become :class:`And`, so one meaning has one tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Aggregator(StrEnum):
    """Space aggregators, also the methods of ``.rollup()`` and ``moving_rollup``."""

    AVG = "avg"
    SUM = "sum"
    MIN = "min"
    MAX = "max"
    COUNT = "count"


class Percentile(StrEnum):
    """Space aggregators of distribution metrics: the quantile of the sketch that merges a
    group's sketches of a bucket (docs/query.md, "Distributions")."""

    P50 = "p50"
    P75 = "p75"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"

    @property
    def quantile(self) -> float:
        return int(self.value[1:]) / 100


PERCENTILES = frozenset(p.value for p in Percentile)


class FillMode(StrEnum):
    NULL = "null"
    ZERO = "zero"
    LINEAR = "linear"
    LAST = "last"


class CountMode(StrEnum):
    AS_COUNT = "as_count"
    AS_RATE = "as_rate"


# -- filters -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllSeries:
    """The ``*`` scope: every series of the metric."""

    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Tag:
    """An exact canonical tag, ``key:value`` or a bare value."""

    tag: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Wildcard:
    """A tag pattern where ``*`` matches any run of characters (``web-*``, ``k:*``)."""

    pattern: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class In:
    """``key IN (v1, v2)`` (``negated``: ``key NOT IN (...)``)."""

    key: str
    values: tuple[str, ...]
    negated: bool = False
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    arg: Filter
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    args: tuple[Filter, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Or:
    args: tuple[Filter, ...]
    pos: int = field(default=0, compare=False)


Filter = AllSeries | Tag | Wildcard | In | Not | And | Or


# -- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rollup:
    """``.rollup(method[, seconds])``; ``method`` None is never produced by the parser but
    stands for "the type-aware default" in :class:`MetricQuery` when no rollup is given."""

    method: Aggregator
    seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    mode: FillMode
    limit: int | None = None  # seconds; None = the default (300)


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """``aggr:metric{scope} by {keys}`` with its modifiers."""

    aggregator: Aggregator | Percentile  # percentiles: distribution metrics only
    metric: str
    filter: Filter
    group_by: tuple[str, ...] = ()
    rollup: Rollup | None = None
    count_mode: CountMode | None = None
    fill: Fill | None = None
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Number:
    value: float
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # one of + - * /
    left: Expr
    right: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    """A function call; ``args[0]`` is the series expression, the rest are parameters
    (numbers as ``int``/``float``, names such as ``'mean'`` as ``str``)."""

    name: str
    arg: Expr
    params: tuple[int | float | str, ...] = ()
    pos: int = field(default=0, compare=False)


Expr = MetricQuery | Number | BinOp | Call


def metric_queries(expr: Expr) -> list[MetricQuery]:
    """The metric queries of ``expr``, left to right."""
    if isinstance(expr, MetricQuery):
        return [expr]
    if isinstance(expr, BinOp):
        return metric_queries(expr.left) + metric_queries(expr.right)
    if isinstance(expr, Call):
        return metric_queries(expr.arg)
    return []
