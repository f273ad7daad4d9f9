"""The monitor evaluator (issue 6 item 5; docs/monitors.md, "Evaluation").

Every ``interval_seconds`` each monitor is judged over the newest window the pipeline has
confirmed complete, never over time that may still be missing data:

1. ``target = now - evaluation_delay``; ``complete = gate(org, metrics of the query)``
   (percentile queries gate on the sketch tiers, heartbeat/gate.py);
   when the gate knows nothing (``None``) or ``target - complete > max_delay_seconds``
   the monitor is **delayed**: its states are held and its status says why — a lagging
   pipeline never raises an alert, a No Data, or a recovery;
2. else the window is ``[end - window + 1, end]`` with ``end = min(target, complete)``; the
   query runs over it (and, for ``change``/``pct_change``, over the same window one
   timeshift earlier) through the injected ``run_query``;
3. each group's values are aggregated over the window (:func:`group_values`) and judged with
   hysteresis (:func:`query.monitors.judge`); No Data, ``new_group_delay``,
   ``require_full_window`` and ``renotify_interval`` are applied (:func:`step`);
4. the new states, the transitions and their webhook outbox entries are written in one
   Redis transaction (:meth:`query.monitor_store.MonitorStore.record`).

The gate, the query execution, the notifier and the clock are injected (typed by the
protocols below) so the core is tested without a pipeline; :func:`evaluate_runner` adapts
:func:`query.evaluate.evaluate` to ``run_query``. Steps 2-3 are pure functions
(:func:`plan_window`, :func:`group_values`, :func:`step`) over numpy rows, one row per group.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from heartbeat.notify import WebhookNotifier
from heartbeat.settings import EvaluatorSettings
from query import ast
from query.evaluate import evaluate
from query.monitor_store import (
    MonitorStore,
    MonitorStoreUnavailable,
    Snapshot,
    Transition,
    TransitionRecord,
)
from query.monitors import (
    ALERT,
    CODE,
    NO_DATA,
    OK,
    STATES,
    EvaluationStatus,
    GroupState,
    Monitor,
    MonitorQuery,
    change_values,
    group_name,
    judge,
    time_aggregate,
)
from query.stores_client import StoreClient

log = logging.getLogger(__name__)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
# Groups in these states are notified again every renotify_interval (Datadog's default).
RENOTIFY_STATES = (ALERT, NO_DATA)


# -- what is injected -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowFrame:
    """A query answer over a window: one row of ``values`` per group (``tag_sets``), one
    column per bucket of ``grid`` (bucket starts, Unix seconds, step ``interval``); NaN =
    no value."""

    tag_sets: Sequence[tuple[str, ...]]
    values: Floats
    grid: Ints
    interval: int


class RunQuery(Protocol):
    def __call__(self, org: str, expr: ast.Expr, start: int, end: int) -> WindowFrame:
        """Evaluate ``expr`` for ``org`` over ``[start, end]`` (inclusive Unix seconds)."""
        ...


class Gate(Protocol):
    def __call__(self, org: str, metrics: Sequence[str], sketches: Sequence[str]) -> int | None:
        """The time through which every store and partition holding ``metrics`` (read as
        points) and ``sketches`` (metrics read as sketches: percentiles) of ``org`` has
        applied everything (Unix seconds), ``None`` when unknown."""
        ...


class StateStore(Protocol):
    """What the evaluator needs of :class:`query.monitor_store.MonitorStore`."""

    def all_snapshots(self) -> list[Snapshot]:
        """Every monitor with its group states and evaluation version."""
        ...

    def record(
        self,
        snap: Snapshot,
        groups: Mapping[str, GroupState] | None,
        transitions: Sequence[Transition],
        targets: Sequence[str],
        status: EvaluationStatus,
    ) -> list[TransitionRecord] | None:
        """Write one evaluation atomically; ``None`` if ``snap`` is stale (nothing written)."""
        ...


class Notifier(Protocol):
    def targets(self, message: str) -> list[str]:
        """The webhook names a monitor message notifies."""
        ...

    def kick(self) -> None:
        """Transitions were queued: deliver soon."""
        ...

    def run(self, stop: threading.Event) -> None:
        """Deliver queued notifications until ``stop`` is set."""
        ...


def evaluate_runner(client: StoreClient, *, max_points: int, max_series: int) -> RunQuery:
    """``run_query`` over the stores, through :func:`query.evaluate.evaluate`."""

    def run(org: str, expr: ast.Expr, start: int, end: int) -> WindowFrame:
        ev = evaluate(expr, org, start, end, client, max_points=max_points, max_series=max_series)
        return WindowFrame(ev.frame.tag_sets, ev.frame.values, ev.grid, ev.interval)

    return run


def build_evaluator(
    settings: EvaluatorSettings,
    client: StoreClient,
    gate: Gate,
    *,
    clock: Callable[[], float] = time.time,
) -> tuple[Evaluator, MonitorStore, WebhookNotifier]:
    """The evaluator wired from ``settings``: the Redis monitor store, the webhook notifier
    and ``run_query`` over ``client``. The caller closes the store and the notifier."""
    store = MonitorStore.from_url(
        settings.monitors_url,
        timeout_seconds=settings.redis_timeout_seconds,
        transitions_kept=settings.transitions_kept,
        delivered_kept_seconds=settings.delivered_kept_seconds,
    )
    notifier = WebhookNotifier.from_settings(store, settings)
    run_query = evaluate_runner(
        client, max_points=settings.max_points, max_series=settings.max_series
    )
    return Evaluator(store, run_query, gate, notifier, clock, settings), store, notifier


# -- pure core ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    start: int
    end: int
    complete_through: int


@dataclass(frozen=True, slots=True)
class Delayed:
    reason: str
    complete_through: int | None


def plan_window(
    now: float, q: MonitorQuery, evaluation_delay: int, complete: int | None, max_delay: int
) -> Window | Delayed:
    """The window to judge, or why the monitor must wait (see the module docstring)."""
    target = math.floor(now) - evaluation_delay
    if complete is None:
        return Delayed("pipeline completeness unknown (no watermark for the monitor's data)", None)
    lag = target - complete
    if lag > max_delay:
        return Delayed(
            f"data complete only through {complete}, {lag} s behind the evaluation time "
            f"(more than the {max_delay} s allowed)",
            complete,
        )
    end = min(target, complete)
    return Window(end - q.window + 1, end, complete)


@dataclass(frozen=True, slots=True)
class GroupValues:
    """Per group (``names``): the time-aggregated ``value`` (NaN: nothing to judge), the
    timestamps of its oldest and newest value in the window (-1: none) and whether its
    values span the whole window (``require_full_window``)."""

    names: list[str]
    value: Floats
    first: Ints
    last: Ints
    full: npt.NDArray[np.bool_]


def _edges(frame: WindowFrame, w: Window) -> tuple[Ints, Ints]:
    values = frame.values
    if values.shape[1] == 0:
        none = np.full(values.shape[0], -1, dtype=np.int64)
        return none, none.copy()
    present = ~np.isnan(values)
    has = present.any(axis=1)
    first_col = np.argmax(present, axis=1)
    last_col = values.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)
    first = np.maximum(frame.grid[first_col], w.start)
    last = np.minimum(frame.grid[last_col] + frame.interval - 1, w.end)
    return np.where(has, first, -1).astype(np.int64), np.where(has, last, -1).astype(np.int64)


def _shifted_like(current: WindowFrame, before: WindowFrame, shift: int) -> Floats:
    """``before``'s values on ``current``'s rows (by tag set) and buckets (by time + shift)."""
    out = np.full(current.values.shape, np.nan)
    if current.grid.size == 0 or before.grid.size == 0:
        return out
    rows = {t: i for i, t in enumerate(before.tag_sets)}
    src = np.array([rows.get(t, -1) for t in current.tag_sets], dtype=np.int64)
    target = before.grid + shift
    cols = np.searchsorted(current.grid, target)
    at = np.minimum(cols, current.grid.size - 1)
    ok = (cols < current.grid.size) & (current.grid[at] == target)
    dst = np.flatnonzero(src >= 0)
    out[np.ix_(dst, cols[ok])] = before.values[np.ix_(src[dst], np.flatnonzero(ok))]
    return out


def group_values(
    q: MonitorQuery, w: Window, current: WindowFrame, before: WindowFrame | None = None
) -> GroupValues:
    """Aggregate each group's row over the window. For change monitors ``before`` is the
    answer one timeshift earlier: per bucket, ``change`` = now - then and ``pct_change`` =
    100 * (now - then) / |then| (Datadog: the difference between the series and its value
    a timeshift ago), then aggregated with the time aggregator. Presence (No Data, full
    window) follows the current window's values."""
    values = current.values
    if q.change is not None:
        then = (
            _shifted_like(current, before, q.shift)
            if before is not None
            else np.full(values.shape, np.nan)
        )
        values = change_values(values, then, q.change)
    first, last = _edges(current, w)
    slack = max(current.interval, (w.end - w.start + 1) // 10)
    full = (first >= 0) & (first <= w.start + slack) & (last >= w.end - slack)
    names = [group_name(tuple(t)) for t in current.tag_sets]
    return GroupValues(names, time_aggregate(values, q.time_agg), first, last, full)


def step(
    monitor: Monitor,
    previous: Mapping[str, GroupState],
    gv: GroupValues,
    w: Window,
    now: float,
) -> tuple[dict[str, GroupState], list[Transition]]:
    """New group states and the transitions (and renotifications) of one evaluation.

    - a group with a value (that spans the window if ``require_full_window``; that is older
      than ``new_group_delay`` for multi-alert monitors) is judged with hysteresis;
    - a group without one keeps its state, unless ``notify_no_data`` and its newest value
      (or, never seen, the monitor's last edit) is ``no_data_timeframe`` or more before the
      window end: then No Data. Window ends only advance through complete time, so a
      lagging pipeline never counts as silence;
    - Alert and No Data groups whose last notification is ``renotify_interval`` old get a
      ``renotify`` transition (same state, notified again).
    """
    d = monitor.definition
    q, opts = d.parsed, d.options
    index = {name: i for i, name in enumerate(gv.names)}
    names = sorted(set(previous) | set(gv.names))
    if not q.multi and opts.notify_no_data and "*" not in names:
        names.append("*")  # a simple monitor never seen can still go to No Data
    n = len(names)
    at = np.array([index.get(name, -1) for name in names], dtype=np.int64)
    seen = at >= 0
    pick = np.where(seen, at, 0)
    value = np.where(seen, gv.value[pick] if gv.names else np.nan, np.nan)
    first = np.where(seen, gv.first[pick] if gv.names else -1, -1)
    last = np.where(seen, gv.last[pick] if gv.names else -1, -1)
    full = np.where(seen, gv.full[pick] if gv.names else False, False)

    old = [previous.get(name, GroupState()) for name in names]
    first_seen = np.array(
        [g.first_seen if g.first_seen is not None else -1 for g in old], dtype=np.int64
    )
    first_seen = np.where((first_seen < 0) & (first >= 0), first, first_seen)
    last_seen = np.array(
        [g.last_seen if g.last_seen is not None else -1 for g in old], dtype=np.int64
    )
    last_seen = np.maximum(last_seen, last)

    judgeable = ~np.isnan(value)
    if opts.require_full_window:
        judgeable &= full
    if q.multi and opts.new_group_seconds > 0:
        judgeable &= (first_seen >= 0) & (w.end - first_seen >= opts.new_group_seconds)
    prev_codes = np.array([CODE[g.status] for g in old], dtype=np.int8)
    # Coming back from No Data is judged afresh (no hysteresis from before the silence).
    basis = np.where(prev_codes == CODE[NO_DATA], CODE[OK], prev_codes).astype(np.int8)
    judged = judge(np.where(judgeable, value, np.nan), q.op, opts.thresholds, basis)
    codes = np.where(judgeable, judged, prev_codes).astype(np.int8)
    if opts.notify_no_data:
        since = np.where(last_seen >= 0, last_seen, math.floor(monitor.modified))
        codes[w.end - since >= opts.no_data_seconds(q.window)] = CODE[NO_DATA]

    stamp = math.floor(now)
    out: dict[str, GroupState] = {}
    transitions: list[Transition] = []
    for i in range(n):
        g, status = old[i], STATES[int(codes[i])]
        v = float(value[i]) if judgeable[i] and status != NO_DATA else None
        new = replace(
            g,
            status=status,
            value=v if v is not None else g.value,
            first_seen=int(first_seen[i]) if first_seen[i] >= 0 else None,
            last_seen=int(last_seen[i]) if last_seen[i] >= 0 else None,
        )
        kind = None
        if status != g.status:
            kind = "transition"
            new = replace(
                new,
                last_change=stamp,
                last_triggered_ts=stamp if status == ALERT else g.last_triggered_ts,
                last_resolved_ts=stamp if status == OK else g.last_resolved_ts,
                last_nodata_ts=stamp if status == NO_DATA else g.last_nodata_ts,
            )
        elif (
            opts.renotify_seconds > 0
            and status in RENOTIFY_STATES
            and stamp - max(g.last_notified_ts, g.last_change) >= opts.renotify_seconds
        ):
            kind = "renotify"
        if kind is not None:
            new = replace(new, last_notified_ts=stamp)
            transitions.append(Transition(names[i], g.status, status, v, w.start, w.end, now, kind))
        if names[i] in previous or seen[i] or status != OK or kind is not None:
            out[names[i]] = new
    return out, transitions


# -- the shell ------------------------------------------------------------------------------------


@dataclass
class Summary:
    """What one :meth:`Evaluator.evaluate_once` did."""

    evaluated: int = 0
    delayed: int = 0
    transitions: int = 0
    conflicts: int = 0  # monitors edited or evaluated elsewhere meanwhile (redone next round)
    seconds: float = 0.0
    delayed_ids: list[int] = field(default_factory=list)


class Evaluator:
    """Evaluates every monitor of every org, every ``settings.interval_seconds``."""

    def __init__(
        self,
        store: StateStore,
        run_query: RunQuery,
        gate: Gate,
        notifier: Notifier,
        clock: Callable[[], float],
        settings: EvaluatorSettings,
    ) -> None:
        self._store = store
        self._run_query = run_query
        self._gate = gate
        self._notifier = notifier
        self._clock = clock
        self._settings = settings
        self._status: dict[int, EvaluationStatus] = {}
        self._lock = threading.Lock()

    def status(self) -> dict[int, EvaluationStatus]:
        """Per monitor id, the outcome of its latest evaluation by this evaluator
        (``delayed`` with the reason, or the window judged)."""
        with self._lock:
            return dict(self._status)

    def delayed(self) -> list[int]:
        """Ids of the monitors whose latest evaluation was held as delayed."""
        return sorted(i for i, s in self.status().items() if s.delayed)

    def evaluate_once(self) -> Summary:
        started = time.monotonic()
        summary = Summary()
        snapshots = self._store.all_snapshots()
        live = {s.monitor.id for s in snapshots}
        for snap in snapshots:
            try:
                self._evaluate(snap, summary)
            except MonitorStoreUnavailable:
                raise
            except Exception:  # one broken monitor must not stop the others
                log.exception("monitor %d: evaluation failed", snap.monitor.id)
        with self._lock:
            for gone in set(self._status) - live:
                del self._status[gone]
        summary.seconds = time.monotonic() - started
        return summary

    def _evaluate(self, snap: Snapshot, summary: Summary) -> None:
        m = snap.monitor
        q = m.definition.parsed
        now = self._clock()
        try:
            complete = self._gate(m.org, q.point_metrics, q.sketch_metrics)
        except Exception as exc:
            log.warning("monitor %d: gate failed: %s", m.id, exc)
            complete = None
        plan = plan_window(
            now, q, m.definition.options.delay_seconds, complete, self._settings.max_delay_seconds
        )
        if isinstance(plan, Window):
            try:
                current = self._run_query(m.org, q.expr, plan.start, plan.end)
                before = (
                    self._run_query(m.org, q.expr, plan.start - q.shift, plan.end - q.shift)
                    if q.change is not None
                    else None
                )
            except Exception as exc:  # stores unavailable, a gap: wait, never judge a guess
                plan = Delayed(f"query failed: {exc}", complete)
        if isinstance(plan, Delayed):
            status = EvaluationStatus(
                now, True, plan.reason, complete_through=plan.complete_through
            )
            self._note(m.id, status)
            summary.delayed += 1
            summary.delayed_ids.append(m.id)
            if self._store.record(snap, None, [], [], status) is None:
                summary.conflicts += 1
            return
        gv = group_values(q, plan, current, before)
        groups, transitions = step(m, snap.groups, gv, plan, now)
        targets = self._notifier.targets(m.definition.message) if transitions else []
        status = EvaluationStatus(now, False, None, plan.start, plan.end, plan.complete_through)
        recorded = self._store.record(snap, groups, transitions, targets, status)
        self._note(m.id, status)
        summary.evaluated += 1
        if recorded is None:
            summary.conflicts += 1
            return
        summary.transitions += len(recorded)
        for r in recorded:
            t = r.transition
            log.info(
                "monitor %d group %s: %s -> %s (%s, value %s, seq %d)",
                m.id,
                t.group,
                t.from_state,
                t.to_state,
                t.kind,
                t.value,
                r.seq,
            )
        if recorded and targets:
            self._notifier.kick()

    def _note(self, monitor_id: int, status: EvaluationStatus) -> None:
        with self._lock:
            self._status[monitor_id] = status

    def run(self, stop: threading.Event) -> None:
        """Evaluate every ``interval_seconds`` until ``stop`` is set; the notifier delivers
        in a thread of its own, so a slow webhook never delays an evaluation."""
        delivery = threading.Thread(
            target=self._notifier.run, args=(stop,), name="webhook-delivery", daemon=True
        )
        delivery.start()
        interval = self._settings.interval_seconds
        while not stop.is_set():
            started = time.monotonic()
            try:
                summary = self.evaluate_once()
                log.debug("evaluation round: %s", summary)
            except MonitorStoreUnavailable as exc:
                log.warning("evaluation round skipped: %s", exc)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
        self._notifier.kick()  # let the delivery loop see ``stop`` at once
        delivery.join(timeout=10)
