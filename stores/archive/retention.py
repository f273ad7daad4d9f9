"""Per-org retention and the report of a compaction pass, shared by the points and the
sketch compaction (:mod:`stores.archive.compaction`, :mod:`stores.archive.sketch_compaction`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True, slots=True)
class Retention:
    """Seconds of data kept per org; ``default`` for orgs without an override."""

    default: int
    overrides: dict[str, int] = field(default_factory=dict)

    def cutoff(self, org: str, now: int) -> int:
        """Rows of ``org`` with ``ts < cutoff`` are expired."""
        return now - self.overrides.get(org, self.default)

    def shortest(self) -> int:
        return min([self.default, *self.overrides.values()])


@dataclass
class CompactionReport:
    """Counts of one pass over points and sketch objects together."""

    partitions: int = 0
    inputs: int = 0
    outputs: int = 0
    expired_rows: int = 0
    skipped: int = 0  # partitions given up this round (raced another compaction, conflicts)


def kept(table: pa.Table, retention: Retention, now: int) -> pa.ChunkedArray:
    """Per row of ``table`` (columns ``org`` and ``ts``): still inside its org's retention
    (vectorised per org)."""
    org = table["org"].cast(pa.string())
    orgs = pc.unique(org).to_pylist()
    cut = pa.array(np.full(table.num_rows, now - retention.default, dtype=np.int64), pa.int64())
    for name in orgs:
        if name in retention.overrides:
            cut = pc.if_else(pc.equal(org, name), retention.cutoff(name, now), cut)
    return pc.greater_equal(table["ts"], cut)


def drop_expired(table: pa.Table, retention: Retention, now: int) -> pa.Table:
    """Rows of ``table`` (columns ``org`` and ``ts``) still inside their org's retention."""
    if table.num_rows == 0:
        return table
    return table.filter(kept(table, retention, now))
