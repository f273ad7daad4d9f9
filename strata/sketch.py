"""DDSketch: mergeable quantile sketches with a relative-error guarantee (DESIGN §2, issue 5).

Distribution metrics keep a sketch per (series, time bucket) instead of raw values, so that
"p99 across all hosts over a day" is a merge of sketches followed by one quantile read.
DDSketch (Masson, Rim, Lee, VLDB 2019) gives every quantile within a relative error ``a`` of
the exact value, and its merge is exact: merging sketches gives bin for bin the sketch of the
union of their values, in any order and grouping. That is what lets intake, every store tier,
every rollup and the query fold sketches wherever it suits them.

Index mapping — the ``ddsketch`` package's ``LogarithmicMapping`` with offset 0, computed
with the same floating-point operations so keys agree bit for bit::

    gamma = 1 + 2a / (1 - a)               # = (1 + a) / (1 - a)
    m     = ln 2 / log1p(2a / (1 - a))     # = 1 / log2(gamma)
    key(x) = ceil(log2(x) * m)             # bin k holds (gamma**(k-1), gamma**k]
    value(k) = 2**(k / m) * 2 / (1 + gamma)  # within a of every x in bin k

A value ``v`` goes to the positive store when ``v > min_possible``, to the negative store (by
``key(-v)``) when ``v < -min_possible``, and to the zero count otherwise, with
``min_possible = sys.float_info.min * gamma`` as in ``ddsketch``.

Bounded bins: in each sign's store the keys span at most ``bin_limit`` (default 2048); keys
below ``max_key - bin_limit + 1`` are counted in that key — ``ddsketch``'s
``CollapsingLowestDenseStore``: the values closest to zero lose their accuracy first, the
upper quantiles (what latency dashboards read) keep it. The collapse depends only on the
largest key, so it commutes with merging: merge stays commutative and associative bin for bin.

Quantile: ``ddsketch``'s definition. Rank ``r = q * (count - 1)``; the answer is the value
of the first bin (in value order: negative bins from the most negative, then zeros, then
positive bins) whose cumulative count exceeds ``r`` — the *lower* value at a fractional rank,
so the exact reference is ``sorted(x)[floor(q * (n - 1))]``. The estimate is then clamped to
the exact ``[min, max]``, which can only move it closer to the truth, and q = 0 and q = 1
answer the exact min and max.

Counts are float64 (weights, and the protobuf form, are doubles); counts of plain values are
integers, exact below 2**53, so every merge of them is exact.

Ownership: sketches and batches are **immutable values**. Every operation returns a new
object; the arrays inside are marked read-only. The dataclass constructors take ownership of
the arrays they are given (and mark them read-only); the ``from_*`` constructors copy what
they keep of the caller's arrays. Nothing here loops in Python per value or per bin; the few
loops run per sketch of a list the caller already holds.

Where to start:

- one sketch: :meth:`Sketch.from_values`, :meth:`Sketch.merge` / :func:`merge_sketches`,
  :meth:`Sketch.quantiles`;
- many sketches as columns (a Kafka message, a store block): :class:`SketchBatch` — labels
  ``sid``/``ts``, per-row count/zero/sum/min/max, bins in CSR form (:class:`Bins`).
  Intake builds it with :meth:`SketchBatch.from_ragged` (rows of values) or
  :meth:`SketchBatch.from_values` (a label per value); stores fold replays and rollups with
  :meth:`SketchBatch.merge_by_key` / :meth:`SketchBatch.rollup`; the query merges across
  series by passing group labels to ``merge_by_key`` and reads
  :meth:`SketchBatch.quantiles` for every row at once. Group merges sort rows by label
  (``lexsort``) and count every group's bins in one ``bincount`` (or one sort) over a
  shared key space — no loop per group.

Encoding: :mod:`strata.sketch_codec` (docs/formats.md, "Sketch encoding (v1)").
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from strata.arrays import exclusive_cumsum, ranges

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

DEFAULT_RELATIVE_ACCURACY = 0.01
DEFAULT_BIN_LIMIT = 2048
#: below this the keys of the full float64 range no longer fit an int32 (sint32 in protobuf)
MIN_RELATIVE_ACCURACY = 1e-6
MAX_BIN_LIMIT = 1 << 24

_LN2 = math.log(2.0)
# Dense counting (bincount) while the key space is at most this much larger than the input.
_DENSE_SLACK = 1 << 16


class SketchError(ValueError):
    """Input a sketch cannot hold (NaN, infinity, bad counts) or an invalid operation."""


class IncompatibleSketches(SketchError):
    """Sketches with different parameters cannot be merged without :meth:`Sketch.convert`."""


@dataclass(frozen=True, slots=True)
class SketchParams:
    """Relative accuracy ``a`` (0 < a < 1) and the bin limit of each sign's store."""

    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    bin_limit: int = DEFAULT_BIN_LIMIT

    def __post_init__(self) -> None:
        a = self.relative_accuracy
        if not (MIN_RELATIVE_ACCURACY <= a < 1.0):
            raise SketchError(f"relative accuracy must be in [1e-6, 1), got {a!r}")
        if not (1 <= self.bin_limit <= MAX_BIN_LIMIT):
            raise SketchError(f"bin limit must be in [1, {MAX_BIN_LIMIT}], got {self.bin_limit}")

    @property
    def gamma(self) -> float:
        a = self.relative_accuracy
        return 1.0 + 2.0 * a / (1.0 - a)

    @property
    def multiplier(self) -> float:
        a = self.relative_accuracy
        return (1.0 / math.log1p(2.0 * a / (1.0 - a))) * _LN2

    @property
    def min_possible(self) -> float:
        """Magnitudes at or below this count as zero (as in ``ddsketch``)."""
        return sys.float_info.min * self.gamma

    def keys(self, magnitudes: F64) -> I64:
        """Bin key of every magnitude (each must be > :attr:`min_possible` and finite)."""
        x = np.log(magnitudes)
        x /= _LN2
        x *= self.multiplier
        np.ceil(x, out=x)
        return x.astype(np.int64)

    def values(self, keys: npt.NDArray[np.integer]) -> F64:
        """Representative magnitude of every key (relative error at most ``a``)."""
        x = np.power(2.0, keys.astype(np.float64) / self.multiplier)
        x *= 2.0 / (1.0 + self.gamma)
        return x


