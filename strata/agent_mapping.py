"""The Datadog agent's sketch index mapping, and its conversion into our sketches (pure).

The agent (``pkg/quantile`` of datadog-agent; Vector and the serverless extension use the
same code or a port of it) does not send values but bins: a Dogsketch holds ``k``/``n``
arrays — key and count of every bin — beside the exact count, min, max and sum. Its mapping
is not ours (:class:`strata.sketch.SketchParams`, the ``ddsketch`` package's), so bins are
converted, never taken as our keys. The agent's mapping, from ``pkg/quantile/config.go``::

    eps   = 1/128,  gamma = 1 + 2 eps = 1.015625,  ln_gamma = log1p(2 eps)
    emin  = floor(ln(1e-9) / ln_gamma) = -1337,  bias = 1 - emin = 1338
    key(v)  = round_half_even(ln(v) / ln_gamma) + bias   for v >= norm_min
            = 0                                          for |v| < norm_min
            = -key(-v)                                   for v < 0
            = +-32767 (infinity keys)                    when the key would pass 32766
    f64(k)  = gamma ** (k - bias)     (-f64(-k) for k < 0, 0 for k = 0)
    norm_min = f64(1) ~ 9.94e-10,     norm_max = f64(32766) ~ 4.14e211

Rounding (not ``floor``) makes bin ``k`` hold ``[f64(k) / sqrt(gamma), f64(k) * sqrt(gamma))``:
``f64(k)`` is the geometric centre of its bin, whatever the comment in config.go says ("lower
bound"). It is the value the agent itself reports for a key: its tests assert
``f64(key(v))`` within 1 % of ``v`` for every float32 (``TestRelativeError``) and read
``f64(k)`` back as the quantile of single-count bins (``TestQuantile``; larger bins are
interpolated from ``f64(k)`` towards ``gamma * f64(k)``, which only moves away from the
centre). So a bin converts by its representative ``f64(k)``, inserted with weight ``n``, and
every value the agent put in that bin is within :data:`AGENT_RELATIVE_ACCURACY`
(``sqrt(gamma) - 1`` ~ 0.778 %) of it.

Error bound after conversion: our sketch puts that representative in a bin whose value is
within ``a`` of it, so each value moves by at most ``(1 + a) * sqrt(gamma) - 1`` relative
(1.786 % for a = 1 %, :func:`conversion_error_bound`). Both mappings are monotone, so the
converted sketch's q-quantile is the image of the exact q-quantile and inherits that bound
(clamping to the exact min/max only helps). Outside it: values with ``|v| < norm_min``
(the agent's zero bin, reported as 0), bins collapsed by the agent's 4096-bin limit or by our
own bin limit, and the infinity keys (``|v| >= norm_max / sqrt(gamma)``), whose values are
taken as the sketch's exact max (or min for -inf), no closer than the infinity bin's bound.

Count, sum, min and max are the message's, kept exactly. Everything here is columnar: one
pass over all bins of a request, no Python loop per bin or per sketch.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from strata.sketch import SketchBatch, SketchError, SketchParams, fold_bins

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

AGENT_EPS = 1.0 / 128.0
AGENT_GAMMA = 1.0 + 2.0 * AGENT_EPS
AGENT_LN_GAMMA = math.log1p(2.0 * AGENT_EPS)
AGENT_MIN_VALUE = 1e-9
AGENT_BIAS = 1 - math.floor(math.log(AGENT_MIN_VALUE) / AGENT_LN_GAMMA)  # 1338
#: keys are int16 in the agent: +-32767 stand for +-infinity, 32766 is the largest finite key
AGENT_INF_KEY = (1 << 15) - 1
AGENT_MAX_KEY = AGENT_INF_KEY - 1
#: the agent's bin limit (bins beyond it are collapsed by the agent, before we see them)
AGENT_BIN_LIMIT = 4096
AGENT_NORM_MIN = math.pow(AGENT_GAMMA, 1 - AGENT_BIAS)
AGENT_NORM_MAX = math.pow(AGENT_GAMMA, AGENT_MAX_KEY - AGENT_BIAS)
#: largest relative distance between a value and the representative of its agent bin
AGENT_RELATIVE_ACCURACY = math.sqrt(AGENT_GAMMA) - 1.0
# Magnitudes at or above this get an infinity key (round(log) + bias > AGENT_MAX_KEY).
_INF_BOUND = AGENT_NORM_MAX * math.sqrt(AGENT_GAMMA)


def conversion_error_bound(params: SketchParams) -> float:
    """Relative error bound of a quantile read from agent bins converted into ``params``
    (for values with ``norm_min <= |v| < norm_max`` and no collapsed bins)."""
    return (1.0 + params.relative_accuracy) * (1.0 + AGENT_RELATIVE_ACCURACY) - 1.0


def agent_keys(values: npt.ArrayLike) -> I64:
    """The agent's key of every value (``Config.key``), vectorised. Finite values only."""
    v = np.asarray(values, dtype=np.float64)
    mag = np.abs(v)
    if not np.all(np.isfinite(mag)):
        raise SketchError("agent keys of finite values only")
    live = mag >= AGENT_NORM_MIN
    out = np.zeros(v.shape, dtype=np.int64)
    # np.rint rounds half to even, as Go's math.RoundToEven.
    k = np.rint(np.log(mag[live]) / AGENT_LN_GAMMA).astype(np.int64) + AGENT_BIAS
    k = np.clip(k, 1, AGENT_INF_KEY)  # the agent: never below 1, past its max -> infinity
    out[live] = np.where(v[live] < 0, -k, k)
    return out


