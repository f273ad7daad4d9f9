"""Small vectorised index helpers shared by the columnar kernels (sketches, codecs, intake,
stores and query): CSR offsets, concatenated ranges, per-group sums and the usual sort by
(sid, time), without a Python loop per group."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


def exclusive_cumsum(x: I64) -> I64:
    """``[0, x0, x0 + x1, ...]`` (``x.size + 1`` values): CSR offsets of groups of sizes
    ``x``."""
    out = np.zeros(x.size + 1, dtype=np.int64)
    np.cumsum(x, out=out[1:])
    return out


def ranges(starts: I64, lengths: I64) -> I64:
    """Concatenated ``arange(s, s + n)`` for every (s, n)."""
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    begin = exclusive_cumsum(lengths)[:-1]
    return np.arange(total, dtype=np.int64) + np.repeat(starts - begin, lengths)


def part_sums(values: npt.NDArray[np.integer] | npt.NDArray[np.bool_], sizes: I64) -> I64:
    """Sum of each consecutive part of ``sizes`` elements of ``values`` (bools count as 1):
    one cumulative sum read at the group bounds."""
    running = np.zeros(values.size + 1, dtype=np.int64)
    np.cumsum(values, dtype=np.int64, out=running[1:])
    return np.diff(running[exclusive_cumsum(sizes)])


def order_by_sid(sid: npt.NDArray[np.uint64], then: I64) -> npt.NDArray[np.intp]:
    """``np.lexsort((then, sid))``: the stable order by (sid, then), computed faster when, as
    often, each series' rows come in runs already in time order (a client sending several
    points per series per request; stored blocks). Then a stable sort of the runs by their
    sid, each run kept whole, is that very permutation (it keeps each sid's rows in input
    order), and it sorts one key per run instead of per row: 16 points per series per
    request sort 16 times fewer keys. Time-major input (one point per series per message,
    the agent's shape) has few equal neighbours, and there the two-key sort is the faster
    (1.3 against 2 ms for 171 000 points): it runs directly, as it does when the check
    after the run sort fails."""
    n = sid.size
    head = np.ones(n, dtype=bool)
    np.not_equal(sid[1:], sid[:-1], out=head[1:])
    if 4 * int(np.count_nonzero(head)) <= 3 * n:  # a quarter of the rows continue a run
        starts = np.flatnonzero(head)
        lengths = np.diff(np.append(starts, n))
        runs = np.argsort(sid[starts], kind="stable")
        order = ranges(starts[runs], lengths[runs]).astype(np.intp, copy=False)
        s, t = sid[order], then[order]
        if ((s[1:] != s[:-1]) | (t[1:] >= t[:-1])).all():
            return order
    return np.lexsort((then, sid))
