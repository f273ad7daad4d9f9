"""Pure postings logic: which sids a tag filter selects (no storage, no clock)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from pyroaring import BitMap64


def union(bitmaps: Iterable[BitMap64]) -> BitMap64:
    out = BitMap64()
    for b in bitmaps:
        out |= b
    return out


def select(
    all_series: BitMap64, include: Sequence[BitMap64], exclude: Sequence[BitMap64]
) -> BitMap64:
    """Series in ``all_series`` present in every ``include`` set and in no ``exclude`` set.

    Each argument is already the union over the query's buckets, so "active in the range
    and carrying the tag" is one membership test (a series' tags never change: they are
    part of its id).
    """
    out = all_series.copy()
    for inc in include:
        out &= inc
        if not out:
            return out
    for exc in exclude:
        out -= exc
    return out


def to_le_bytes(bitmap: BitMap64) -> bytes:
    """Sorted little-endian uint64 sids, the resolve API's response body."""
    return np.array(bitmap.to_array(), dtype="<u8").tobytes()
