"""The metric query language: a hand-written recursive-descent parser into a typed AST.

Grammar (whitespace is allowed between every two tokens; keywords in any case)::

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/") unary)*
    unary   := "-" unary | NUMBER | "(" expr ")" | func "(" expr ("," param)* ")" | query
    query   := aggr ":" metric "{" scope "}" [by] modifier* [by] modifier*
    by      := "by" "{" key ("," key)* "}"
    modifier:= ".rollup(" method ["," seconds] ")" | ".fill(" mode ["," seconds] ")"
             | ".as_count()" | ".as_rate()"
    aggr    := avg | sum | min | max | count | p50 | p75 | p90 | p95 | p99  (p..: distributions)
    scope   := "*" | item ("," item)*                  item := ["!"] tag
             | or                                      (AND/OR/NOT: never mixed with , !)
    or      := and ("OR" and)*        and := not ("AND" not)*
    not     := "NOT" not | "(" or ")" | key ["NOT"] "IN" "(" value ("," value)* ")" | tag
    tag     := key:value | bare value | pattern with "*" (web-*, *-canary, key:*)

Tags are normalised with the intake's rules (:func:`strata.naming.normalize_tag`), so
``env:Prod`` matches what was stored as ``env:prod``. Every error is a
:class:`QuerySyntaxError` naming the 0-based position of the offending text.

:func:`parse` returns the full AST (:mod:`query.ast`). :func:`parse_query` is the legacy
entry point of the issue-2 planner (:mod:`query.plan`): one query, exact tags only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from query import ast
from query.functions import SIGNATURES
from strata.naming import MAX_NAME_LENGTH, normalize_tag

_METRIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
# Characters that end a tag or key token.
_TOKEN_END = frozenset(",{}!()")
_BOOLEAN_WORDS = frozenset({"and", "or", "not", "in"})
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_PATTERN_BAD = re.compile(r"[^\w\-:./*]", re.UNICODE)
_CASE_PRESERVING_KEYS = ("host:", "device:")
MAX_FILTER_NODES = 1000
MAX_DEPTH = 32


class QuerySyntaxError(ValueError):
    """The query text is not valid; ``position`` is the 0-based character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position


def parse(text: str) -> ast.Expr:
    """Parse a full query expression or raise :class:`QuerySyntaxError`."""
    return _Parser(text).parse()


def parse_list(text: str) -> list[ast.Expr]:
    """Parse comma-separated expressions, as ``GET /api/v1/query`` accepts them
    (``avg:a{*} by {host},sum:b{*}``); positions in errors count from the start of
    ``text``. A comma inside ``{...}`` or ``(...)`` belongs to that scope or call."""
    return _Parser(text).parse_list()


# -- legacy single-query form (query.plan) --------------------------------------------------


class SpaceAggregator(StrEnum):
    AVG = "avg"
    SUM = "sum"
    MIN = "min"
    MAX = "max"


@dataclass(frozen=True, slots=True)
class TagFilter:
    tag: str  # normalised "key:value" or bare value
    negated: bool = False

    def __str__(self) -> str:
        return ("!" if self.negated else "") + self.tag


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """One query of the legacy subset. ``filters``/``group_by`` keep the order written."""

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


def simple_filters(f: ast.Filter) -> tuple[TagFilter, ...] | None:
    """The filter as exact tags and negated exact tags ANDed, or None if it is richer."""
    items = f.args if isinstance(f, ast.And) else () if isinstance(f, ast.AllSeries) else (f,)
    out: list[TagFilter] = []
    for item in items:
        if isinstance(item, ast.Tag):
            out.append(TagFilter(item.tag))
        elif isinstance(item, ast.Not) and isinstance(item.arg, ast.Tag):
            out.append(TagFilter(item.arg.tag, negated=True))
        else:
            return None
    return tuple(out)


