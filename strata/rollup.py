"""Rollups: per (series, aligned time bucket) count, sum, min, max and last (pure numpy).

Every point tier answers rollup reads in this one shape, and the query service folds them
into output intervals with :func:`merge`. ``merge`` is associative and commutative over
disjoint inputs (each (sid, bucket) summarises a disjoint set of points), so rollups of
blocks, files or tiers combine in any order. ``last`` is the value of the point with the
greatest timestamp in the bucket, which is why a rollup carries ``last_ts`` too.

Rollups are computed from *resolved* points (duplicates already removed by
:mod:`strata.conflict`), so redelivered points never count twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from strata.model import SID_DTYPE, TS_DTYPE, VALUE_DTYPE

MINUTE = 60
HOUR = 3600
RESOLUTIONS = {"raw": 1, "1m": MINUTE, "1h": HOUR}


@dataclass(frozen=True, slots=True)
class Rollups:
    """Equal-length columns, one row per (sid, bucket), sorted by (sid, bucket)."""

    sid: npt.NDArray[np.uint64]
    bucket: npt.NDArray[np.int64]  # bucket start, Unix seconds, a multiple of the step
    count: npt.NDArray[np.int64]
    sum: npt.NDArray[np.float64]
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    last: npt.NDArray[np.float64]
    last_ts: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.sid.size)

    @classmethod
    def empty(cls) -> Rollups:
        f = np.empty(0, VALUE_DTYPE)
        i = np.empty(0, TS_DTYPE)
        return cls(np.empty(0, SID_DTYPE), i, i.copy(), f, f.copy(), f.copy(), f.copy(), i.copy())


def _starts(sid: npt.NDArray[np.uint64], bucket: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    new = np.ones(sid.size, dtype=bool)
    new[1:] = (sid[1:] != sid[:-1]) | (bucket[1:] != bucket[:-1])
    return np.flatnonzero(new)


def rollup(
    sid: npt.NDArray[np.uint64],
    ts: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    step: int,
) -> Rollups:
    """Roll resolved points (no duplicate (sid, ts)) up into ``step``-second buckets."""
    if step <= 0:
        raise ValueError("step must be positive")
    if sid.size == 0:
        return Rollups.empty()
    bucket = ts - np.mod(ts, step)
    order = np.lexsort((ts, bucket, sid))
    s, b, t, v = sid[order], bucket[order], ts[order], value[order]
    starts = _starts(s, b)
    ends = np.append(starts[1:], s.size) - 1  # last row of each group = greatest ts
    return Rollups(
        s[starts],
        b[starts],
        np.diff(np.append(starts, s.size)).astype(np.int64),
        bucket_sums(v, starts),
        np.minimum.reduceat(v, starts),
        np.maximum.reduceat(v, starts),
        v[ends],
        t[ends],
    )


def bucket_sums(
    v: npt.NDArray[np.float64], starts: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64]:
    """Sums of the runs of ``v`` that begin at ``starts``. A sum beyond float64's range is
    ±inf (and +inf plus -inf, when partial sums overflowed both ways, is NaN), as IEEE 754
    defines and as Prometheus' sums are: that is the answer, not a fault, so numpy's
    warning about it is silenced."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.add.reduceat(v, starts)


def merge(parts: list[Rollups], step: int) -> Rollups:
    """Combine rollups of disjoint point sets and re-bucket them to ``step`` (a multiple of
    every input's step). Rows for the same (sid, bucket) fold together."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Rollups.empty()
    sid = np.concatenate([p.sid for p in parts])
    bucket = np.concatenate([p.bucket for p in parts])
    bucket = bucket - np.mod(bucket, step)
    last_ts = np.concatenate([p.last_ts for p in parts])
    order = np.lexsort((last_ts, bucket, sid))
    s, b, lt = sid[order], bucket[order], last_ts[order]

    def col(name: str) -> npt.NDArray[np.generic]:
        return np.concatenate([getattr(p, name) for p in parts])[order]

    starts = _starts(s, b)
    ends = np.append(starts[1:], s.size) - 1
    return Rollups(
        s[starts],
        b[starts],
        np.add.reduceat(col("count"), starts).astype(np.int64),
        bucket_sums(col("sum").astype(np.float64), starts),
        np.minimum.reduceat(col("min"), starts).astype(np.float64),
        np.maximum.reduceat(col("max"), starts).astype(np.float64),
        col("last")[ends].astype(np.float64),
        lt[ends],
    )


def resolution_for(interval: int) -> str:
    """The coarsest stored resolution that divides the output ``interval`` evenly, so an
    output bucket is an exact union of stored buckets and cost follows output points."""
    if interval % HOUR == 0:
        return "1h"
    if interval % MINUTE == 0:
        return "1m"
    return "raw"