def _freeze(*arrays: npt.NDArray[np.generic]) -> None:
    for a in arrays:
        a.setflags(write=False)


@dataclass(frozen=True, slots=True, eq=False)
class Bins:
    """The bins of one sign for ``n`` sketches, in CSR form.

    Sketch ``i`` owns ``keys[offsets[i]:offsets[i+1]]`` (strictly increasing int32 keys) and
    the matching ``counts`` (float64, > 0). ``offsets`` has ``n + 1`` entries, the first 0.
    """

    offsets: I64
    keys: I32
    counts: F64

    def __post_init__(self) -> None:
        if self.offsets.size < 1 or self.keys.size != self.counts.size:
            raise SketchError("bins: offsets must have n + 1 entries, keys and counts match")
        _freeze(self.offsets, self.keys, self.counts)

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    @classmethod
    def empty(cls, n: int) -> Bins:
        return cls(np.zeros(n + 1, np.int64), np.empty(0, np.int32), np.empty(0, np.float64))

    @property
    def lengths(self) -> I64:
        return np.diff(self.offsets)

    def totals(self) -> F64:
        """Sum of the counts of every sketch."""
        out = np.zeros(len(self), dtype=np.float64)
        filled = np.flatnonzero(self.lengths)
        if filled.size:
            out[filled] = np.add.reduceat(self.counts, self.offsets[filled])
        return out

    def take(self, rows: I64) -> Bins:
        """The bins of sketches ``rows`` (any order, repeats allowed)."""
        lengths = self.lengths[rows]
        idx = ranges(self.offsets[:-1][rows], lengths)
        return Bins(exclusive_cumsum(lengths), self.keys[idx], self.counts[idx])

    @classmethod
    def concat(cls, parts: Sequence[Bins]) -> Bins:
        if not parts:
            return cls.empty(0)
        sizes = np.array([p.keys.size for p in parts], dtype=np.int64)
        shift = exclusive_cumsum(sizes)
        offsets = np.concatenate(
            [np.zeros(1, np.int64)]
            + [p.offsets[1:] + s for p, s in zip(parts, shift[:-1], strict=True)]
        )
        return cls(
            offsets,
            np.concatenate([p.keys for p in parts]).astype(np.int32, copy=False),
            np.concatenate([p.counts for p in parts]).astype(np.float64, copy=False),
        )