def parse_query(text: str) -> MetricQuery:
    """Parse a query of the legacy subset (one avg/sum/min/max query, exact tags, no
    modifiers) or raise :class:`QuerySyntaxError`."""
    expr = parse(text)
    if not isinstance(expr, ast.MetricQuery):
        raise QuerySyntaxError("query needs the full evaluator (query.evaluate)", expr.pos)
    filters = simple_filters(expr.filter)
    if (
        filters is None
        or expr.aggregator is ast.Aggregator.COUNT
        or isinstance(expr.aggregator, ast.Percentile)
        or (expr.rollup, expr.count_mode, expr.fill) != (None, None, None)
    ):
        raise QuerySyntaxError("query needs the full evaluator (query.evaluate)", expr.pos)
    return MetricQuery(SpaceAggregator(expr.aggregator.value), expr.metric, filters, expr.group_by)


# -- the parser -----------------------------------------------------------------------------


def normalize_pattern(pattern: str) -> str:
    """Normalise a wildcard pattern like a tag (case, invalid characters), keeping ``*``."""
    lowered = pattern.lower()
    if lowered.startswith(_CASE_PRESERVING_KEYS):
        key, _, value = pattern.partition(":")
        pattern = key.lower() + ":" + value
    else:
        pattern = lowered
    return _PATTERN_BAD.sub("_", pattern)[:MAX_NAME_LENGTH]


