"""The metric query language: a hand-written recursive-descent parser into a typed AST.

Supported grammar (whitespace is allowed between every two tokens)::

    query   := aggr ":" metric "{" scope "}" [ "by" "{" key ("," key)* "}" ]
    aggr    := "avg" | "sum" | "min" | "max"
    scope   := "*" | filter ("," filter)*
    filter  := ["!"] tag            -- "key:value" or a bare value, exact match

Tags in filters and group-by keys are normalised with the intake's rules
(:func:`strata.naming.normalize_tag`), so ``env:Prod`` matches what was stored as
``env:prod``. Everything else (wildcards, boolean operators, functions, arithmetic) is
rejected with a :class:`QuerySyntaxError` naming the position, never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from strata.naming import MAX_NAME_LENGTH, normalize_tag

_METRIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
# Characters that end a tag or key token.
_TOKEN_END = frozenset(",{}!()")
_BOOLEAN_WORDS = frozenset({"and", "or", "not", "in"})


class SpaceAggregator(StrEnum):
    AVG = "avg"
    SUM = "sum"
    MIN = "min"
    MAX = "max"


class QuerySyntaxError(ValueError):
    """The query text is not valid; ``position`` is the 0-based character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


@dataclass(frozen=True, slots=True)
class TagFilter:
    tag: str  # normalised "key:value" or bare value
    negated: bool = False

    def __str__(self) -> str:
        return ("!" if self.negated else "") + self.tag


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """One parsed query. ``filters`` and ``group_by`` keep the order written, deduplicated."""

    aggregator: SpaceAggregator
    metric: str
    filters: tuple[TagFilter, ...]
    group_by: tuple[str, ...]

    @property
    def include(self) -> tuple[str, ...]:
        return tuple(f.tag for f in self.filters if not f.negated)

    @property
    def exclude(self) -> tuple[str, ...]:
        return tuple(f.tag for f in self.filters if f.negated)

    def scope(self, tag_set: tuple[str, ...] = ()) -> str:
        """Datadog's ``scope``: the filters plus a group's tags, or ``*`` when both are empty."""
        parts = [str(f) for f in self.filters] + list(tag_set)
        return ",".join(parts) if parts else "*"

    def expression(self, tag_set: tuple[str, ...] = ()) -> str:
        return f"{self.aggregator}:{self.metric}{{{self.scope(tag_set)}}}"

    def __str__(self) -> str:
        text = self.expression()
        if self.group_by:
            text += " by {" + ",".join(self.group_by) + "}"
        return text


def parse_query(text: str) -> MetricQuery:
    """Parse ``text`` or raise :class:`QuerySyntaxError`."""
    return _Parser(text).query()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # -- lexical helpers -------------------------------------------------------------

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def fail(self, message: str, position: int | None = None) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.pos if position is None else position)

    def describe_here(self) -> str:
        if self.pos >= len(self.text):
            return "end of query"
        return repr(self.text[self.pos : self.pos + 20])

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {what} but found {self.describe_here()}")
        self.pos += 1

    def word(self) -> tuple[str, int]:
        """A run of characters up to whitespace or punctuation; returns (word, start)."""
        self.skip_ws()
        start = self.pos
        while (
            self.pos < len(self.text)
            and not self.text[self.pos].isspace()
            and self.text[self.pos] not in _TOKEN_END
        ):
            self.pos += 1
        return self.text[start : self.pos], start

    # -- grammar ---------------------------------------------------------------------

    def query(self) -> MetricQuery:
        if not self.text.strip():
            raise self.fail("query is empty", 0)
        aggregator = self.aggregator()
        self.expect(":", "':' after the aggregator")
        metric = self.metric()
        self.expect("{", "'{' to open the scope")
        filters = self.scope()
        self.expect("}", "',' or '}' in the scope")
        group_by: tuple[str, ...] = ()
        if self.peek() != "":
            by, start = self.word()
            if by.lower() != "by":
                raise self.fail(f"unexpected {self.text[start : start + 20]!r}", start)
            self.expect("{", "'{' after 'by'")
            group_by = self.keys()
            self.expect("}", "',' or '}' in the group-by list")
        if self.peek() != "":
            raise self.fail(f"unexpected {self.describe_here()} after the end of the query")
        return MetricQuery(aggregator, metric, filters, group_by)

    def aggregator(self) -> SpaceAggregator:
        self.skip_ws()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isalpha():
            self.pos += 1
        name = self.text[start : self.pos]
        try:
            return SpaceAggregator(name.lower())
        except ValueError:
            choices = ", ".join(a.value for a in SpaceAggregator)
            found = repr(name) if name else self.describe_here()
            raise self.fail(
                f"unknown aggregator {found}; expected one of {choices}", start
            ) from None

    def metric(self) -> str:
        self.skip_ws()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _METRIC_CHARS:
            self.pos += 1
        name = self.text[start : self.pos]
        if not name:
            raise self.fail(f"expected a metric name but found {self.describe_here()}", start)
        if not (name[0].isascii() and name[0].isalpha()):
            raise self.fail(f"metric name must start with a letter: {name[:50]!r}", start)
        if len(name) > MAX_NAME_LENGTH:
            raise self.fail(f"metric name longer than {MAX_NAME_LENGTH} characters", start)
        return name

    def scope(self) -> tuple[TagFilter, ...]:
        if self.peek() == "*":
            self.pos += 1
            return ()
        filters: list[TagFilter] = []
        while True:
            f = self.filter()
            if f not in filters:
                filters.append(f)
            if self.peek() != ",":
                break
            self.pos += 1
        return tuple(filters)

    def filter(self) -> TagFilter:
        negated = self.peek() == "!"
        if negated:
            self.pos += 1
        token, start = self.word()
        if not token:
            raise self.fail(f"expected a tag filter but found {self.describe_here()}", start)
        if token.lower() in _BOOLEAN_WORDS:
            raise self.fail(f"boolean operator {token!r} is not supported; use ','", start)
        if "*" in token:
            raise self.fail(f"wildcard tag filters are not supported: {token!r}", start)
        tag = normalize_tag(token)
        if tag is None:
            raise self.fail(f"tag filter {token!r} has no valid characters", start)
        self.check_token_end("tag filter")
        return TagFilter(tag, negated)

    def keys(self) -> tuple[str, ...]:
        keys: list[str] = []
        while True:
            token, start = self.word()
            if not token:
                raise self.fail(f"expected a tag key but found {self.describe_here()}", start)
            key = normalize_tag(token)
            if key is None or ":" in key:
                raise self.fail(f"invalid group-by tag key {token!r}", start)
            self.check_token_end("group-by key")
            if key not in keys:
                keys.append(key)
            if self.peek() != ",":
                break
            self.pos += 1
        return tuple(keys)

    def check_token_end(self, what: str) -> None:
        """After a token only ',' or '}' may follow; name the common mistakes precisely."""
        nxt = self.peek()
        if nxt in ("", ",", "}"):
            return
        if nxt == "(":
            raise self.fail(f"functions are not supported in a {what}")
        word, start = self.word()
        if word.lower() in _BOOLEAN_WORDS:
            raise self.fail(f"boolean operator {word!r} is not supported; use ','", start)
        self.pos = start
        raise self.fail(f"expected ',' or '}}' after the {what} but found {self.describe_here()}")