def agent_values(keys: npt.ArrayLike) -> F64:
    """``f64(k)`` of every agent key: the signed representative; 0 for key 0 and
    +-infinity for the infinity keys. Keys outside [-32767, 32767] raise SketchError."""
    k = np.asarray(keys, dtype=np.int64)
    mag = np.abs(k)
    if mag.size and int(mag.max()) > AGENT_INF_KEY:
        raise SketchError(f"agent keys are within +-{AGENT_INF_KEY}")
    out = np.power(AGENT_GAMMA, (mag - AGENT_BIAS).astype(np.float64))
    out[mag == 0] = 0.0
    out[mag == AGENT_INF_KEY] = np.inf
    return np.where(k < 0, -out, out)


def from_agent_bins(
    params: SketchParams,
    sid: npt.ArrayLike,
    ts: npt.ArrayLike,
    count: npt.ArrayLike,
    total: npt.ArrayLike,
    vmin: npt.ArrayLike,
    vmax: npt.ArrayLike,
    offsets: npt.ArrayLike,
    keys: npt.ArrayLike,
    counts: npt.ArrayLike,
) -> SketchBatch:
    """One sketch in ``params`` per agent sketch: row ``i`` (labelled ``sid[i], ts[i]``)
    has the agent bins ``keys[offsets[i]:offsets[i+1]]`` with ``counts`` (in any order,
    repeats allowed — the agent splits counts above 65535 over repeated keys), and the
    exact ``count``, sum ``total``, ``vmin`` and ``vmax``.

    Bins of count 0 are dropped; key 0 goes to the zero count. Raises
    :class:`SketchError` when the columns disagree in length, a key is outside
    [-32767, 32767], a count is negative or not finite, ``count`` is not the sum of its
    bins' counts, or a non-empty row has a non-finite sum/min/max or ``min > max``.
    Rows are kept as given (fold repeated labels with :meth:`SketchBatch.merge_by_key`).
    """
    sid_a = np.array(sid, dtype=np.uint64).ravel()
    ts_a = np.array(ts, dtype=np.int64).ravel()
    cnt = np.array(count, dtype=np.float64).ravel()
    tot = np.array(total, dtype=np.float64).ravel()
    lo = np.array(vmin, dtype=np.float64).ravel()
    hi = np.array(vmax, dtype=np.float64).ravel()
    off = np.asarray(offsets, dtype=np.int64).ravel()
    k = np.asarray(keys, dtype=np.int64).ravel()
    c = np.asarray(counts, dtype=np.float64).ravel()
    n = sid_a.size
    if any(x.size != n for x in (ts_a, cnt, tot, lo, hi)) or off.size != n + 1:
        raise SketchError("one sid, ts, count, sum, min and max per row and n + 1 offsets")
    lengths = np.diff(off)
    if off[0] != 0 or off[-1] != k.size or k.size != c.size or (lengths < 0).any():
        raise SketchError("offsets must rise from 0 to the number of bins")
    if c.size and not (np.all(np.isfinite(c)) and c.min() >= 0):
        raise SketchError("agent bin counts must be finite and >= 0")
    if k.size and int(np.abs(k).max()) > AGENT_INF_KEY:
        raise SketchError(f"agent keys are within +-{AGENT_INF_KEY}")
    row = np.repeat(np.arange(n, dtype=np.int64), lengths)
    if c.size and c.min() == 0:
        keep = c > 0
        row, k, c = row[keep], k[keep], c[keep]
    binned = np.bincount(row, weights=c, minlength=n)
    if not np.array_equal(binned, cnt):
        bad = int(np.flatnonzero(binned != cnt)[0])
        raise SketchError(f"row {bad}: count {cnt[bad]:g} but its bins hold {binned[bad]:g}")
    empty = cnt == 0
    full = ~empty
    if not all(np.all(np.isfinite(x[full])) for x in (tot, lo, hi)):
        raise SketchError("sum, min and max of a non-empty sketch must be finite")
    if (lo[full] > hi[full]).any():
        raise SketchError("min > max")
    lo[empty], hi[empty], tot[empty] = np.inf, -np.inf, 0.0  # the empty-sketch convention

    zero = k == 0
    zero_count = np.bincount(row[zero], weights=c[zero], minlength=n).astype(np.float64)
    stores = []
    for mask, extreme in ((k > 0, hi), (k < 0, -lo)):
        rows = row[mask]
        mag = np.power(AGENT_GAMMA, (np.abs(k[mask]) - AGENT_BIAS).astype(np.float64))
        inf = np.abs(k[mask]) == AGENT_INF_KEY
        if inf.any():
            # The infinity bin holds |v| >= _INF_BOUND: the exact extreme is the best value.
            mag[inf] = np.maximum(extreme[rows[inf]], _INF_BOUND)
        sub_off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=sub_off[1:])
        stores.append(fold_bins(sub_off, params.keys(mag), c[mask], params.bin_limit))
    pos, neg = stores
    return SketchBatch(params, sid_a, ts_a, cnt, zero_count, tot, lo, hi, pos, neg)