def _runs(local: I64, weights: F64 | None) -> tuple[I64, F64]:
    """Distinct values of ``local`` (ascending) and the summed weights of each."""
    if weights is None:
        ordered = np.sort(local)
        w = None
    else:
        order = np.argsort(local, kind="stable")
        ordered, w = local[order], weights[order]
    new = np.empty(ordered.size, dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    if w is None:
        counts = np.diff(starts, append=ordered.size).astype(np.float64)
    else:
        counts = np.add.reduceat(w, starts)
    return ordered[starts], counts


def _count(local: I64, weights: F64 | None, size: int) -> tuple[I64, F64]:
    """Like :func:`_runs` for ``0 <= local < size``: dense counting while the key space is
    not much larger than the input (bincount beats a sort there), a sort otherwise."""
    if size > 4 * local.size + _DENSE_SLACK:
        return _runs(local, weights)
    dense = np.bincount(local, weights=weights, minlength=size)
    at = np.flatnonzero(dense != 0)
    return at, dense[at].astype(np.float64)


def _fold_one(keys: I64, weights: F64 | None, bin_limit: int) -> tuple[I32, F64]:
    """:func:`fold_bins` for a single group: (keys, counts) of one sketch's store."""
    if keys.size == 0:
        return np.empty(0, np.int32), np.empty(0, np.float64)
    hi, lo = int(keys.max()), int(keys.min())
    floor = hi - (bin_limit - 1)
    if lo < floor:
        keys = np.maximum(keys, floor)
        lo = floor
    at, counts = _count(keys.astype(np.int64) - lo, weights, hi - lo + 1)
    return (at + lo).astype(np.int32), counts


def fold_bins(offsets: I64, keys: I64, weights: F64 | None, bin_limit: int) -> Bins:
    """Sum equal keys within every group and collapse each group's lowest keys so that they
    span at most ``bin_limit``. Group ``g`` owns ``keys[offsets[g]:offsets[g+1]]`` in any
    order; ``weights`` (default 1) are the counts. Returns one sketch's bins per group."""
    n = offsets.size - 1
    if keys.size == 0:
        return Bins.empty(n)
    lengths = np.diff(offsets)
    filled = np.flatnonzero(lengths)
    if filled.size == 1:
        k, c = _fold_one(keys, weights, bin_limit)
        out_offsets = np.zeros(n + 1, dtype=np.int64)
        out_offsets[filled[0] + 1 :] = k.size
        return Bins(out_offsets, k, c)
    # Each group's keys go to their own stretch [base[g], base[g] + width[g]) of one key
    # space, so that one counting pass serves every group.
    starts, sizes = offsets[filled], lengths[filled]
    hi = np.maximum.reduceat(keys, starts)
    lo = np.minimum.reduceat(keys, starts)
    floor = hi - (bin_limit - 1)
    if (lo < floor).any():
        keys = np.maximum(keys, np.repeat(floor, sizes))
        lo = np.maximum(lo, floor)
    base = exclusive_cumsum(hi - lo + 1)
    shift = base[:-1] - lo
    at, counts = _count(keys + np.repeat(shift, sizes), weights, int(base[-1]))
    bounds = np.searchsorted(at, base)
    per_group = np.diff(bounds)
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    out_offsets[filled + 1] = per_group
    np.cumsum(out_offsets, out=out_offsets)
    return Bins(out_offsets, (at - np.repeat(shift, per_group)).astype(np.int32), counts)


def _merge_bins(bins: Bins, order: I64, group_starts: I64, bin_limit: int) -> Bins:
    """Merge the bins of the sketches ``order[group_starts[g]:group_starts[g+1]]`` per g."""
    taken = bins.take(order)
    bounds = np.append(group_starts, order.size)
    return fold_bins(taken.offsets[bounds], taken.keys.astype(np.int64), taken.counts, bin_limit)


def _quantiles(
    params: SketchParams,
    count: F64,
    zero: F64,
    vmin: F64,
    vmax: F64,
    pos: Bins,
    neg: Bins,
    q: F64,
) -> F64:
    """``ddsketch`` quantiles of ``n`` sketches at every q: an (n, len(q)) array."""
    n = count.size
    out = np.full((n, q.size), np.nan)
    rank = q[None, :] * (count[:, None] - 1.0)
    neg_total = neg.totals()[:, None]
    live = (count > 0)[:, None]
    in_neg = live & (rank < neg_total)
    in_zero = live & ~in_neg & (rank < neg_total + zero[:, None])
    in_pos = live & ~in_neg & ~in_zero
    out[in_zero] = 0.0
    # Cumulative counts over all sketches; a sketch's cumulative count at bin j is
    # cum[j] - cum[first bin of the sketch] + counts[first bin].
    for store, sel, sign in ((neg, in_neg, -1.0), (pos, in_pos, 1.0)):
        rows, cols = np.nonzero(sel)
        if rows.size == 0:
            continue
        cum = np.cumsum(store.counts)
        first = store.offsets[rows]
        last = store.offsets[rows + 1] - 1
        base = np.concatenate(([0.0], cum))[first]
        r = rank[rows, cols]
        if sign < 0:
            # Negative bins run from the most negative value down the keys: the value of
            # reversed rank n_neg - r - 1, first bin whose cumulative count reaches it + 1.
            j = np.searchsorted(cum, base + (neg_total[rows, 0] - r), side="left")
        else:
            r = r - (neg_total[rows, 0] + zero[rows])
            j = np.searchsorted(cum, base + r, side="right")
        j = np.clip(j, first, last)
        found = sign * params.values(store.keys[np.maximum(j, 0)])
        # Float weights can leave a rank just past the last bin of a store that is empty
        # for that sketch: the answer is then the sketch's extreme (by the clamp below).
        out[rows, cols] = np.where(first <= last, found, sign * np.inf)
    clamped: F64 = np.clip(out, vmin[:, None], vmax[:, None])
    # The extremes are known exactly (even when the lowest bins have collapsed).
    clamped[:, q == 0.0] = np.where(live, vmin[:, None], np.nan)
    clamped[:, q == 1.0] = np.where(live, vmax[:, None], np.nan)
    return clamped


def _as_quantiles(qs: npt.ArrayLike) -> F64:
    q = np.atleast_1d(np.asarray(qs, dtype=np.float64)).ravel()
    if not (np.all(q >= 0.0) and np.all(q <= 1.0)):
        raise SketchError("quantiles must be in [0, 1]")
    return q


@dataclass(frozen=True, slots=True, eq=False)
class Sketch:
    """One DDSketch: bins of both signs, a zero count and the exact count/sum/min/max.

    An empty sketch has ``count == 0``, ``min == inf``, ``max == -inf`` and ``sum == 0``.
    ``==`` compares everything exactly (parameters, summary and every bin).
    """

    params: SketchParams
    count: float
    zero_count: float
    sum: float
    min: float
    max: float
    pos_keys: I32
    pos_counts: F64
    neg_keys: I32
    neg_counts: F64

    def __post_init__(self) -> None:
        _freeze(self.pos_keys, self.pos_counts, self.neg_keys, self.neg_counts)

    @classmethod
    def empty(cls, params: SketchParams | None = None) -> Sketch:
        return SketchBatch.empty(params or SketchParams(), 1).row(0)

    @classmethod
    def from_values(cls, values: npt.ArrayLike, params: SketchParams | None = None) -> Sketch:
        """The sketch of ``values`` (float64; NaN and infinities raise :class:`SketchError`)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        one = np.array([0, v.size], dtype=np.int64)
        zero = np.zeros(1, dtype=np.int64)
        return SketchBatch.from_ragged(
            params or SketchParams(), zero.view(np.uint64), zero, one, v
        ).row(0)

    @classmethod
    def from_bins(
        cls,
        params: SketchParams,
        pos_keys: npt.ArrayLike,
        pos_counts: npt.ArrayLike,
        neg_keys: npt.ArrayLike = (),
        neg_counts: npt.ArrayLike = (),
        zero_count: float = 0.0,
        sum: float | None = None,
        min: float | None = None,
        max: float | None = None,
    ) -> Sketch:
        """A sketch from (key, count) pairs in ``params``' key space, in any order with
        repeats (summed) and beyond the bin limit (collapsed). Counts must be finite and
        > 0. Missing sum/min/max are estimated from the bins' representative values (within
        ``a`` for min and max) — the protobuf form and agent sketches do not carry them."""
        stores = []
        for k, c in ((pos_keys, pos_counts), (neg_keys, neg_counts)):
            karr = np.asarray(k, dtype=np.int64).ravel()
            carr = np.asarray(c, dtype=np.float64).ravel()
            if karr.size != carr.size:
                raise SketchError("keys and counts differ in length")
            if carr.size and not (np.all(np.isfinite(carr)) and np.all(carr > 0)):
                raise SketchError("bin counts must be finite and > 0")
            if karr.size and (karr.min() < -(2**31) or karr.max() >= 2**31):
                raise SketchError("bin keys must fit in 32 bits")
            offsets = np.array([0, karr.size], dtype=np.int64)
            stores.append(fold_bins(offsets, karr, carr, params.bin_limit))
        pos, neg = stores
        zero = float(zero_count)
        if not (math.isfinite(zero) and zero >= 0):
            raise SketchError("zero count must be finite and >= 0")
        count = zero + float(pos.counts.sum()) + float(neg.counts.sum())
        pv = params.values(pos.keys)
        nv = params.values(neg.keys)
        zeros = np.zeros(1 if zero else 0)
        est_min = float(np.concatenate((-nv[-1:], zeros, pv[:1])).min()) if count else math.inf
        est_max = float(np.concatenate((-nv[:1], zeros, pv[-1:])).max()) if count else -math.inf
        est_sum = float(pv @ pos.counts - nv @ neg.counts)
        return cls(
            params,
            count,
            zero,
            est_sum if sum is None else float(sum),
            est_min if min is None else float(min),
            est_max if max is None else float(max),
            pos.keys,
            pos.counts,
            neg.keys,
            neg.counts,
        )

    @property
    def is_empty(self) -> bool:
        return self.count == 0

    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count else math.nan

    @property
    def bin_count(self) -> int:
        return int(self.pos_keys.size + self.neg_keys.size)

    def quantiles(self, qs: npt.ArrayLike) -> F64:
        """Estimates for every q in ``qs`` (each in [0, 1]); NaN for an empty sketch.
        Same arithmetic as :meth:`SketchBatch.quantiles` on one row, without the batch."""
        q = _as_quantiles(qs)
        if self.count == 0:
            return np.full(q.size, np.nan)
        rank = q * (self.count - 1.0)
        neg_total = float(np.add.reduce(self.neg_counts))
        in_neg = rank < neg_total
        in_zero = ~in_neg & (rank < neg_total + self.zero_count)
        in_pos = ~in_neg & ~in_zero
        out = np.zeros(q.size)
        if in_neg.any():
            j = np.searchsorted(np.cumsum(self.neg_counts), neg_total - rank[in_neg], "left")
            j = np.minimum(j, self.neg_keys.size - 1)
            out[in_neg] = -self.params.values(self.neg_keys[j])
        if in_pos.any():
            if self.pos_keys.size == 0:  # float weights only: see _quantiles
                out[in_pos] = np.inf
            else:
                r = rank[in_pos] - (neg_total + self.zero_count)
                j = np.searchsorted(np.cumsum(self.pos_counts), r, "right")
                j = np.minimum(j, self.pos_keys.size - 1)
                out[in_pos] = self.params.values(self.pos_keys[j])
        np.clip(out, self.min, self.max, out=out)
        out[q == 0.0] = self.min
        out[q == 1.0] = self.max
        return out

    def quantile(self, q: float) -> float:
        """One estimate; the scalar twin of :meth:`quantiles` (same arithmetic)."""
        if not 0.0 <= q <= 1.0:
            raise SketchError("quantiles must be in [0, 1]")
        if self.count == 0:
            return math.nan
        if q in (0.0, 1.0):
            return self.min if q == 0.0 else self.max
        rank = q * (self.count - 1.0)
        neg_total = float(np.add.reduce(self.neg_counts))
        if rank < neg_total:
            j = int(np.searchsorted(np.cumsum(self.neg_counts), neg_total - rank, "left"))
            key = self.neg_keys[min(j, self.neg_keys.size - 1) :][:1]
            value = -float(self.params.values(key)[0])
        elif rank < neg_total + self.zero_count:
            value = 0.0
        elif self.pos_keys.size == 0:  # float weights only: see _quantiles
            value = math.inf
        else:
            r = rank - (neg_total + self.zero_count)
            j = int(np.searchsorted(np.cumsum(self.pos_counts), r, "right"))
            key = self.pos_keys[min(j, self.pos_keys.size - 1) :][:1]
            value = float(self.params.values(key)[0])
        return min(max(value, self.min), self.max)

    def merge(self, *others: Sketch) -> Sketch:
        """The sketch of the values of this sketch and of ``others`` together."""
        return merge_sketches((self, *others))

    def add(self, values: npt.ArrayLike) -> Sketch:
        """This sketch with ``values`` inserted (a new sketch; this one is unchanged)."""
        return self.merge(Sketch.from_values(values, self.params))

    def convert(self, params: SketchParams) -> Sketch:
        """Re-bin into ``params`` by each bin's representative value (count/sum/min/max stay
        exact; quantile error can grow to about the sum of both accuracies)."""
        return self._as_batch().convert(params).row(0)

    def _as_batch(self) -> SketchBatch:
        zero = np.zeros(1, dtype=np.int64)
        return SketchBatch.from_sketches(zero.view(np.uint64), zero, [self])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sketch):
            return NotImplemented
        return (
            self.params == other.params
            and (self.count, self.zero_count, self.sum, self.min, self.max)
            == (other.count, other.zero_count, other.sum, other.min, other.max)
            and np.array_equal(self.pos_keys, other.pos_keys)
            and np.array_equal(self.pos_counts, other.pos_counts)
            and np.array_equal(self.neg_keys, other.neg_keys)
            and np.array_equal(self.neg_counts, other.neg_counts)
        )

    __hash__ = None  # type: ignore[assignment]


def merge_sketches(sketches: Sequence[Sketch]) -> Sketch:
    """Merge any number of sketches of equal parameters at once (bin for bin the same as
    :meth:`SketchBatch.merge_all` of a batch of them, without building the batch)."""
    if not sketches:
        raise SketchError("nothing to merge")
    params = sketches[0].params
    if any(s.params != params for s in sketches):
        raise IncompatibleSketches("sketches with different parameters")
    if len(sketches) == 1:
        return sketches[0]
    stores = []
    for keys, counts in (("pos_keys", "pos_counts"), ("neg_keys", "neg_counts")):
        k = np.concatenate([getattr(s, keys) for s in sketches])
        c = np.concatenate([getattr(s, counts) for s in sketches])
        stores.append(_fold_one(k, c, params.bin_limit))
    (pk, pc), (nk, nc) = stores
    stats = np.array([(s.count, s.zero_count, s.sum) for s in sketches]).T
    count, zero, total = (float(x) for x in np.add.reduce(stats, axis=1))
    return Sketch(
        params,
        count,
        zero,
        total,
        min(s.min for s in sketches),
        max(s.max for s in sketches),
        pk,
        pc,
        nk,
        nc,
    )


@dataclass(frozen=True, slots=True, eq=False)
class SketchBatch:
    """Many sketches as columns: one row per (sid, ts), all with the same parameters.

    ``sid``/``ts`` label the rows (series id, and a timestamp or bucket start); rows are in
    no particular order and may repeat a label until :meth:`merge_by_key` folds them.
    ``count``, ``zero_count``, ``sum``, ``min``, ``max`` are per row; ``pos``/``neg`` hold
    the bins in CSR form. This is the shape of a Kafka sketch message and of a store block.
    """

    params: SketchParams
    sid: U64
    ts: I64
    count: F64
    zero_count: F64
    sum: F64
    min: F64
    max: F64
    pos: Bins
    neg: Bins

    def __post_init__(self) -> None:
        n = self.sid.size
        cols = (self.ts, self.count, self.zero_count, self.sum, self.min, self.max)
        if any(c.size != n for c in cols) or len(self.pos) != n or len(self.neg) != n:
            raise SketchError("columns of a sketch batch must have equal length")
        _freeze(self.sid, *cols)

    def __len__(self) -> int:
        return int(self.sid.size)

    @classmethod
    def empty(cls, params: SketchParams, n: int = 0) -> SketchBatch:
        """``n`` empty sketches labelled (0, 0)."""
        z = np.zeros(n, dtype=np.float64)
        return cls(
            params,
            np.zeros(n, np.uint64),
            np.zeros(n, np.int64),
            z,
            z.copy(),
            z.copy(),
            np.full(n, np.inf),
            np.full(n, -np.inf),
            Bins.empty(n),
            Bins.empty(n),
        )

    @classmethod
    def from_ragged(
        cls,
        params: SketchParams,
        sid: npt.ArrayLike,
        ts: npt.ArrayLike,
        offsets: npt.ArrayLike,
        values: npt.ArrayLike,
    ) -> SketchBatch:
        """One sketch per row: row ``i`` (labelled ``sid[i], ts[i]``) holds
        ``values[offsets[i]:offsets[i+1]]`` — the shape of ``[[ts, [v1, v2, ...]], ...]``.
        Rows are kept as given (fold repeated labels with :meth:`merge_by_key`)."""
        sid_a = np.array(sid, dtype=np.uint64).ravel()
        ts_a = np.array(ts, dtype=np.int64).ravel()
        off = np.asarray(offsets, dtype=np.int64).ravel()
        v = np.asarray(values, dtype=np.float64).ravel()
        n = sid_a.size
        if ts_a.size != n or off.size != n + 1:
            raise SketchError("sid and ts need n entries and offsets n + 1")
        lengths = np.diff(off)
        if off[0] != 0 or off[-1] != v.size or (lengths < 0).any():
            raise SketchError("offsets must rise from 0 to the number of values")
        count = lengths.astype(np.float64)
        total = np.zeros(n, dtype=np.float64)
        vmin = np.full(n, np.inf)
        vmax = np.full(n, -np.inf)
        filled = np.flatnonzero(lengths)
        if v.size:
            # NaN and infinities show in the extremes, which are needed anyway.
            vmin[filled] = np.minimum.reduceat(v, off[filled])
            vmax[filled] = np.maximum.reduceat(v, off[filled])
            if not (np.isfinite(vmin[filled]).all() and np.isfinite(vmax[filled]).all()):
                raise SketchError("sketches hold finite values only (NaN or infinity given)")
            total[filled] = np.add.reduceat(v, off[filled])
        tiny = params.min_possible
        # Common (latencies, sizes): every value positive, no masks and no copies.
        if v.size == 0 or vmin[filled].min() > tiny:
            pos = fold_bins(off, params.keys(v), None, params.bin_limit)
            neg = Bins.empty(n)
            zero = np.zeros(n, dtype=np.float64)
        else:
            pos_off, pos = cls._one_sign(params, off, v, v > tiny, 1.0)
            neg_off, neg = cls._one_sign(params, off, v, v < -tiny, -1.0)
            zero = (lengths - np.diff(pos_off) - np.diff(neg_off)).astype(np.float64)
        return cls(params, sid_a, ts_a, count, zero, total, vmin, vmax, pos, neg)

    @staticmethod
    def _one_sign(
        params: SketchParams, off: I64, v: F64, mask: npt.NDArray[np.bool_], sign: float
    ) -> tuple[I64, Bins]:
        """Offsets of the masked values per row, and their bins."""
        sub_off = exclusive_cumsum(mask.astype(np.int64))[off]
        sub = v[mask]
        if sign < 0:
            sub = -sub
        return sub_off, fold_bins(sub_off, params.keys(sub), None, params.bin_limit)

    @classmethod
    def from_values(
        cls, params: SketchParams, sid: npt.ArrayLike, ts: npt.ArrayLike, values: npt.ArrayLike
    ) -> SketchBatch:
        """One sketch per distinct (sid, ts) of the value columns, rows sorted by (sid, ts)."""
        sid_a = np.asarray(sid, dtype=np.uint64).ravel()
        ts_a = np.asarray(ts, dtype=np.int64).ravel()
        v = np.asarray(values, dtype=np.float64).ravel()
        if sid_a.size != v.size or ts_a.size != v.size:
            raise SketchError("sid, ts and values must have equal length")
        order = np.lexsort((ts_a, sid_a))
        s, t = sid_a[order], ts_a[order]
        new = np.ones(s.size, dtype=bool)
        new[1:] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
        starts = np.flatnonzero(new)
        return cls.from_ragged(params, s[starts], t[starts], np.append(starts, s.size), v[order])

    @classmethod
    def from_sketches(
        cls, sid: npt.ArrayLike, ts: npt.ArrayLike, sketches: Sequence[Sketch]
    ) -> SketchBatch:
        """A batch of the given sketches (all with equal parameters), labelled sid/ts."""
        if not sketches:
            raise SketchError("no sketches given (an empty batch needs SketchBatch.empty)")
        params = sketches[0].params
        if any(s.params != params for s in sketches):
            raise IncompatibleSketches("sketches with different parameters")

        def col(name: str) -> F64:
            return np.array([getattr(s, name) for s in sketches], dtype=np.float64)

        def bins(keys: str, counts: str) -> Bins:
            ks = [getattr(s, keys) for s in sketches]
            sizes = np.array([k.size for k in ks], dtype=np.int64)
            return Bins(
                exclusive_cumsum(sizes),
                np.concatenate(ks).astype(np.int32, copy=False),
                np.concatenate([getattr(s, counts) for s in sketches]).astype(np.float64),
            )

        return cls(
            params,
            np.array(sid, dtype=np.uint64).ravel(),
            np.array(ts, dtype=np.int64).ravel(),
            col("count"),
            col("zero_count"),
            col("sum"),
            col("min"),
            col("max"),
            bins("pos_keys", "pos_counts"),
            bins("neg_keys", "neg_counts"),
        )

    @classmethod
    def concat(cls, batches: Sequence[SketchBatch]) -> SketchBatch:
        """Rows of all ``batches`` in order (equal parameters required)."""
        if not batches:
            raise SketchError("nothing to concatenate")
        params = batches[0].params
        if any(b.params != params for b in batches):
            raise IncompatibleSketches("batches with different parameters")

        def col(name: str) -> Any:
            return np.concatenate([getattr(b, name) for b in batches])

        return cls(
            params,
            col("sid"),
            col("ts"),
            col("count"),
            col("zero_count"),
            col("sum"),
            col("min"),
            col("max"),
            Bins.concat([b.pos for b in batches]),
            Bins.concat([b.neg for b in batches]),
        )

    def take(self, rows: npt.ArrayLike) -> SketchBatch:
        """Rows by index array or boolean mask (in that order)."""
        r = np.asarray(rows)
        idx = np.flatnonzero(r) if r.dtype == np.bool_ else r.astype(np.int64).ravel()
        return SketchBatch(
            self.params,
            self.sid[idx],
            self.ts[idx],
            self.count[idx],
            self.zero_count[idx],
            self.sum[idx],
            self.min[idx],
            self.max[idx],
            self.pos.take(idx),
            self.neg.take(idx),
        )

    def row(self, i: int) -> Sketch:
        a, b = int(self.pos.offsets[i]), int(self.pos.offsets[i + 1])
        c, d = int(self.neg.offsets[i]), int(self.neg.offsets[i + 1])
        return Sketch(
            self.params,
            float(self.count[i]),
            float(self.zero_count[i]),
            float(self.sum[i]),
            float(self.min[i]),
            float(self.max[i]),
            self.pos.keys[a:b],
            self.pos.counts[a:b],
            self.neg.keys[c:d],
            self.neg.counts[c:d],
        )

    def merge_by_key(
        self, sid: npt.ArrayLike | None = None, ts: npt.ArrayLike | None = None
    ) -> SketchBatch:
        """Merge rows that share a label; one row per distinct label, sorted by (sid, ts).

        The labels default to the rows' own; pass others to merge across them: ``ts`` set to
        bucket starts gives rollups (see :meth:`rollup`), ``sid`` set to group numbers (and
        ``ts`` to buckets) gives "merge across series per group and interval"."""
        s = self.sid if sid is None else np.asarray(sid, dtype=np.uint64).ravel()
        t = self.ts if ts is None else np.asarray(ts, dtype=np.int64).ravel()
        n = len(self)
        if s.size != n or t.size != n:
            raise SketchError("one sid and one ts label per row")
        if n == 0:
            return self
        order = np.lexsort((t, s))
        s, t = s[order], t[order]
        new = np.ones(n, dtype=bool)
        new[1:] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
        starts = np.flatnonzero(new)
        return self._merge_groups(order, starts, s[starts], t[starts])

    def rollup(self, step: int) -> SketchBatch:
        """Merge rows per (sid, ts bucket of ``step`` seconds); ts becomes the bucket start."""
        if step <= 0:
            raise SketchError("step must be positive")
        return self.merge_by_key(self.sid, self.ts - self.ts % step)

    def merge_all(self) -> Sketch:
        """All rows merged into one sketch (an empty sketch for an empty batch)."""
        if len(self) == 0:
            return SketchBatch.empty(self.params, 1).row(0)
        order = np.arange(len(self), dtype=np.int64)
        zero = np.zeros(1, dtype=np.int64)
        return self._merge_groups(order, zero, zero.view(np.uint64), zero).row(0)

    def _merge_groups(self, order: I64, starts: I64, sid: U64, ts: I64) -> SketchBatch:
        if starts.size == order.size:  # no two rows share a group: a reordering only
            return replace(self.take(order), sid=sid, ts=ts)
        limit = self.params.bin_limit
        return SketchBatch(
            self.params,
            sid,
            ts,
            np.add.reduceat(self.count[order], starts),
            np.add.reduceat(self.zero_count[order], starts),
            np.add.reduceat(self.sum[order], starts),
            np.minimum.reduceat(self.min[order], starts),
            np.maximum.reduceat(self.max[order], starts),
            _merge_bins(self.pos, order, starts, limit),
            _merge_bins(self.neg, order, starts, limit),
        )

    def quantiles(self, qs: npt.ArrayLike) -> F64:
        """(len(self), len(qs)) estimates; NaN for empty sketches."""
        return _quantiles(
            self.params,
            self.count,
            self.zero_count,
            self.min,
            self.max,
            self.pos,
            self.neg,
            _as_quantiles(qs),
        )

    def convert(self, params: SketchParams) -> SketchBatch:
        """Every row re-binned into ``params`` (see :meth:`Sketch.convert`)."""
        if params == self.params:
            return self
        stores = []
        for b in (self.pos, self.neg):
            keys = params.keys(self.params.values(b.keys)) if b.keys.size else b.keys
            stores.append(fold_bins(b.offsets, keys.astype(np.int64), b.counts, params.bin_limit))
        return replace(self, params=params, pos=stores[0], neg=stores[1])
