"""The monitor state machine (query/monitors.py judge, heartbeat/evaluator.py): hysteresis
against a scalar reference model, time aggregation against plain Python, the window plan
(delayed when the gate lags), No Data only over complete time, new_group_delay,
require_full_window, renotify, and the Evaluator holding states while delayed — with an
in-memory store, a fake gate and a fake query over a model of the points."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartbeat.evaluator import (
    Delayed,
    Evaluator,
    GroupValues,
    Window,
    WindowFrame,
    group_values,
    plan_window,
    step,
)
from heartbeat.settings import EvaluatorSettings
from query import ast
from query.monitor_store import Snapshot, Transition, TransitionRecord
from query.monitors import (
    ALERT,
    CODE,
    NO_DATA,
    OK,
    STATES,
    WARN,
    EvaluationStatus,
    GroupState,
    Monitor,
    Thresholds,
    change_values,
    judge,
    parse_monitor_query,
    time_aggregate,
    validate_definition,
)

NAN = float("nan")
Points = dict[tuple[str, ...], dict[int, float]]

# -- judge: hysteresis -----------------------------------------------------------------------------


def ref_breach(op: str, v: float, thr: float) -> bool:
    return {">": v > thr, ">=": v >= thr, "<": v < thr, "<=": v <= thr}[op]


def ref_recovered(op: str, v: float, thr: float) -> bool:
    # Datadog's table: '>' recovers at <= recovery, '>=' at <, '<' at >=, '<=' at >.
    return {">": v <= thr, ">=": v < thr, "<": v >= thr, "<=": v > thr}[op]


def ref_next(prev: str, v: float, op: str, t: Thresholds) -> str:
    """One group, one value, written out as the documented rules."""
    if math.isnan(v):
        return prev
    if ref_breach(op, v, t.critical):
        return ALERT
    held = t.critical_recovery is not None and not ref_recovered(op, v, t.critical_recovery)
    if prev == ALERT and held:
        return ALERT
    if t.warning is not None and ref_breach(op, v, t.warning):
        return WARN
    held = t.warning_recovery is not None and not ref_recovered(op, v, t.warning_recovery)
    if prev in (ALERT, WARN) and held:
        return WARN
    return OK


def run_judge(values: list[float], op: str, t: Thresholds, start: str = OK) -> list[str]:
    state = np.array([CODE[start]], dtype=np.int8)
    out = []
    for v in values:
        state = judge(np.array([v]), op, t, state)
        out.append(STATES[int(state[0])])
    return out


def test_documented_example_with_recovery_thresholds() -> None:
    # critical 80, warning 60, critical_recovery 70, warning_recovery 50 (Datadog's example)
    t = Thresholds(80, 60, 70, 50)
    values: list[float] = [10, 65, 85, 75, 71, 70, 69, 55, 51, 50, 49, 85, 70, 45, 62, 55]
    expected = [OK, WARN, ALERT, ALERT, ALERT, WARN, WARN, WARN, WARN, OK, OK, ALERT,
                WARN, OK, WARN, WARN]  # fmt: skip
    assert run_judge(values, ">", t) == expected
    # Without recovery thresholds the same values flap.
    plain = Thresholds(80, 60)
    assert run_judge(values, ">", plain)[3:6] == [WARN, WARN, WARN]


def test_below_and_or_equal_operators() -> None:
    t = Thresholds(1, 5, 3, 8)  # '<': alert below 1, warn below 5, recover at >= 3 / >= 8
    assert run_judge([9, 4, 0.5, 2, 3, 6, 8, 0.9], "<", t) == [
        OK, WARN, ALERT, ALERT, WARN, WARN, OK, ALERT,
    ]  # fmt: skip
    eq = Thresholds(10, None, 5)
    assert run_judge([10, 6, 5, 4.9, 10], ">=", eq) == [ALERT, ALERT, ALERT, OK, ALERT]
    assert run_judge([10, 6, 5, 4.9], ">", eq) == [OK, OK, OK, OK]
    assert run_judge([1, 1, 1.5, 2.0, 2.1], "<=", Thresholds(1, None, 2)) == [
        ALERT, ALERT, ALERT, ALERT, OK,
    ]  # fmt: skip


def test_nan_keeps_the_previous_state() -> None:
    assert run_judge([NAN, 90, NAN, NAN, 10], ">", Thresholds(80)) == [OK, ALERT, ALERT, ALERT, OK]


thresholds = st.builds(
    lambda c, w, cr, wr: (c, w, cr, wr),
    st.integers(-5, 5),
    st.one_of(st.none(), st.integers(-5, 5)),
    st.one_of(st.none(), st.integers(-5, 5)),
    st.one_of(st.none(), st.integers(-5, 5)),
)


values_st = st.one_of(st.integers(-7, 7).map(float), st.just(NAN))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([">", ">=", "<", "<="]),
    thresholds,
    st.integers(0, 20).flatmap(
        lambda n: st.lists(st.lists(values_st, min_size=n, max_size=n), min_size=1, max_size=6)
    ),
)
def test_judge_matches_the_reference_model(
    op: str, raw: tuple[int, int | None, int | None, int | None], groups: list[list[float]]
) -> None:
    c, w, cr, wr = raw
    t = Thresholds(c, w, cr, None if w is None else wr)
    # Several groups judged at once, one column of values per evaluation, against the
    # scalar reference run over each group's sequence alone.
    codes = np.full(len(groups), CODE[OK], dtype=np.int8)
    states = [OK] * len(groups)
    for step_values in zip(*groups, strict=True):
        codes = judge(np.array(step_values), op, t, codes)
        states = [ref_next(s, v, op, t) for s, v in zip(states, step_values, strict=True)]
        assert [STATES[int(x)] for x in codes] == states


# -- aggregation over a window ---------------------------------------------------------------------


@given(
    st.lists(
        st.lists(
            st.one_of(st.just(NAN), st.integers(-100, 100).map(float)), min_size=4, max_size=4
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["avg", "sum", "min", "max"]),
)
def test_time_aggregate_matches_python(rows: list[list[float]], agg: str) -> None:
    got = time_aggregate(np.array(rows), agg)
    for row, value in zip(rows, got.tolist(), strict=True):
        present = [v for v in row if not math.isnan(v)]
        if not present:
            assert math.isnan(value)
            continue
        want = {"avg": sum(present) / len(present), "sum": sum(present), "min": min(present),
                "max": max(present)}[agg]  # fmt: skip
        assert value == pytest.approx(want)


def test_change_values() -> None:
    now = np.array([[10.0, 12.0, NAN, 5.0]])
    then = np.array([[8.0, 0.0, 3.0, -10.0]])
    assert np.allclose(change_values(now, then, "change"), [[2.0, 12.0, NAN, 15.0]], equal_nan=True)
    assert np.allclose(
        change_values(now, then, "pct_change"), [[25.0, NAN, NAN, 150.0]], equal_nan=True
    )


# -- the window plan -------------------------------------------------------------------------------

Q5 = parse_monitor_query("avg(last_5m):avg:cpu{*} > 80")


def test_plan_window() -> None:
    assert plan_window(1000.7, Q5, 0, 1000, 120) == Window(701, 1000, 1000)
    # The gate lags a little: judge the newest complete window, not the live edge.
    assert plan_window(1000.0, Q5, 0, 950, 120) == Window(651, 950, 950)
    # evaluation_delay moves the target back; a gate ahead of it does not matter.
    assert plan_window(1000.0, Q5, 300, 990, 120) == Window(401, 700, 990)
    # ... and lag counts from the target: 200 s behind now is fine with a 300 s delay.
    assert plan_window(1000.0, Q5, 300, 800, 120) == Window(401, 700, 800)
    late = plan_window(1000.0, Q5, 0, 879, 120)
    assert isinstance(late, Delayed) and late.complete_through == 879
    assert "121 s behind" in late.reason
    unknown = plan_window(1000.0, Q5, 0, None, 120)
    assert isinstance(unknown, Delayed) and unknown.complete_through is None


# -- a model of the points and a fake query --------------------------------------------------------


def frame(
    points: Mapping[tuple[str, ...], Mapping[int, float]], start: int, end: int, interval: int = 10
) -> WindowFrame:
    """What the query engine answers: per group, the mean of its points per bucket."""
    grid = np.arange(start - start % interval, end - end % interval + 1, interval, dtype=np.int64)
    tag_sets = sorted(t for t, pts in points.items() if any(start <= ts <= end for ts in pts))
    values = np.full((len(tag_sets), grid.size), np.nan)
    for r, t in enumerate(tag_sets):
        for c, b in enumerate(grid.tolist()):
            inside = [
                v for ts, v in points[t].items() if b <= ts < b + interval and start <= ts <= end
            ]
            if inside:
                values[r, c] = sum(inside) / len(inside)
    return WindowFrame(tag_sets, values, grid, interval)


def monitor(query: str, **options: Any) -> Monitor:
    d = validate_definition({"type": "metric alert", "query": query, "options": options})
    return Monitor(1, "acme", d, 0.0, 0.0)


def evaluate_at(
    m: Monitor,
    groups: dict[str, GroupState],
    points: Mapping[tuple[str, ...], Mapping[int, float]],
    end: int,
    now: float | None = None,
) -> tuple[dict[str, GroupState], list[Transition]]:
    q = m.definition.parsed
    w = Window(end - q.window + 1, end, end)
    before = frame(points, w.start - q.shift, w.end - q.shift) if q.change else None
    gv = group_values(q, w, frame(points, w.start, w.end), before)
    return step(m, groups, gv, w, float(end) if now is None else now)


def test_multi_alert_groups_and_transitions() -> None:
    m = monitor(
        "avg(last_1m):avg:cpu{*} by {host} > 80", thresholds={"critical": 80, "warning": 50}
    )
    pts: Points = {
        ("host:a",): {t: 10.0 for t in range(0, 600, 10)},
        ("host:b",): {t: (90.0 if t >= 300 else 60.0) for t in range(0, 600, 10)},
    }
    groups: dict[str, GroupState] = {}
    groups, ts = evaluate_at(m, groups, pts, 119)
    assert {k: g.status for k, g in groups.items()} == {"host:a": OK, "host:b": WARN}
    assert [(t.group, t.from_state, t.to_state, t.value) for t in ts] == [
        ("host:b", OK, WARN, 60.0)
    ]
    groups, ts = evaluate_at(m, groups, pts, 359)
    assert [(t.group, t.to_state, t.value) for t in ts] == [("host:b", ALERT, 90.0)]
    assert groups["host:b"].last_triggered_ts == 359 and groups["host:b"].last_change == 359
    groups, ts = evaluate_at(m, groups, pts, 419)
    assert ts == [] and groups["host:b"].status == ALERT


def test_change_monitor_compares_with_the_window_a_timeshift_ago() -> None:
    m = monitor("change(avg(last_5m),last_5m):avg:q{*} > 5")
    pts: Points = {(): {t: float(t // 300) * 4 for t in range(0, 1200, 10)}}  # +4 every 5 minutes
    _, ts = evaluate_at(m, {}, pts, 599)
    assert ts == []  # change 4: OK
    pct = monitor("pct_change(avg(last_5m),last_5m):avg:q{*} >= 100")
    groups, ts = evaluate_at(pct, {}, pts, 599)  # 4 vs 0: no percentage (division by zero)
    assert ts == [] and groups["*"].value is None
    _, ts = evaluate_at(pct, {}, pts, 899)  # 8 vs 4: +100 %
    assert [(t.to_state, t.value) for t in ts] == [(ALERT, 100.0)]


def test_no_data_after_the_timeframe_of_complete_time() -> None:
    m = monitor("avg(last_1m):avg:hb{*} < 1", notify_no_data=True, no_data_timeframe=2)
    pts: Points = {(): {t: 5.0 for t in range(0, 300, 10)}}  # stops after 290
    groups, _ = evaluate_at(m, {}, pts, 299)
    assert groups["*"].status == OK and groups["*"].last_seen == 299
    for end in (359, 409):  # silent 60 s, then 110 s (< 120): state held
        groups, ts = evaluate_at(m, groups, pts, end)
        assert ts == [] and groups["*"].status == OK
    groups, ts = evaluate_at(m, groups, pts, 419)  # silent 120 s of complete time
    assert [(t.from_state, t.to_state, t.value) for t in ts] == [(OK, NO_DATA, None)]
    assert groups["*"].last_nodata_ts == 419
    pts[()][430] = 0.5  # data is back, and breaching
    groups, ts = evaluate_at(m, groups, pts, 449)
    assert [(t.from_state, t.to_state) for t in ts] == [(NO_DATA, ALERT)]


def test_without_notify_no_data_silence_holds_the_state() -> None:
    m = monitor("avg(last_1m):avg:hb{*} by {host} < 1")
    pts: Points = {("host:a",): {0: 0.0}}
    groups, _ = evaluate_at(m, {}, pts, 59)
    assert groups["host:a"].status == ALERT
    groups, ts = evaluate_at(m, groups, pts, 100_000)
    assert ts == [] and groups["host:a"].status == ALERT


def test_a_simple_monitor_never_seen_goes_to_no_data() -> None:
    m = monitor("avg(last_1m):avg:nothing{*} > 1", notify_no_data=True, no_data_timeframe=3)
    groups, ts = evaluate_at(m, {}, {}, 100)
    assert groups == {} and ts == []
    groups, ts = evaluate_at(m, groups, {}, 180)  # 180 s since the monitor was defined (t=0)
    assert [(t.group, t.to_state) for t in ts] == [("*", NO_DATA)]


def test_new_group_delay() -> None:
    m = monitor("max(last_1m):max:x{*} by {host} > 1", new_group_delay=60)
    pts: Points = {("host:a",): {t: 5.0 for t in range(100, 400, 10)}}
    groups, ts = evaluate_at(m, {}, pts, 129)  # first value at 100: too new
    assert ts == [] and groups["host:a"].status == OK and groups["host:a"].first_seen == 100
    groups, ts = evaluate_at(m, groups, pts, 159)
    assert ts == []
    groups, ts = evaluate_at(m, groups, pts, 160)  # 60 s after its first value
    assert [(t.group, t.to_state) for t in ts] == [("host:a", ALERT)]


def test_require_full_window() -> None:
    m = monitor("min(last_5m):min:x{*} < 1", require_full_window=True)
    pts: Points = {(): {t: 0.0 for t in range(200, 400, 10)}}  # starts at 200
    groups, ts = evaluate_at(m, {}, pts, 399)  # window 100..399 only two thirds covered
    assert ts == [] and groups["*"].status == OK
    groups, ts = evaluate_at(m, groups, pts, 499)  # window 200..499: ends at 390 (slack 30)
    assert ts == []
    pts[()].update({t: 0.0 for t in range(400, 600, 10)})
    groups, ts = evaluate_at(m, groups, pts, 499)
    assert [t.to_state for t in ts] == [ALERT]
    sparse = monitor("min(last_5m):min:x{*} < 1")  # without the option: judged at once
    _, ts = evaluate_at(sparse, {}, {(): {390: 0.0}}, 399)
    assert [t.to_state for t in ts] == [ALERT]


def test_renotify_interval() -> None:
    m = monitor("avg(last_1m):avg:x{*} > 1", renotify_interval=5)
    pts: Points = {(): {t: 2.0 for t in range(0, 3600, 10)}}
    groups, ts = evaluate_at(m, {}, pts, 59)
    assert [t.kind for t in ts] == ["transition"] and groups["*"].last_notified_ts == 59
    kinds = []
    for end in range(69, 1000, 10):
        groups, ts = evaluate_at(m, groups, pts, end)
        kinds += [(end, t.kind, t.from_state, t.to_state) for t in ts]
    assert kinds == [(359, "renotify", ALERT, ALERT), (659, "renotify", ALERT, ALERT),
                     (959, "renotify", ALERT, ALERT)]  # fmt: skip
    never = monitor("avg(last_1m):avg:x{*} > 1")
    groups, _ = evaluate_at(never, {}, pts, 59)
    _, ts = evaluate_at(never, groups, pts, 3000)
    assert ts == []


def test_group_values_edges_and_full_window() -> None:
    q = parse_monitor_query("avg(last_5m):avg:x{*} by {h} > 1")
    w = Window(1001, 1300, 1300)
    pts: Points = {("h:a",): {1005: 1.0, 1295: 3.0}, ("h:b",): {1100: 2.0}}
    gv: GroupValues = group_values(q, w, frame(pts, w.start, w.end))
    assert gv.names == ["h:a", "h:b"]
    assert gv.value.tolist() == [2.0, 2.0]
    assert gv.first.tolist() == [1001, 1100] and gv.last.tolist() == [1299, 1109]
    assert gv.full.tolist() == [True, False]


# -- the Evaluator: delayed hold, query failures, notifications ------------------------------------


@dataclass
class MemoryStore:
    """The evaluator's store contract in memory (record is all-or-nothing on a stale
    snapshot, as the Redis store's WATCH makes it)."""

    snaps: dict[int, Snapshot] = field(default_factory=dict)
    log: list[TransitionRecord] = field(default_factory=list)
    targets_seen: list[tuple[str, ...]] = field(default_factory=list)

    def add(self, m: Monitor) -> None:
        self.snaps[m.id] = Snapshot(m, {}, None, 0)

    def all_snapshots(self) -> list[Snapshot]:
        return list(self.snaps.values())

    def record(
        self,
        snap: Snapshot,
        groups: Mapping[str, GroupState] | None,
        transitions: Sequence[Transition],
        targets: Sequence[str],
        status: EvaluationStatus,
    ) -> list[TransitionRecord] | None:
        current = self.snaps[snap.monitor.id]
        if current.version != snap.version:
            return None
        new_groups = dict(groups) if groups is not None else current.groups
        self.snaps[snap.monitor.id] = Snapshot(snap.monitor, new_groups, status, snap.version + 1)
        out = [
            TransitionRecord(len(self.log) + i + 1, snap.monitor.id, snap.monitor.org, t,
                             tuple(targets), "pending" if targets else "none")
            for i, t in enumerate(transitions)
        ]  # fmt: skip
        self.log.extend(out)
        return out


