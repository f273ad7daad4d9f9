"""Monitor queries and definitions (query/monitors.py): a golden table of valid queries with
their parts and of invalid ones with their message and position, the threshold
consistency rules against an independent formulation, option defaults, update merging, and
the Monitor JSON through the official client's deserializer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from datadog_api_client import Configuration
from datadog_api_client.model_utils import validate_and_convert_types
from datadog_api_client.v1.model.monitor import Monitor as ClientMonitor
from hypothesis import given
from hypothesis import strategies as st

from query import ast
from query.language import QuerySyntaxError
from query.monitors import (
    ALERT,
    OK,
    EvaluationStatus,
    GroupState,
    InvalidMonitor,
    Monitor,
    Thresholds,
    apply_update,
    check_thresholds,
    overall_state,
    parse_monitor_query,
    validate_definition,
)

# query -> (time_agg, window s, change, shift s, op, threshold, metrics, group_by, scope tags)
VALID: dict[str, tuple[Any, ...]] = {
    "avg(last_5m):avg:cpu{env:prod} by {host} > 80": (
        "avg",
        300,
        None,
        0,
        ">",
        80.0,
        ("cpu",),
        ("host",),
        {"env:prod"},
    ),
    "min(last_1m):min:heartbeat.ok{*} < 1": (
        "min",
        60,
        None,
        0,
        "<",
        1.0,
        ("heartbeat.ok",),
        (),
        set(),
    ),
    "max(last_1h):max:disk.used{host:Web-1,env:Prod} >= 0.9": (
        "max",
        3600,
        None,
        0,
        ">=",
        0.9,
        ("disk.used",),
        (),
        {"host:Web-1", "env:prod"},
    ),
    "sum(last_1d):sum:errors{service:api}.as_count() <= 10": (
        "sum",
        86400,
        None,
        0,
        "<=",
        10.0,
        ("errors",),
        (),
        {"service:api"},
    ),
    "avg(last_1w):avg:x{*} > -2.5": ("avg", 604800, None, 0, ">", -2.5, ("x",), (), set()),
    "AVG(last_15m):avg:x{*}>1e3": ("avg", 900, None, 0, ">", 1000.0, ("x",), (), set()),
    "  avg ( last_2h ) : avg:x{a:b OR c:d} by {a} < .5  ": (
        "avg",
        7200,
        None,
        0,
        "<",
        0.5,
        ("x",),
        ("a",),
        {"a:b", "c:d"},
    ),
    "avg(last_5m):sum:a{env:prod} by {host} / sum:b{env:prod} by {host} * 100 > 50": (
        "avg",
        300,
        None,
        0,
        ">",
        50.0,
        ("a", "b"),
        ("host",),
        {"env:prod"},
    ),
    "avg(last_10m):abs(avg:x{!env:dev}) > 3": ("avg", 600, None, 0, ">", 3.0, ("x",), (), set()),
    "change(avg(last_5m),last_5m):avg:system.load.1{*} > 2": (
        "avg",
        300,
        "change",
        300,
        ">",
        2.0,
        ("system.load.1",),
        (),
        set(),
    ),
    "pct_change(avg(last_5m),last_1h):sum:requests{*} by {dc} <= -50": (
        "avg",
        300,
        "pct_change",
        3600,
        "<=",
        -50.0,
        ("requests",),
        ("dc",),
        set(),
    ),
    "change( max( last_1h ) , 1h_ago ):max:q{env:a} < 0": (
        "max",
        3600,
        "change",
        3600,
        "<",
        0.0,
        ("q",),
        (),
        {"env:a"},
    ),
    "pct_change(sum(last_1d),1d_ago):sum:x{*} > 10": (
        "sum",
        86400,
        "pct_change",
        86400,
        ">",
        10.0,
        ("x",),
        (),
        set(),
    ),
    "change(min(last_30m),5m_ago):min:x{*} >= 1": (
        "min",
        1800,
        "change",
        300,
        ">=",
        1.0,
        ("x",),
        (),
        set(),
    ),
}

# query -> (message without the position, position)
INVALID: dict[str, tuple[str, int]] = {
    "": ("unknown time aggregator end; expected one of avg, sum, min, max, change, pct_change", 0),
    "median(last_5m):avg:x{*} > 1": (
        "unknown time aggregator 'median'; expected one of avg, sum, min, max, change, pct_change",
        0,
    ),
    "avg:x{*} > 1": ("expected '(' after avg but found ':x{*} > 1'", 3),
    "avg(last_5x):avg:x{*} > 1": (
        "expected a time window like last_5m, last_1h or last_1d but found 'last_5x):avg:x{*} > '",
        4,
    ),
    "avg(5m):avg:x{*} > 1": (
        "expected a time window like last_5m, last_1h or last_1d but found '5m):avg:x{*} > 1'",
        4,
    ),
    "avg(last_0m):avg:x{*} > 1": (
        "a time window like last_5m, last_1h or last_1d must be between 1 minute and 1 week",
        4,
    ),
    "avg(last_8d):avg:x{*} > 1": (
        "a time window like last_5m, last_1h or last_1d must be between 1 minute and 1 week",
        4,
    ),
    "avg(last_5m) avg:x{*} > 1": (
        "expected ':' after the time aggregation but found 'avg:x{*} > 1'",
        13,
    ),
    "avg(last_5m:avg:x{*} > 1": (
        "expected ')' after the time window but found ':avg:x{*} > 1'",
        11,
    ),
    "avg(last_5m):avg:x{*}": ("expected a comparison like '> 80' at the end of the query", 21),
    "avg(last_5m):avg:x{*} > ": ("expected a comparison like '> 80' at the end of the query", 24),
    "avg(last_5m):avg:x{*} > abc": (
        "expected a comparison like '> 80' at the end of the query",
        27,
    ),
    "avg(last_5m):avg:x{*} == 1": ("operator '==' is not supported; use >, >=, < or <=", 22),
    "avg(last_5m):avg:x{*} != 1": ("operator '!=' is not supported; use >, >=, < or <=", 22),
    "avg(last_5m): > 1": ("expected a metric query before the comparison", 13),
    "avg(last_5m):2 * 3 > 1": ("the monitor query needs at least one metric query", 13),
    # errors inside the metric expression are at their place in the whole monitor query
    "avg(last_5m):avg:x{*}.rollup(median) > 1": (
        "unknown rollup method 'median'; expected one of avg, sum, min, max, count",
        29,
    ),
    "avg(last_5m):avg:x{a, b OR c} > 1": (
        "cannot mix '!' or ',' with AND/OR/NOT in one scope; use 'NOT' and 'AND' instead",
        24,
    ),
    "change(last_5m):avg:x{*} > 1": (
        "change() takes a time aggregation and a timeshift, like change(avg(last_5m),last_1h)",
        7,
    ),
    "change(avg(last_5m)):avg:x{*} > 1": (
        "expected ',' and a timeshift in change() but found '):avg:x{*} > 1'",
        19,
    ),
    "pct_change(avg(last_5m),5x_ago):avg:x{*} > 1": (
        "expected a timeshift like 5m_ago, 1h_ago or last_1h but found '5x_ago):avg:x{*} > 1'",
        24,
    ),
    "change(avg(last_5m),9w_ago):avg:x{*} > 1": (
        "a timeshift like 5m_ago, 1h_ago or last_1h must be between 1 minute and 1 week",
        20,
    ),
    "change(median(last_5m),5m_ago):avg:x{*} > 1": (
        "unknown time aggregator 'median'; expected one of avg, sum, min, max",
        7,
    ),
}


@pytest.mark.parametrize("text", sorted(VALID))
def test_valid_queries(text: str) -> None:
    q = parse_monitor_query(text)
    agg, window, change, shift, op, threshold, metrics, by, scope = VALID[text]
    got = (q.time_agg, q.window, q.change, q.shift, q.op, q.threshold, q.metrics, q.group_by)
    assert got == (agg, window, change, shift, op, threshold, metrics, by)
    assert q.scope_tags == frozenset(scope)
    assert q.multi == bool(by)
    assert ast.metric_queries(q.expr)[0].metric == metrics[0]


@pytest.mark.parametrize("text", sorted(INVALID))
def test_invalid_queries_name_the_position(text: str) -> None:
    message, position = INVALID[text]
    with pytest.raises(QuerySyntaxError) as err:
        parse_monitor_query(text)
    assert (err.value.message, err.value.position) == (message, position)
    assert str(err.value) == f"{message} at position {position}"


def test_percentile_queries_read_sketches_and_others_points() -> None:
    q = parse_monitor_query("max(last_5m):p95:latency{*} by {host} / avg:load{*} by {host} > 2")
    assert q.metrics == ("latency", "load")
    assert (q.point_metrics, q.sketch_metrics) == (("load",), ("latency",))
    both = parse_monitor_query("avg(last_5m):p99:latency{*} - avg:latency{*} > 1")
    assert (both.point_metrics, both.sketch_metrics) == (("latency",), ("latency",))


def test_the_golden_table_is_large_and_covers_every_aggregator_and_operator() -> None:
    assert len(VALID) + len(INVALID) >= 35
    parsed = [parse_monitor_query(t) for t in VALID]
    assert {q.time_agg for q in parsed} == {"avg", "sum", "min", "max"}
    assert {q.change for q in parsed} == {None, "change", "pct_change"}
    assert {q.op for q in parsed} == {">", ">=", "<", "<="}


# -- thresholds -------------------------------------------------------------------------------


def reference_valid(op: str, t: Thresholds) -> bool:
    """Independent formulation: with s = +1 for alerts above and -1 below, a warning
    must be strictly less severe than critical (s * (critical - warning) > 0), and a
    recovery threshold strictly on the safe side of what it recovers from."""
    s = 1.0 if op in (">", ">=") else -1.0
    if t.warning is not None and not s * (t.critical - t.warning) > 0:
        return False
    if t.critical_recovery is not None and not s * (t.critical - t.critical_recovery) > 0:
        return False
    if t.warning_recovery is None:
        return True
    return t.warning is not None and s * (t.warning - t.warning_recovery) > 0


THRESHOLD_CASES = [
    # (op, critical, warning, critical_recovery, warning_recovery, error or None)
    (">", 80, 60, 70, 50, None),  # Datadog's documented example
    (
        ">",
        80,
        90,
        None,
        None,
        "options.thresholds.warning (90) must be below "
        "options.thresholds.critical (80) for a monitor alerting on '>'",
    ),
    (
        ">",
        80,
        80,
        None,
        None,
        "options.thresholds.warning (80) must be below "
        "options.thresholds.critical (80) for a monitor alerting on '>'",
    ),
    (
        ">=",
        80,
        None,
        85,
        None,
        "options.thresholds.critical_recovery (85) must be below "
        "options.thresholds.critical (80) for a monitor alerting on '>='",
    ),
    (
        ">",
        80,
        60,
        None,
        65,
        "options.thresholds.warning_recovery (65) must be below "
        "options.thresholds.warning (60) for a monitor alerting on '>'",
    ),
    (
        ">",
        80,
        None,
        None,
        50,
        "options.thresholds.warning_recovery needs options.thresholds.warning",
    ),
    ("<", 1, 5, 3, 8, None),
    (
        "<",
        1,
        0.5,
        None,
        None,
        "options.thresholds.warning (0.5) must be above "
        "options.thresholds.critical (1) for a monitor alerting on '<'",
    ),
    (
        "<=",
        1,
        None,
        0,
        None,
        "options.thresholds.critical_recovery (0) must be above "
        "options.thresholds.critical (1) for a monitor alerting on '<='",
    ),
    (
        "<",
        1,
        5,
        None,
        4,
        "options.thresholds.warning_recovery (4) must be above "
        "options.thresholds.warning (5) for a monitor alerting on '<'",
    ),
    (
        ">",
        80,
        60,
        50,
        70,
        "options.thresholds.warning_recovery (70) must be below "
        "options.thresholds.warning (60) for a monitor alerting on '>'",
    ),
    (">", 80, 60, 55, 50, None),  # critical recovery below the warning: allowed
]


@pytest.mark.parametrize("case", THRESHOLD_CASES)
def test_threshold_rules(case: tuple[Any, ...]) -> None:
    op, c, w, cr, wr, error = case
    t = Thresholds(c, w, cr, wr)
    assert reference_valid(op, t) == (error is None)
    if error is None:
        check_thresholds(op, t)
    else:
        with pytest.raises(InvalidMonitor) as err:
            check_thresholds(op, t)
        assert str(err.value) == error


small = st.one_of(st.none(), st.integers(-3, 3).map(float))


@given(
    st.sampled_from([">", ">=", "<", "<="]),
    st.integers(-3, 3).map(float),
    small,
    small,
    small,
)
def test_threshold_rules_match_the_reference(
    op: str, c: float, w: float | None, cr: float | None, wr: float | None
) -> None:
    t = Thresholds(c, w, cr, wr)
    try:
        check_thresholds(op, t)
        ok = True
    except InvalidMonitor:
        ok = False
    assert ok == reference_valid(op, t)


# -- definitions ------------------------------------------------------------------------------


def body(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": "cpu high",
        "type": "metric alert",
        "query": "avg(last_5m):avg:cpu{env:prod} by {host} > 80",
        "message": "CPU is high @webhook-ops",
        "tags": ["team:infra"],
        "options": {"thresholds": {"critical": 80, "warning": 60}, "notify_no_data": True},
    }
    out.update(overrides)
    return out


def test_definition_defaults_and_effective_options() -> None:
    d = validate_definition(body())
    o = d.options
    assert (d.name, d.type, d.tags, d.priority) == (
        "cpu high",
        "metric alert",
        ("team:infra",),
        None,
    )
    assert o.thresholds == Thresholds(80.0, 60.0)
    assert (o.notify_no_data, o.no_data_timeframe, o.require_full_window) == (True, None, False)
    assert o.no_data_seconds(300) == 600  # 2 x the window
    assert o.no_data_seconds(30) == 120  # at least 2 minutes
    assert (o.delay_seconds, o.new_group_seconds, o.renotify_seconds) == (0, 0, 0)
    # Without options the critical threshold comes from the query.
    bare = validate_definition({"type": "query alert", "query": "max(last_1m):max:x{*} < 3"})
    assert bare.options.thresholds == Thresholds(3.0) and bare.name == "max(last_1m):max:x{*} < 3"
    timed = validate_definition(
        body(
            options={
                "no_data_timeframe": 10,
                "evaluation_delay": 60,
                "new_group_delay": 30,
                "renotify_interval": 5,
                "require_full_window": True,
            }
        )
    )
    t = timed.options
    assert (t.no_data_seconds(300), t.delay_seconds, t.new_group_seconds, t.renotify_seconds) == (
        600,
        60,
        30,
        300,
    )
    assert t.require_full_window and t.thresholds == Thresholds(80.0)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        (
            {"query": "avg(last_5m):avg:cpu{*} >"},
            "query: expected a comparison like '> 80' at the end of the query at position 25",
        ),
        (
            {"type": "log alert"},
            "type: 'log alert' is not supported; expected one of metric alert, query alert",
        ),
        ({"type": None}, "type: field required"),
        ({"query": None}, "query: field required"),
        (
            {"options": {"thresholds": {"critical": 90}}},
            "options.thresholds.critical (90) must equal the threshold of the query (80)",
        ),
        (
            {"options": {"thresholds": {"critical": 80, "warning": "high"}}},
            "options.thresholds.warning: Input should be a valid number, unable to parse string "
            "as a number",
        ),
        (
            {"options": {"no_data_timeframe": 0}},
            "options.no_data_timeframe: Input should be greater than or equal to 1",
        ),
        (
            {"options": {"evaluation_delay": -1}},
            "options.evaluation_delay: Input should be greater than or equal to 0",
        ),
        ({"priority": 9}, "priority: Input should be less than or equal to 5"),
        ({"tags": ["ok", ""]}, "tags[1]: String should have at least 1 character"),
        (
            {"options": {"thresholds": {"critical": 80, "warning": 95}}},
            "options.thresholds.warning (95) must be below options.thresholds.critical (80) for "
            "a monitor alerting on '>'",
        ),
    ],
)
def test_invalid_definitions_name_the_field(overrides: dict[str, Any], error: str) -> None:
    raw = {k: v for k, v in body(**overrides).items() if v is not None}
    with pytest.raises(InvalidMonitor) as err:
        validate_definition(raw)
    assert str(err.value) == error


def test_not_an_object() -> None:
    with pytest.raises(InvalidMonitor, match=r"^body: expected a JSON object$"):
        validate_definition(["query"])


def test_update_replaces_present_fields_and_keeps_the_rest() -> None:
    base = validate_definition(body(priority=2))
    renamed = apply_update(base, {"name": "renamed", "priority": None})
    assert renamed.name == "renamed" and renamed.priority is None
    assert renamed.query == base.query and renamed.options == base.options
    # A new query brings its threshold as critical; kept warnings must still be consistent.
    moved = apply_update(base, {"query": "avg(last_5m):avg:cpu{env:prod} by {host} > 90"})
    assert moved.options.thresholds == Thresholds(90.0, 60.0)
    with pytest.raises(InvalidMonitor, match="warning \\(60\\) must be above"):
        apply_update(base, {"query": "avg(last_5m):avg:cpu{*} < 70"})
    # options, when sent, replace all options (as at Datadog)
    replaced = apply_update(base, {"options": {"renotify_interval": 10}})
    assert replaced.options.thresholds == Thresholds(80.0)
    assert not replaced.options.notify_no_data and replaced.options.renotify_interval == 10
    # read-only fields sent back by the client are ignored
    same = apply_update(base, {"id": 7, "overall_state": "OK", "multi": False})
    assert same == base


def deserialize(payload: Any) -> Any:
    return validate_and_convert_types(  # type: ignore[no-untyped-call]
        json.loads(json.dumps(payload)),
        (ClientMonitor,),
        ["received_data"],
        True,
        True,
        Configuration(),  # type: ignore[no-untyped-call]
    )


def test_monitor_json_deserializes_with_the_official_client() -> None:
    d = validate_definition(
        body(
            options={
                "thresholds": {"critical": 80, "critical_recovery": 70},
                "renotify_interval": 15,
            }
        )
    )
    m = Monitor(42, "acme", d, 1_700_000_000.25, 1_700_000_100.0)
    groups = {
        "host:b": GroupState(status=ALERT, last_triggered_ts=1_700_000_050, value=91.0),
        "host:a": GroupState(status=OK),
    }
    evaluation = EvaluationStatus(1_700_000_101.5, True, "pipeline lagging", complete_through=5)
    payload = m.to_api(groups, evaluation)
    parsed = deserialize(payload)
    assert parsed.id == 42 and parsed.name == "cpu high" and parsed.multi is True
    assert str(parsed.type) == "metric alert" and str(parsed.overall_state) == "Alert"
    assert parsed.created.timestamp() == 1_700_000_000.25
    assert parsed.modified.timestamp() == 1_700_000_100.0
    assert parsed.options.thresholds.critical == 80.0
    assert parsed.options.thresholds.critical_recovery == 70.0
    assert parsed.options.renotify_interval == 15
    assert parsed.creator.handle == "acme"
    assert list(parsed.state.groups) == ["host:a", "host:b"]
    assert str(parsed.state.groups["host:b"].status) == "Alert"
    assert parsed.state.groups["host:b"].last_triggered_ts == 1_700_000_050
    assert payload["state"]["evaluation"]["delayed"] is True
    only_alerts = m.to_api(groups, None, group_states=frozenset({"alert"}))
    assert list(only_alerts["state"]["groups"]) == ["host:b"]
    assert "evaluation" not in only_alerts["state"]


def test_overall_state_is_the_most_severe() -> None:
    def states(*names: str) -> dict[str, GroupState]:
        return {str(i): GroupState(status=s) for i, s in enumerate(names)}

    assert overall_state({}) == "No Data"
    assert overall_state(states("OK", "OK")) == "OK"
    assert overall_state(states("OK", "No Data")) == "No Data"
    assert overall_state(states("No Data", "Warn", "OK")) == "Warn"
    assert overall_state(states("Warn", "Alert", "No Data")) == "Alert"


def test_records_round_trip() -> None:
    d = validate_definition(body())
    m = Monitor(3, "acme", d, 10.5, 20.0)
    assert Monitor.from_record(json.loads(json.dumps(m.to_record()))) == m
    g = GroupState(status=ALERT, value=1.5, first_seen=3, last_seen=9, last_triggered_ts=9)
    assert GroupState.from_json(json.loads(json.dumps(g.to_json()))) == g
