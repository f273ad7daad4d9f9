"""The golden table of tests/golden/queries.json: each query string with its canonical form
and AST summary, or its error message and position.

Regenerate after an intended change with ``STRATA_REGEN_GOLDEN=1 pytest <this file>`` and
review the diff: the table is the language's specification by example.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from query import ast
from query.language import QuerySyntaxError, parse
from query.printer import to_text

GOLDEN = Path(__file__).parents[1] / "golden" / "queries.json"


def summary_filter(f: ast.Filter) -> str:
    """A compact, printer-independent rendering of a scope AST."""
    if isinstance(f, ast.AllSeries):
        return "all"
    if isinstance(f, ast.Tag):
        return f"tag({f.tag})"
    if isinstance(f, ast.Wildcard):
        return f"wild({f.pattern})"
    if isinstance(f, ast.In):
        return f"{'notin' if f.negated else 'in'}({f.key};{'|'.join(f.values)})"
    if isinstance(f, ast.Not):
        return f"not({summary_filter(f.arg)})"
    name = "and" if isinstance(f, ast.And) else "or"
    return f"{name}({' '.join(summary_filter(a) for a in f.args)})"


def summary(e: ast.Expr) -> str:
    """A compact, printer-independent rendering of an expression AST."""
    if isinstance(e, ast.Number):
        return f"num({e.value!r})"
    if isinstance(e, ast.BinOp):
        return f"({e.op} {summary(e.left)} {summary(e.right)})"
    if isinstance(e, ast.Call):
        params = "".join(f" {p!r}" for p in e.params)
        return f"{e.name}({summary(e.arg)}{params})"
    parts = [f"q({e.aggregator.value} {e.metric} {summary_filter(e.filter)}"]
    if e.group_by:
        parts.append(f" by[{','.join(e.group_by)}]")
    if e.rollup is not None:
        parts.append(f" rollup[{e.rollup.method.value},{e.rollup.seconds}]")
    if e.count_mode is not None:
        parts.append(f" {e.count_mode.value}")
    if e.fill is not None:
        parts.append(f" fill[{e.fill.mode.value},{e.fill.limit}]")
    return "".join(parts) + ")"


def outcome(query: str) -> dict[str, Any]:
    try:
        expr = parse(query)
    except QuerySyntaxError as exc:
        return {"query": query, "error": exc.message, "position": exc.position}
    return {"query": query, "canonical": to_text(expr), "ast": summary(expr)}


def load() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(GOLDEN.read_text())
    return rows


def test_table_size_and_mix() -> None:
    rows = load()
    assert len(rows) >= 60
    assert sum("error" in r for r in rows) >= 25
    assert sum("canonical" in r for r in rows) >= 35
    assert len({r["query"] for r in rows}) == len(rows)


@pytest.mark.skipif(not os.environ.get("STRATA_REGEN_GOLDEN"), reason="regeneration only")
def test_regenerate() -> None:
    rows = [outcome(r["query"]) for r in load()]
    GOLDEN.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")


@pytest.mark.parametrize("row", load(), ids=lambda r: repr(r["query"])[:60])
def test_golden(row: dict[str, Any]) -> None:
    assert outcome(row["query"]) == row


@pytest.mark.parametrize(
    "row", [r for r in load() if "canonical" in r], ids=lambda r: repr(r["query"])[:60]
)
def test_canonical_form_is_a_fixed_point(row: dict[str, Any]) -> None:
    again = parse(row["canonical"])
    assert to_text(again) == row["canonical"]
    assert summary(again) == row["ast"]
