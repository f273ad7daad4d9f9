"""Query functions: their signatures (checked by the parser) and numpy implementations.

A function works on a :class:`Frame`: one row per output series on a shared bucket grid,
NaN where a series has no value. Everything is vectorised over the whole matrix; no Python
loop runs per point (a few loops run per window offset or per series, bounded by the
interval count, never by the data).

Semantics (docs/query.md): ``integral`` is the running sum of value * interval;
``derivative`` is the difference to the previous present value divided by the seconds
between them; ``per_second``/``per_minute``/``per_hour`` turn a per-interval value into a
per-second/minute/hour one (value / interval * 1, 60, 3600); ``top`` ranks series by the
reducer over their present values (``area`` = Σ|v|, ``norm`` = √Σv²).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

TOP_REDUCERS: tuple[str, ...] = ("mean", "max", "min", "sum", "last", "area", "norm")
TOP_ORDERS: tuple[str, ...] = ("desc", "asc")
ROLLUP_METHODS: tuple[str, ...] = ("avg", "sum", "min", "max", "count")


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter after the series argument: ``int`` or one of ``choices``."""

    name: str
    choices: tuple[str, ...] = ()  # empty = an integer
    default: int | str | None = None  # None = required


# name -> parameters after the series argument
SIGNATURES: dict[str, tuple[Param, ...]] = {
    **{
        name: ()
        for name in (
            "abs",
            "log2",
            "log10",
            "cumsum",
            "integral",
            "diff",
            "derivative",
            "per_second",
            "per_minute",
            "per_hour",
            "default_zero",
        )
    },
    "timeshift": (Param("seconds"),),
    "top": (
        Param("n", default=10),
        Param("by", TOP_REDUCERS, "mean"),
        Param("order", TOP_ORDERS, "desc"),
    ),
    "moving_rollup": (Param("seconds"), Param("method", ROLLUP_METHODS, "avg")),
}


@dataclass(frozen=True, slots=True)
class Frame:
    """Series on a grid: ``values[i, j]`` is series ``i`` at bucket ``grid[j]`` (NaN: none)."""

    tag_sets: list[tuple[str, ...]]
    values: Floats  # shape (len(tag_sets), grid.size)


def _quiet(fn: Callable[[], Floats]) -> Floats:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = fn()
    return np.where(np.isfinite(out), out, np.nan)


def _previous_present(values: Floats) -> tuple[Floats, npt.NDArray[np.int64]]:
    """Per cell: the value and column of the previous present cell in its row (NaN/-1)."""
    n, m = values.shape
    present = ~np.isnan(values)
    cols = np.where(present, np.arange(m)[None, :], -1)
    last = np.maximum.accumulate(cols, axis=1)
    prev_col = np.full((n, m), -1, np.int64)
    if m > 1:
        prev_col[:, 1:] = last[:, :-1]
    prev = np.take_along_axis(values, prev_col.clip(min=0), axis=1)
    return np.where(prev_col >= 0, prev, np.nan), prev_col


def running_sum(values: Floats) -> Floats:
    """Cumulative sum over present values; absent cells stay absent."""
    total = np.cumsum(np.nan_to_num(values, nan=0.0), axis=1)
    return np.where(np.isnan(values), np.nan, total)


def difference(values: Floats) -> Floats:
    prev, _ = _previous_present(values)
    return values - prev


def derivative(values: Floats, interval: int) -> Floats:
    prev, prev_col = _previous_present(values)
    gap = (np.arange(values.shape[1])[None, :] - prev_col) * interval
    return _quiet(lambda: (values - prev) / np.where(prev_col >= 0, gap, np.nan))


def moving(values: Floats, window: int, method: str) -> Floats:
    """Rolling ``method`` over the last ``window`` buckets (present values only); a cell
    has a value when its window holds at least one."""
    n = values.shape[0]
    padded = np.concatenate([np.full((n, window - 1), np.nan), values], axis=1)
    view = np.lib.stride_tricks.sliding_window_view(padded, window, axis=1)
    count = np.sum(~np.isnan(view), axis=2).astype(np.float64)
    if method == "count":
        return np.where(count > 0, count, np.nan)
    reducers: dict[str, Callable[[Floats], Floats]] = {
        "avg": lambda x: np.nanmean(x, axis=2),
        "sum": lambda x: np.nansum(x, axis=2),
        "min": lambda x: np.nanmin(x, axis=2),
        "max": lambda x: np.nanmax(x, axis=2),
    }
    out = _quiet(lambda: np.asarray(reducers[method](view), dtype=np.float64))
    return np.where(count > 0, out, np.nan)


def top(frame: Frame, n: int, by: str, order: str) -> Frame:
    """The ``n`` series ranking first by ``by`` (ties keep the input order)."""
    v = frame.values
    if v.shape[0] == 0:
        return frame
    present = ~np.isnan(v)
    if by == "last":
        idx = np.where(present, np.arange(v.shape[1])[None, :], -1).max(axis=1)
        score = np.where(idx >= 0, v[np.arange(v.shape[0]), idx.clip(min=0)], np.nan)
    else:
        reducers: dict[str, Callable[[Floats], Floats]] = {
            "mean": lambda x: np.nanmean(x, axis=1),
            "max": lambda x: np.nanmax(x, axis=1),
            "min": lambda x: np.nanmin(x, axis=1),
            "sum": lambda x: np.nansum(x, axis=1),
            "area": lambda x: np.nansum(np.abs(x), axis=1),
            "norm": lambda x: np.sqrt(np.nansum(x * x, axis=1)),
        }
        score = _quiet(lambda: reducers[by](v))
        score = np.where(present.any(axis=1), score, np.nan)
    # Series without any value rank last whatever the order.
    key = -score if order == "desc" else score
    key = np.where(np.isnan(key), np.inf, key)
    keep = np.sort(np.argsort(key, kind="stable")[:n])
    return Frame([frame.tag_sets[i] for i in keep.tolist()], v[keep])


def apply_unary(name: str, values: Floats, interval: int) -> Floats:
    """Functions of one frame and no parameters (``default_zero`` included)."""
    if name == "abs":
        return np.abs(values)
    if name == "log2":
        return _quiet(lambda: np.log2(values))
    if name == "log10":
        return _quiet(lambda: np.log10(values))
    if name == "cumsum":
        return running_sum(values)
    if name == "integral":
        return running_sum(values * interval)
    if name == "diff":
        return difference(values)
    if name == "derivative":
        return derivative(values, interval)
    if name == "per_second":
        return values / interval
    if name == "per_minute":
        return values * (60.0 / interval)
    if name == "per_hour":
        return values * (3600.0 / interval)
    if name == "default_zero":
        return np.nan_to_num(values, nan=0.0)
    raise ValueError(f"not a unary function: {name}")
