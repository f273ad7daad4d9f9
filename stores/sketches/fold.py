"""Read-modify-write of stored sketch records (pure: bytes in, bytes out).

The rocks sketch store keeps three records per series, each a sketch batch in the sketch
encoding (docs/formats.md), keyed like the rocks point store (``stores/rocks/layout.py``):

- ``r`` sid hour-start: the stored rows of that series hour, one per timestamp;
- ``m`` sid hour-start: its 1-minute rollups (one merged sketch per minute);
- ``h`` sid day-start: the 1-hour rollups of that UTC day.

Applying new rows to a record = decode it, add the new rows (rolled up to the record's
step), merge per (sid, bucket), encode. Merging is exact and order-independent, so the
stored bytes are a function of the set of applied messages — but applying a message twice
counts its values twice; the store prevents that by offsets.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from strata.sketch import IncompatibleSketches, SketchBatch, SketchParams
from strata.sketch_codec import decode_batch, decode_batches, encode_batch

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Record:
    """One kind of stored record: its key byte, the step of its rows and the span one
    record holds (its key's start is a multiple of the span)."""

    kind: bytes
    step: int
    span: int


RAW = Record(b"r", 1, 3600)
MINUTES = Record(b"m", 60, 3600)
HOURS = Record(b"h", 3600, 86400)
RECORDS = (RAW, MINUTES, HOURS)
BY_STEP = {r.step: r for r in RECORDS}


def record_keys(sid: U64, ts: I64, span: int) -> tuple[U64, I64]:
    """The distinct (sid, span start) of rows, sorted by (sid, start)."""
    start = ts - ts % span
    order = np.lexsort((start, sid))
    s, t = sid[order], start[order]
    new = np.ones(s.size, dtype=bool)
    new[1:] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    return s[new], t[new]


def decode_records(blobs: Sequence[bytes], params: SketchParams) -> SketchBatch:
    """Every row of the stored records ``blobs``, in ``params`` (decoded in one pass)."""
    if not blobs:
        return SketchBatch.empty(params)
    try:
        return decode_batches(blobs).convert(params)
    except IncompatibleSketches:  # records written with other parameters: convert each
        return SketchBatch.concat([decode_batch(b).convert(params) for b in blobs])


def fold(record: Record, old: Sequence[bytes], new: SketchBatch) -> tuple[U64, I64, list[bytes]]:
    """The records ``old`` (stored values of the keys the new rows touch) with ``new``
    (raw rows, in any order) added: (sid, start, value) of every record to put, sorted."""
    rows = new if record.step == 1 else new.rollup(record.step)
    merged = SketchBatch.concat([decode_records(old, new.params), rows]).merge_by_key()
    if len(merged) == 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64), []
    start = merged.ts - merged.ts % record.span
    cut = np.ones(len(merged), dtype=bool)
    cut[1:] = (merged.sid[1:] != merged.sid[:-1]) | (start[1:] != start[:-1])
    firsts = np.flatnonzero(cut)
    bounds = np.append(firsts, len(merged)).tolist()
    # One encode per record (the records are separate values in RocksDB).
    values = [encode_batch(merged.take(np.arange(a, b))) for a, b in itertools.pairwise(bounds)]
    return merged.sid[firsts], start[firsts], values