def _dedup(args: list[ast.Filter]) -> tuple[ast.Filter, ...]:
    return tuple(dict.fromkeys(args))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.scope_style: tuple[str, int] | None = None  # ("comma"|"bool", position)
        self.nodes = 0
        self.depth = 0

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
        self.skip_ws()
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

    def peek_word(self) -> str:
        here = self.pos
        word, _ = self.word()
        self.pos = here
        return word.lower()

    def ident(self) -> tuple[str, int]:
        self.skip_ws()
        start = self.pos
        if self.pos < len(self.text) and self.text[self.pos] in _IDENT_START:
            while self.pos < len(self.text) and self.text[self.pos] in _METRIC_CHARS:
                self.pos += 1
        return self.text[start : self.pos], start

    def integer(self, what: str) -> int:
        self.skip_ws()
        start = self.pos
        sign = 1
        if self.peek() == "-":
            sign = -1
            self.pos += 1
        m = re.compile(r"\d+").match(self.text, self.pos)
        if m is None or self.text[m.end() : m.end() + 1] in (".", "e", "E"):
            raise self.fail(f"expected an integer {what} but found {self.describe_here()}", start)
        self.pos = m.end()
        return sign * int(m.group())

    # -- expressions ------------------------------------------------------------------

    def parse(self) -> ast.Expr:
        if not self.text.strip():
            raise self.fail("query is empty", 0)
        expr = self.expr()
        if self.peek() != "":
            raise self.fail(f"unexpected {self.describe_here()} after the end of the query")
        return expr

    def parse_list(self) -> list[ast.Expr]:
        if not self.text.strip():
            raise self.fail("query is empty", 0)
        exprs = [self.expr()]
        while self.peek() == ",":
            self.pos += 1
            if self.peek() == "":
                raise self.fail("expected a query after ',' but found end of query")
            exprs.append(self.expr())
        if self.peek() != "":
            raise self.fail(f"unexpected {self.describe_here()} after the end of the query")
        return exprs

    def expr(self) -> ast.Expr:
        left = self.term()
        while self.peek() in ("+", "-"):
            op, pos = self.text[self.pos], self.pos
            self.pos += 1
            left = ast.BinOp(op, left, self.term(), pos)
        return left

    def term(self) -> ast.Expr:
        left = self.unary()
        while self.peek() in ("*", "/"):
            op, pos = self.text[self.pos], self.pos
            self.pos += 1
            left = ast.BinOp(op, left, self.unary(), pos)
        return left

    def unary(self) -> ast.Expr:
        self.depth += 1
        if self.depth > 4 * MAX_DEPTH:
            raise self.fail("expression nested too deeply")
        try:
            return self._unary()
        finally:
            self.depth -= 1

    def _unary(self) -> ast.Expr:
        nxt = self.peek()
        start = self.pos
        if nxt == "-":
            self.pos += 1
            inner = self.unary()
            if isinstance(inner, ast.Number):
                return ast.Number(-inner.value, start)
            return ast.BinOp("*", ast.Number(-1.0, start), inner, start)
        if nxt == "(":
            self.pos += 1
            inner = self.expr()
            self.expect(")", "')' to close the parenthesis")
            return inner
        m = _NUMBER.match(self.text, self.pos)
        if m is not None:
            self.pos = m.end()
            return ast.Number(float(m.group()), start)
        name, start = self.ident()
        if not name:
            raise self.fail(
                f"expected a query, number or function but found {self.describe_here()}"
            )
        nxt = self.peek()
        if nxt == "(":
            return self.call(name, start)
        if nxt == ":":
            return self.query(name, start)
        raise self.fail(
            f"expected ':' after the aggregator or '(' after the function {name!r} "
            f"but found {self.describe_here()}"
        )

    def call(self, name: str, start: int) -> ast.Call:
        signature = SIGNATURES.get(name.lower())
        if signature is None:
            choices = ", ".join(sorted(SIGNATURES))
            raise self.fail(f"unknown function {name!r}; expected one of {choices}", start)
        name = name.lower()
        self.expect("(", f"'(' after {name}")
        arg = self.expr()
        params: list[int | float | str] = []
        for param in signature:
            if self.peek() != ",":
                if param.default is None:
                    raise self.fail(f"{name}() needs the parameter '{param.name}'")
                params.append(param.default)
                continue
            self.pos += 1
            params.append(self.param(name, param.name, param.choices))
        if self.peek() == ",":
            most = len(signature) + 1
            plural = "s" if most > 1 else ""
            raise self.fail(f"{name}() takes at most {most} argument{plural}")
        self.expect(")", f"',' or ')' in {name}()")
        return ast.Call(name, arg, tuple(params), start)

    def param(self, func: str, name: str, choices: tuple[str, ...]) -> int | str:
        self.skip_ws()
        start = self.pos
        if not choices:
            value = self.integer(f"for {func}() parameter '{name}'")
            if name in ("n", "seconds") and func != "timeshift" and value <= 0:
                raise self.fail(f"{func}() parameter '{name}' must be positive", start)
            return value
        quote = self.text[self.pos] if self.pos < len(self.text) else ""
        if quote in ("'", '"'):
            end = self.text.find(quote, self.pos + 1)
            if end < 0:
                raise self.fail("unterminated string", start)
            word = self.text[self.pos + 1 : end]
            self.pos = end + 1
        else:
            word, _ = self.ident()
        if word.lower() not in choices:
            raise self.fail(
                f"{func}() parameter '{name}' must be one of {', '.join(choices)}, not {word!r}",
                start,
            )
        return word.lower()

    # -- one metric query ---------------------------------------------------------------

    def query(self, aggregator: str, start: int) -> ast.MetricQuery:
        agg = self.aggregator(aggregator, start)
        self.expect(":", "':' after the aggregator")
        metric = self.metric()
        self.expect("{", "'{' to open the scope")
        self.scope_style = None
        self.nodes = 0
        filt = self.scope()
        self.expect("}", "',' or '}' in the scope")
        group_by: tuple[str, ...] | None = None
        rollup: ast.Rollup | None = None
        count_mode: ast.CountMode | None = None
        fill: ast.Fill | None = None
        while True:
            nxt = self.peek()
            if nxt == ".":
                mod_pos = self.pos
                self.pos += 1
                name, name_pos = self.ident()
                lname = name.lower()
                self.expect("(", f"'(' after .{name}")
                if lname == "rollup":
                    if rollup is not None:
                        raise self.fail("duplicate .rollup()", mod_pos)
                    rollup = self.rollup_args()
                elif lname == "fill":
                    if fill is not None:
                        raise self.fail("duplicate .fill()", mod_pos)
                    fill = self.fill_args()
                elif lname in ("as_count", "as_rate"):
                    if count_mode is not None:
                        raise self.fail(
                            "only one of .as_count() and .as_rate() may be used", mod_pos
                        )
                    count_mode = ast.CountMode(lname)
                else:
                    raise self.fail(
                        f"unknown modifier .{name}(); expected .rollup(), .fill(), "
                        ".as_count() or .as_rate()",
                        name_pos,
                    )
                self.expect(")", f"')' to close .{lname}(")
            elif self.peek_word() == "by" and group_by is None:
                self.word()
                self.expect("{", "'{' after 'by'")
                group_by = self.keys()
                self.expect("}", "',' or '}' in the group-by list")
            else:
                break
        return ast.MetricQuery(agg, metric, filt, group_by or (), rollup, count_mode, fill, start)

    def aggregator(self, name: str, start: int) -> ast.Aggregator | ast.Percentile:
        if name.lower() in ast.PERCENTILES:
            return ast.Percentile(name.lower())
        try:
            return ast.Aggregator(name.lower())
        except ValueError:
            choices = ", ".join([*ast.Aggregator, *ast.Percentile])
            raise self.fail(
                f"unknown aggregator {name!r}; expected one of {choices}", start
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

    def rollup_args(self) -> ast.Rollup:
        word, start = self.ident()
        try:
            method = ast.Aggregator(word.lower())
        except ValueError:
            choices = ", ".join(a.value for a in ast.Aggregator)
            found = repr(word) if word else self.describe_here()
            raise self.fail(
                f"unknown rollup method {found}; expected one of {choices}", start
            ) from None
        seconds = None
        if self.peek() == ",":
            self.pos += 1
            self.skip_ws()
            at = self.pos
            seconds = self.integer("rollup interval in seconds")
            if seconds <= 0:
                raise self.fail("rollup interval must be positive", at)
        return ast.Rollup(method, seconds)

    def fill_args(self) -> ast.Fill:
        word, start = self.ident()
        try:
            mode = ast.FillMode(word.lower())
        except ValueError:
            choices = ", ".join(m.value for m in ast.FillMode)
            found = repr(word) if word else self.describe_here()
            raise self.fail(
                f"unknown fill mode {found}; expected one of {choices}", start
            ) from None
        limit = None
        if self.peek() == ",":
            self.pos += 1
            self.skip_ws()
            at = self.pos
            limit = self.integer("fill limit in seconds")
            if limit <= 0:
                raise self.fail("fill limit must be positive", at)
        return ast.Fill(mode, limit)

    def keys(self) -> tuple[str, ...]:
        keys: list[str] = []
        while True:
            token, start = self.word()
            if not token:
                raise self.fail(f"expected a tag key but found {self.describe_here()}", start)
            key = normalize_tag(token)
            if key is None or ":" in key or "*" in token:
                raise self.fail(f"invalid group-by tag key {token!r}", start)
            if self.peek() not in (",", "}"):
                raise self.fail(
                    f"expected ',' or '}}' after the group-by key but found {self.describe_here()}"
                )
            if key not in keys:
                keys.append(key)
            if self.peek() != ",":
                break
            self.pos += 1
        return tuple(keys)

    # -- the scope (filters) -------------------------------------------------------------

    def style(self, kind: str, position: int) -> None:
        """Datadog refuses a scope mixing '!'/',' with AND/OR/NOT; so do we."""
        if self.scope_style is None:
            self.scope_style = (kind, position)
        elif self.scope_style[0] != kind:
            raise self.fail(
                "cannot mix '!' or ',' with AND/OR/NOT in one scope; use 'NOT' and 'AND' instead",
                position,
            )

    def count_node(self, position: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_FILTER_NODES:
            raise self.fail(f"scope has more than {MAX_FILTER_NODES} filters", position)

    def scope(self) -> ast.Filter:
        here = self.pos
        word, start = self.word()
        if word == "*" and self.peek() == "}":
            return ast.AllSeries(start)
        self.pos = here
        self.depth = 0
        return self.scope_or()

    def scope_or(self) -> ast.Filter:
        self.skip_ws()
        start = self.pos
        args = [self.scope_and()]
        while self.peek_word() == "or":
            _, at = self.word()
            self.style("bool", at)
            args.append(self.scope_and())
        return self.combine(ast.Or, args, start)

    def scope_and(self) -> ast.Filter:
        self.skip_ws()
        start = self.pos
        args = [self.scope_not()]
        while True:
            if self.peek() == ",":
                self.style("comma", self.pos)
                self.pos += 1
            elif self.peek_word() == "and":
                _, at = self.word()
                self.style("bool", at)
            else:
                break
            args.append(self.scope_not())
        return self.combine(ast.And, args, start)

    def combine(
        self, kind: type[ast.And] | type[ast.Or], args: list[ast.Filter], start: int
    ) -> ast.Filter:
        flat: list[ast.Filter] = []
        for a in args:
            flat.extend(a.args if isinstance(a, kind) else (a,))
        unique = _dedup(flat)
        return unique[0] if len(unique) == 1 else kind(unique, start)

    def scope_not(self) -> ast.Filter:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"scope nested deeper than {MAX_DEPTH}")
        try:
            return self._scope_not()
        finally:
            self.depth -= 1

    def _scope_not(self) -> ast.Filter:
        nxt = self.peek()
        start = self.pos
        self.count_node(start)
        if nxt == "!":
            self.style("comma", start)
            self.pos += 1
            if self.peek() in ("!", "("):
                raise self.fail(f"expected a tag filter but found {self.describe_here()}")
            return ast.Not(self.scope_term(), start)
        if nxt == "(":
            self.style("bool", start)
            self.pos += 1
            inner = self.scope_or()
            self.expect(")", "')' to close the parenthesis")
            return inner
        if self.peek_word() == "not":
            self.word()
            self.style("bool", start)
            return ast.Not(self.scope_not(), start)
        return self.scope_term()

    def scope_term(self) -> ast.Filter:
        token, start = self.word()
        if not token:
            raise self.fail(f"expected a tag filter but found {self.describe_here()}", start)
        if token.lower() in _BOOLEAN_WORDS:
            raise self.fail(f"expected a tag filter but found the operator {token!r}", start)
        after = self.peek_word()
        if after == "in" or (after == "not" and self._not_in_follows()):
            return self.in_list(token, start)
        if self.peek() == "(":
            raise self.fail("functions are not supported in a tag filter")
        if "*" in token:
            if token == "*":
                raise self.fail("'*' must be the whole scope; use k:* for any value", start)
            return ast.Wildcard(normalize_pattern(token), start)
        tag = normalize_tag(token)
        if tag is None:
            raise self.fail(f"tag filter {token!r} has no valid characters", start)
        return ast.Tag(tag, start)

    def _not_in_follows(self) -> bool:
        here = self.pos
        self.word()
        nxt = self.peek_word()
        self.pos = here
        return nxt == "in"

    def in_list(self, key_token: str, start: int) -> ast.In:
        key = normalize_tag(key_token)
        if key is None or ":" in key or "*" in key_token:
            raise self.fail(f"IN needs a tag key, not {key_token!r}", start)
        negated = False
        word, at = self.word()
        self.style("bool", at)
        if word.lower() == "not":
            negated = True
            self.word()
        self.expect("(", "'(' after IN")
        values: list[str] = []
        while True:
            token, vpos = self.word()
            self.count_node(vpos)
            if not token:
                raise self.fail(f"expected a tag value but found {self.describe_here()}", vpos)
            tag = normalize_tag(f"{key}:{token}")
            if tag is None or "*" in token or tag == f"{key}:":
                raise self.fail(f"invalid value {token!r} in IN list", vpos)
            value = tag.partition(":")[2]
            if value not in values:
                values.append(value)
            if self.peek() != ",":
                break
            self.pos += 1
        self.expect(")", "',' or ')' in the IN list")
        return ast.In(key, tuple(values), negated, start)