class FakeNotifier:
    def __init__(self) -> None:
        self.kicks = 0

    def targets(self, message: str) -> list[str]:
        return ["ops"] if "@webhook-ops" in message else []

    def kick(self) -> None:
        self.kicks += 1

    def run(self, stop: threading.Event) -> None:
        stop.wait()


class Pipeline:
    """The fake pipeline: points per (org, metric, tags), a watermark per org, a clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.complete: int | None = None
        self.points: dict[tuple[str, ...], dict[int, float]] = {}
        self.fail: Exception | None = None
        self.queries: list[tuple[str, int, int]] = []

    def clock(self) -> float:
        return self.now

    def gate(self, org: str, metrics: Sequence[str], sketches: Sequence[str]) -> int | None:
        assert (metrics, sketches) == (("hb",), ())
        return self.complete

    def run_query(self, org: str, expr: ast.Expr, start: int, end: int) -> WindowFrame:
        self.queries.append((org, start, end))
        if self.fail is not None:
            raise self.fail
        # Only what the pipeline has completed is visible, like a real store behind the gate.
        limit = self.complete if self.complete is not None else -1
        visible = {t: {ts: v for ts, v in p.items() if ts <= limit} for t, p in self.points.items()}
        return frame(visible, start, end)


def evaluator(pipe: Pipeline, store: MemoryStore, notifier: FakeNotifier) -> Evaluator:
    settings = EvaluatorSettings(max_delay_seconds=120)
    return Evaluator(store, pipe.run_query, pipe.gate, notifier, pipe.clock, settings)


def test_delayed_monitors_hold_their_state_and_say_why() -> None:
    pipe, store, notifier = Pipeline(), MemoryStore(), FakeNotifier()
    d = validate_definition(
        {"type": "metric alert", "query": "min(last_1m):min:hb{*} < 1",
         "message": "heartbeat low @webhook-ops",
         "options": {"notify_no_data": True, "no_data_timeframe": 2}}
    )  # fmt: skip
    store.add(Monitor(7, "acme", d, 0.0, 0.0))
    ev = evaluator(pipe, store, notifier)
    pipe.points[()] = {t: 5.0 for t in range(0, 10_000, 5)}
    for now in range(60, 300, 10):  # a healthy pipeline, 2 s of lag
        pipe.now, pipe.complete = float(now), now - 2
        ev.evaluate_once()
    assert store.snaps[7].groups["*"].status == OK and not ev.delayed()
    # The pipeline stops confirming at 288 (a store is paused) while time goes on; points
    # are still being produced but are not visible. Never No Data, never Alert: delayed.
    assert pipe.complete == 288
    for now in range(300, 900, 10):
        pipe.now = float(now)
        summary = ev.evaluate_once()
        if now - 288 > 120:
            assert summary.delayed_ids == [7]
            status = store.snaps[7].evaluation
            assert status is not None and status.delayed and status.complete_through == 288
            assert "behind the evaluation time" in (status.reason or "")
        else:
            assert summary.delayed_ids == []
    assert ev.delayed() == [7] and ev.status()[7].delayed
    assert [r.transition.to_state for r in store.log] == []
    assert store.snaps[7].groups["*"].status == OK
    # Within max_delay the window simply ends at the watermark: judged, not delayed.
    assert all(end <= 288 for _, _, end in pipe.queries)
    # Resumed: caught up, still OK; then a real drop alerts, and recovers.
    pipe.now, pipe.complete = 900.0, 898
    ev.evaluate_once()
    assert not ev.delayed() and store.snaps[7].groups["*"].status == OK
    pipe.points[()].update({t: 0.0 for t in range(900, 1000, 5)})
    pipe.now, pipe.complete = 960.0, 958
    ev.evaluate_once()
    assert [(r.transition.from_state, r.transition.to_state) for r in store.log] == [(OK, ALERT)]
    assert store.log[0].targets == ("ops",) and notifier.kicks == 1
    pipe.now, pipe.complete = 1070.0, 1068
    ev.evaluate_once()
    assert [r.transition.to_state for r in store.log] == [ALERT, OK]


def test_no_data_is_never_declared_while_the_gate_lags_within_bounds() -> None:
    pipe, store, notifier = Pipeline(), MemoryStore(), FakeNotifier()
    d = validate_definition(
        {"type": "metric alert", "query": "avg(last_1m):avg:hb{*} > 100",
         "options": {"notify_no_data": True, "no_data_timeframe": 2}}
    )  # fmt: skip
    store.add(Monitor(1, "acme", d, 0.0, 0.0))
    ev = evaluator(pipe, store, notifier)
    pipe.points[()] = {t: 1.0 for t in range(0, 2000, 5)}
    pipe.now, pipe.complete = 100.0, 100
    ev.evaluate_once()
    # The watermark advances slowly (lag grows to 110 s, under max_delay): windows end at
    # the watermark, the data is there, nothing goes to No Data.
    for k in range(1, 12):
        pipe.now, pipe.complete = 100.0 + 20 * k, 100 + 10 * k
        ev.evaluate_once()
    assert store.log == [] and store.snaps[1].groups["*"].status == OK
    # The metric really stops (pipeline healthy): No Data once 2 min of complete time pass
    # after the end of the 10 s bucket holding its last value (300..309).
    pipe.points[()] = {t: v for t, v in pipe.points[()].items() if t <= 300}
    for now in range(320, 460, 10):
        pipe.now, pipe.complete = float(now), now
        ev.evaluate_once()
    assert [(r.transition.to_state, r.transition.window_end) for r in store.log] == [(NO_DATA, 430)]


def test_query_failures_delay_instead_of_judging() -> None:
    pipe, store, notifier = Pipeline(), MemoryStore(), FakeNotifier()
    store.add(monitor("avg(last_1m):avg:hb{*} < 1", notify_no_data=True))
    ev = evaluator(pipe, store, notifier)
    pipe.now, pipe.complete = 1000.0, 1000
    pipe.fail = RuntimeError("rocks unavailable for partition 2")
    summary = ev.evaluate_once()
    assert summary.delayed == 1 and summary.evaluated == 0
    status = store.snaps[1].evaluation
    assert status is not None and status.reason == "query failed: rocks unavailable for partition 2"
    assert store.log == [] and store.snaps[1].groups == {}


def test_a_stale_snapshot_writes_nothing() -> None:
    pipe, store, notifier = Pipeline(), MemoryStore(), FakeNotifier()
    m = monitor("avg(last_1m):avg:hb{*} < 1")
    store.add(m)
    stale = store.snaps[1]
    store.snaps[1] = replace(stale, version=5)  # evaluated elsewhere meanwhile
    assert store.record(stale, {}, [], [], EvaluationStatus(1.0, False)) is None
    pipe.now, pipe.complete = 100.0, 100
    pipe.points[()] = {50: 0.0}
    assert evaluator(pipe, store, notifier).evaluate_once().transitions == 1


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_WEBHOOKS", '{"ops": "http://127.0.0.1:9/hook"}')
    monkeypatch.setenv("STRATA_MAX_DELAY_SECONDS", "60")
    s = EvaluatorSettings.load()
    assert (s.webhooks, s.max_delay_seconds, s.interval_seconds) == (
        {"ops": "http://127.0.0.1:9/hook"}, 60, 10.0,
    )  # fmt: skip
    assert s.monitors_url == s.redis_url
    for bad in ('{"o ps": "http://x"}', '{"ops": "ftp://x"}'):
        monkeypatch.setenv("STRATA_WEBHOOKS", bad)
        with pytest.raises(ValueError, match="webhook"):
            EvaluatorSettings.load()
