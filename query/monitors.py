"""Monitors (issue 6 item 4), the pure part: the monitor query language, the options and
their consistency rules, the :class:`Monitor` record and the JSON shape the official
``datadog-api-client`` v1 ``Monitor`` model deserializes, the state judgement with
hysteresis, and time aggregation of a window. No I/O and no clock: the Redis store is
:mod:`query.monitor_store`, the HTTP API :mod:`query.routes_monitors`, the evaluator
``heartbeat/evaluator.py`` (docs/monitors.md).

A monitor query is a metric query expression of :mod:`query.language` between a time
aggregation and a comparison, as Datadog writes them::

    avg(last_5m):avg:cpu{env:prod} by {host} > 80
    pct_change(avg(last_5m),last_1h):sum:requests{*} <= -50

Every error names the 0-based position in the monitor query text
(:class:`query.language.QuerySyntaxError`) or the JSON path of the bad field
(:class:`InvalidMonitor`), so a client can fix its input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from query import ast
from query.language import QuerySyntaxError, parse
from query.params import BadParameter

Floats = npt.NDArray[np.float64]
Codes = npt.NDArray[np.int8]

TIME_AGGREGATORS: tuple[str, ...] = ("avg", "sum", "min", "max")
CHANGE_AGGREGATORS: tuple[str, ...] = ("change", "pct_change")
OPERATORS: tuple[str, ...] = (">", ">=", "<", "<=")
MONITOR_TYPES: tuple[str, ...] = ("metric alert", "query alert")
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_WINDOW_SECONDS = 604800  # last_1w, as at Datadog
MAX_SHIFT_SECONDS = 604800
SIMPLE_GROUP = "*"  # the group name of a monitor without ``by``, as Datadog shows it

# States, as Datadog names them, and their int8 codes for the vectorised judgement.
OK, WARN, ALERT, NO_DATA = "OK", "Warn", "Alert", "No Data"
STATES: tuple[str, ...] = (OK, WARN, ALERT, NO_DATA)
CODE = {name: np.int8(i) for i, name in enumerate(STATES)}
# The overall state is the most severe group state (no group at all: No Data).
_SEVERITY = {ALERT: 3, WARN: 2, NO_DATA: 1, OK: 0}


class InvalidMonitor(BadParameter):
    """A monitor body breaks a rule; the message starts with the JSON path of the field."""


# -- the monitor query -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonitorQuery:
    """A parsed ``time_agg(window):<expr> <op> <threshold>``.

    ``change`` is ``"change"``/``"pct_change"`` for change alerts (then ``shift`` is the
    timeshift in seconds), else ``None``. ``metrics``/``group_by`` are those of ``expr``'s
    metric queries (the gate needs the metrics; multi-alert follows ``by``); ``scope_tags``
    are the exact tags written in their scopes (the list API filters on them).
    ``sketch_metrics`` are the metrics queried with a percentile (``p99:latency{*}``): they
    are read from the sketch tiers, so the gate waits for those tiers' watermarks;
    ``point_metrics`` the others, read as points.
    """

    time_agg: str
    window: int
    change: str | None
    shift: int
    expr: ast.Expr
    op: str
    threshold: float
    metrics: tuple[str, ...]
    group_by: tuple[str, ...]
    scope_tags: frozenset[str]
    point_metrics: tuple[str, ...] = ()
    sketch_metrics: tuple[str, ...] = ()

    @property
    def multi(self) -> bool:
        return bool(self.group_by)


_WS = re.compile(r"\s*")
_NAME = re.compile(r"[A-Za-z_]+")
_WINDOW = re.compile(r"last_(\d{1,6})([mhdw])")
_AGO = re.compile(r"(\d{1,6})([mhdw])_ago")
_COMPARISON = re.compile(
    r"(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip(self) -> None:
        m = _WS.match(self.text, self.pos)
        self.pos = m.end() if m else self.pos

    def here(self) -> str:
        self.skip()
        return repr(self.text[self.pos : self.pos + 20]) if self.pos < len(self.text) else "end"

    def fail(self, message: str, pos: int | None = None) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.pos if pos is None else pos)

    def expect(self, char: str, what: str) -> None:
        self.skip()
        if not self.text.startswith(char, self.pos):
            raise self.fail(f"expected {what} but found {self.here()}")
        self.pos += 1

    def name(self) -> tuple[str, int]:
        self.skip()
        m = _NAME.match(self.text, self.pos)
        if m is None:
            return "", self.pos
        self.pos = m.end()
        return m.group().lower(), m.start()

    def duration(self, pattern: re.Pattern[str], what: str, limit: int) -> int:
        self.skip()
        start = self.pos
        m = pattern.match(self.text, self.pos)
        if m is None:
            raise self.fail(f"expected {what} but found {self.here()}")
        seconds = int(m.group(1)) * UNIT_SECONDS[m.group(2)]
        if not 0 < seconds <= limit:
            raise self.fail(f"{what} must be between 1 minute and 1 week", start)
        self.pos = m.end()
        return seconds

    def window(self) -> int:
        return self.duration(
            _WINDOW, "a time window like last_5m, last_1h or last_1d", MAX_WINDOW_SECONDS
        )

    def timeshift(self) -> int:
        self.skip()
        if self.text.startswith("last_", self.pos):
            return self.duration(_WINDOW, "a timeshift like last_1h or 1h_ago", MAX_SHIFT_SECONDS)
        return self.duration(_AGO, "a timeshift like 5m_ago, 1h_ago or last_1h", MAX_SHIFT_SECONDS)


def _aggregator(s: _Scanner) -> str:
    name, at = s.name()
    if name not in TIME_AGGREGATORS:
        choices = ", ".join(TIME_AGGREGATORS)
        raise s.fail(f"unknown time aggregator {name or s.here()!r}; expected one of {choices}", at)
    return name


def parse_monitor_query(text: str) -> MonitorQuery:
    """Parse a metric monitor query or raise :class:`QuerySyntaxError` naming the position
    (in ``text``; errors inside the metric expression are moved to ``text``'s offsets)."""
    s = _Scanner(text)
    name, at = s.name()
    change: str | None = None
    shift = 0
    if name in CHANGE_AGGREGATORS:
        change = name
        s.expect("(", f"'(' after {name}")
        s.skip()
        if s.text.startswith("last_", s.pos):
            raise s.fail(
                f"{name}() takes a time aggregation and a timeshift, like "
                f"{name}(avg(last_5m),last_1h)"
            )
        time_agg = _aggregator(s)
        s.expect("(", f"'(' after {time_agg}")
        window = s.window()
        s.expect(")", "')' after the time window")
        s.expect(",", f"',' and a timeshift in {name}()")
        shift = s.timeshift()
        s.expect(")", f"')' to close {name}()")
    elif name in TIME_AGGREGATORS:
        time_agg = name
        s.expect("(", f"'(' after {name}")
        window = s.window()
        s.expect(")", "')' after the time window")
    else:
        choices = ", ".join(TIME_AGGREGATORS + CHANGE_AGGREGATORS)
        found = repr(name) if name else s.here()
        raise s.fail(f"unknown time aggregator {found}; expected one of {choices}", at)
    s.expect(":", "':' after the time aggregation")
    body_start = s.pos
    m = _COMPARISON.search(text, body_start)
    if m is None:
        raise s.fail("expected a comparison like '> 80' at the end of the query", len(text))
    op = m.group("op")
    if op not in OPERATORS:
        raise s.fail(f"operator {op!r} is not supported; use >, >=, < or <=", m.start("op"))
    threshold = float(m.group("num"))
    if not math.isfinite(threshold):
        raise s.fail("the threshold must be a finite number", m.start("num"))
    body = text[body_start : m.start()]
    if not body.strip():
        raise s.fail("expected a metric query before the comparison", body_start)
    try:
        expr = parse(body)
    except QuerySyntaxError as exc:
        raise QuerySyntaxError(exc.message, body_start + exc.position) from None
    queries = ast.metric_queries(expr)
    if not queries:
        raise s.fail("the monitor query needs at least one metric query", body_start)
    return MonitorQuery(
        time_agg=time_agg,
        window=window,
        change=change,
        shift=shift,
        expr=expr,
        op=op,
        threshold=threshold,
        metrics=tuple(dict.fromkeys(q.metric for q in queries)),
        group_by=tuple(dict.fromkeys(k for q in queries for k in q.group_by)),
        scope_tags=frozenset(t for q in queries for t in _exact_tags(q.filter)),
        point_metrics=tuple(
            dict.fromkeys(q.metric for q in queries if not isinstance(q.aggregator, ast.Percentile))
        ),
        sketch_metrics=tuple(
            dict.fromkeys(q.metric for q in queries if isinstance(q.aggregator, ast.Percentile))
        ),
    )


def _exact_tags(f: ast.Filter) -> list[str]:
    if isinstance(f, ast.Tag):
        return [f.tag]
    if isinstance(f, ast.And | ast.Or):
        return [t for arg in f.args for t in _exact_tags(arg)]
    return []  # NOT, IN, wildcards and * name no tag a monitor is "scoped" to


# -- thresholds and options ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thresholds:
    critical: float
    warning: float | None = None
    critical_recovery: float | None = None
    warning_recovery: float | None = None


def _breaches(op: str, value: float, threshold: float) -> bool:
    return bool(_compare(np.array([value]), op, threshold)[0])


def check_thresholds(op: str, t: Thresholds) -> None:
    """Datadog's consistency rules: a warning is less severe than critical, and each
    recovery threshold lies on the safe side of the threshold it recovers from (for ``>``:
    warning < critical, critical_recovery < critical, warning_recovery < warning; the
    reverse for ``<``/``<=``). Raises :class:`InvalidMonitor` naming the field."""
    where = "options.thresholds"
    side = "below" if op in (">", ">=") else "above"
    pairs = (
        ("warning", t.warning, "critical", t.critical),
        ("critical_recovery", t.critical_recovery, "critical", t.critical),
        ("warning_recovery", t.warning_recovery, "warning", t.warning),
    )
    for name, value, other, bound in pairs:
        if value is None:
            continue
        if bound is None:
            raise InvalidMonitor(f"{where}.{name} needs {where}.{other}")
        # Strictly on the safe side: the value itself must not breach the bound.
        if value == bound or _breaches(op, value, bound):
            raise InvalidMonitor(
                f"{where}.{name} ({value:g}) must be {side} {where}.{other} ({bound:g}) "
                f"for a monitor alerting on '{op}'"
            )


@dataclass(frozen=True, slots=True)
class MonitorOptions:
    """The options Strata honours, as the client sent them (``None`` = not set; the
    ``*_effective`` properties give what the evaluator uses)."""

    thresholds: Thresholds
    notify_no_data: bool = False
    no_data_timeframe: int | None = None  # minutes; default 2 x the window
    evaluation_delay: int | None = None  # seconds
    new_group_delay: int | None = None  # seconds
    require_full_window: bool = False
    renotify_interval: int | None = None  # minutes; None or 0 = never

    def no_data_seconds(self, window: int) -> int:
        if self.no_data_timeframe is not None:
            return self.no_data_timeframe * 60
        return max(120, 2 * window)

    @property
    def delay_seconds(self) -> int:
        return self.evaluation_delay or 0

    @property
    def new_group_seconds(self) -> int:
        return self.new_group_delay or 0

    @property
    def renotify_seconds(self) -> int:
        return (self.renotify_interval or 0) * 60

    def to_api(self) -> dict[str, Any]:
        t = self.thresholds
        thresholds: dict[str, float] = {"critical": t.critical}
        for name in ("warning", "critical_recovery", "warning_recovery"):
            value = getattr(t, name)
            if value is not None:
                thresholds[name] = value
        return {
            "thresholds": thresholds,
            "notify_no_data": self.notify_no_data,
            "no_data_timeframe": self.no_data_timeframe,
            "evaluation_delay": self.evaluation_delay,
            "new_group_delay": self.new_group_delay,
            "require_full_window": self.require_full_window,
            "renotify_interval": self.renotify_interval,
        }


# -- request bodies ------------------------------------------------------------------------------

Minutes = Annotated[int, Field(ge=1, le=1_000_000)]
Seconds = Annotated[int, Field(ge=0, le=86_400)]


class _Model(BaseModel):
    # Unknown fields (read-only fields sent back, options Strata does not implement) are
    # ignored, as the official client sends whole models back on update.
    model_config = ConfigDict(extra="ignore")


Finite = Annotated[float, Field(allow_inf_nan=False)]


class ThresholdsSpec(_Model):
    critical: Finite | None = None
    warning: Finite | None = None
    critical_recovery: Finite | None = None
    warning_recovery: Finite | None = None


class OptionsSpec(_Model):
    thresholds: ThresholdsSpec | None = None
    notify_no_data: bool = False
    no_data_timeframe: Minutes | None = None
    evaluation_delay: Seconds | None = None
    new_group_delay: Seconds | None = None
    require_full_window: bool = False
    renotify_interval: Annotated[int, Field(ge=0, le=1_000_000)] | None = None


Tag = Annotated[str, Field(min_length=1, max_length=200)]


class MonitorSpec(_Model):
    """A create/validate body (v1 ``Monitor``) or, with every field optional, an update
    body (v1 ``MonitorUpdateRequest``)."""

    query: Annotated[str, Field(min_length=1, max_length=8000)] | None = None
    type: str | None = None
    name: Annotated[str, Field(max_length=1000)] | None = None
    message: Annotated[str, Field(max_length=16000)] | None = None
    tags: Annotated[list[Tag], Field(max_length=100)] | None = None
    priority: Annotated[int, Field(ge=1, le=5)] | None = None
    options: OptionsSpec | None = None


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


@dataclass(frozen=True, slots=True)
class MonitorDefinition:
    """What a client defines; ``parsed`` is ``query`` parsed (not compared)."""

    name: str
    type: str
    query: str
    message: str
    tags: tuple[str, ...]
    priority: int | None
    options: MonitorOptions
    parsed: MonitorQuery = field(compare=False, repr=False)

    def to_api(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "query": self.query,
            "message": self.message,
            "tags": list(self.tags),
            "priority": self.priority,
            "options": self.options.to_api(),
        }


def _spec(body: object) -> MonitorSpec:
    if not isinstance(body, dict):
        raise InvalidMonitor("body: expected a JSON object")
    try:
        return MonitorSpec.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{_path(e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidMonitor(problems) from None


def _build(spec: MonitorSpec, base: MonitorDefinition | None) -> MonitorDefinition:
    query = spec.query if spec.query is not None else (base.query if base else None)
    mtype = spec.type if spec.type is not None else (base.type if base else None)
    if query is None:
        raise InvalidMonitor("query: field required")
    if mtype is None:
        raise InvalidMonitor("type: field required")
    if mtype not in MONITOR_TYPES:
        raise InvalidMonitor(
            f"type: {mtype[:40]!r} is not supported; expected one of {', '.join(MONITOR_TYPES)}"
        )
    try:
        parsed = parse_monitor_query(query)
    except QuerySyntaxError as exc:
        raise InvalidMonitor(f"query: {exc}") from None
    if spec.options is not None:
        opts = spec.options
        t = opts.thresholds or ThresholdsSpec()
        if t.critical is not None and t.critical != parsed.threshold:
            raise InvalidMonitor(
                f"options.thresholds.critical ({t.critical:g}) must equal the threshold of "
                f"the query ({parsed.threshold:g})"
            )
        thresholds = Thresholds(
            parsed.threshold, t.warning, t.critical_recovery, t.warning_recovery
        )
        options = MonitorOptions(
            thresholds,
            notify_no_data=opts.notify_no_data,
            no_data_timeframe=opts.no_data_timeframe,
            evaluation_delay=opts.evaluation_delay,
            new_group_delay=opts.new_group_delay,
            require_full_window=opts.require_full_window,
            renotify_interval=opts.renotify_interval,
        )
    elif base is not None:
        # The query (and so its threshold) may change without options being sent.
        options = replace(
            base.options, thresholds=replace(base.options.thresholds, critical=parsed.threshold)
        )
    else:
        options = MonitorOptions(Thresholds(parsed.threshold))
    check_thresholds(parsed.op, options.thresholds)
    return MonitorDefinition(
        name=spec.name if spec.name is not None else (base.name if base else query[:200]),
        type=mtype,
        query=query,
        message=spec.message if spec.message is not None else (base.message if base else ""),
        tags=tuple(spec.tags) if spec.tags is not None else (base.tags if base else ()),
        priority=spec.priority
        if "priority" in spec.model_fields_set
        else (base.priority if base else None),
        options=options,
        parsed=parsed,
    )


def validate_definition(body: object) -> MonitorDefinition:
    """A create/validate body as a definition, or :class:`InvalidMonitor` naming the field."""
    return _build(_spec(body), None)


def apply_update(base: MonitorDefinition, body: object) -> MonitorDefinition:
    """``base`` with the fields present in an update body replaced (``options``, when sent,
    replaces all options, as at Datadog)."""
    return _build(_spec(body), base)


# -- the monitor record and its API shape ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupState:
    """One group's evaluation state. Times are Unix seconds; ``first_seen``/``last_seen``
    are the timestamps of the group's oldest and newest value seen in evaluated (complete)
    windows; the ``last_*_ts`` fields are those of v1 ``MonitorStateGroup`` (0 = never)."""

    status: str = OK
    value: float | None = None
    first_seen: int | None = None
    last_seen: int | None = None
    last_triggered_ts: int = 0
    last_resolved_ts: int = 0
    last_nodata_ts: int = 0
    last_notified_ts: int = 0
    last_change: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "value": self.value,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "last_triggered_ts": self.last_triggered_ts,
            "last_resolved_ts": self.last_resolved_ts,
            "last_nodata_ts": self.last_nodata_ts,
            "last_notified_ts": self.last_notified_ts,
            "last_change": self.last_change,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> GroupState:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_api(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "status": self.status,
            "last_triggered_ts": self.last_triggered_ts,
            "last_resolved_ts": self.last_resolved_ts,
            "last_nodata_ts": self.last_nodata_ts,
            "last_notified_ts": self.last_notified_ts,
        }


@dataclass(frozen=True, slots=True)
class EvaluationStatus:
    """The evaluator's last word on a monitor: ``delayed`` (with the reason) when it held
    the states because the pipeline was not complete enough; the window it judged last."""

    evaluated_at: float
    delayed: bool
    reason: str | None = None
    window_start: int | None = None
    window_end: int | None = None
    complete_through: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "evaluated_at": self.evaluated_at,
            "delayed": self.delayed,
            "reason": self.reason,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "complete_through": self.complete_through,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> EvaluationStatus:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def overall_state(groups: Mapping[str, GroupState]) -> str:
    """The most severe group state (Alert > Warn > No Data > OK); No Data without groups."""
    if not groups:
        return NO_DATA
    return max((g.status for g in groups.values()), key=lambda s: _SEVERITY.get(s, 0))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Monitor:
    """A stored monitor: its integer id, owning org, definition and times (Unix seconds)."""

    id: int
    org: str
    definition: MonitorDefinition
    created: float
    modified: float

    def to_record(self) -> dict[str, Any]:
        return {
            "version": 1,
            "id": self.id,
            "org": self.org,
            "created": self.created,
            "modified": self.modified,
            "definition": self.definition.to_api(),
        }

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> Monitor:
        return cls(
            id=int(d["id"]),
            org=str(d["org"]),
            definition=validate_definition(d["definition"]),
            created=float(d["created"]),
            modified=float(d["modified"]),
        )

    def to_api(
        self,
        groups: Mapping[str, GroupState] | None = None,
        evaluation: EvaluationStatus | None = None,
        *,
        group_states: frozenset[str] | None = None,
    ) -> dict[str, Any]:
        """The v1 ``Monitor`` JSON. ``state.groups`` lists the groups whose status is in
        ``group_states`` (lower-case names, ``all`` = every group; ``None`` = every group);
        ``state.evaluation`` (a Strata extension the client keeps as an extra attribute)
        says whether evaluation is delayed by an incomplete pipeline."""
        groups = groups or {}
        wanted = group_states
        shown = {
            name: g.to_api(name)
            for name, g in sorted(groups.items())
            if wanted is None or "all" in wanted or g.status.lower() in wanted
        }
        state: dict[str, Any] = {"groups": shown}
        if evaluation is not None:
            state["evaluation"] = evaluation.to_json()
        return {
            "id": self.id,
            **self.definition.to_api(),
            "multi": self.definition.parsed.multi,
            "created": iso(self.created),
            "modified": iso(self.modified),
            "creator": {"email": "", "handle": self.org, "name": None},
            "deleted": None,
            "restricted_roles": None,
            "overall_state": overall_state(groups),
            "state": state,
        }


# -- judging ----------------------------------------------------------------------------------


def _compare(values: Floats, op: str, threshold: float) -> npt.NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        if op == ">":
            return values > threshold
        if op == ">=":
            return values >= threshold
        if op == "<":
            return values < threshold
        return values <= threshold


# The recovery condition of each alert condition (Datadog, "Recovery thresholds").
_RECOVERY_OP = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}


def judge(values: Floats, op: str, t: Thresholds, previous: Codes) -> Codes:
    """New state codes (:data:`CODE`) of groups with time-aggregated ``values``, given their
    ``previous`` codes, with hysteresis:

    - Alert when the value breaches ``critical`` (``value op critical``); Warn when it
      breaches ``warning``; else OK;
    - a group in Alert stays in Alert until the value passes ``critical_recovery`` (for
      ``>``: ``value <= critical_recovery``); a group in Alert or Warn that no longer
      breaches ``warning`` stays in Warn until the value passes ``warning_recovery``;
    - a NaN value (nothing to judge) keeps the previous code.
    """
    crit = _compare(values, op, t.critical)
    out = np.full(values.shape, CODE[OK], dtype=np.int8)
    if t.warning is not None:
        out[_compare(values, op, t.warning)] = CODE[WARN]
    out[crit] = CODE[ALERT]
    if t.critical_recovery is not None:
        recovered = _compare(values, _RECOVERY_OP[op], t.critical_recovery)
        out[(previous == CODE[ALERT]) & ~crit & ~recovered] = CODE[ALERT]
    if t.warning_recovery is not None:
        recovered = _compare(values, _RECOVERY_OP[op], t.warning_recovery)
        was = (previous == CODE[ALERT]) | (previous == CODE[WARN])
        out[was & (out == CODE[OK]) & ~recovered] = CODE[WARN]
    return np.where(np.isnan(values), previous, out).astype(np.int8)


# -- time aggregation ------------------------------------------------------------------------------


def time_aggregate(values: Floats, aggregator: str) -> Floats:
    """One number per row of ``values`` (groups x buckets, NaN = no value): ``avg``,
    ``sum``, ``min`` or ``max`` of the row's values; NaN for a row without any."""
    if values.shape[1] == 0:
        return np.full(values.shape[0], np.nan)
    present = ~np.isnan(values)
    count = present.sum(axis=1)
    zeroed = np.where(present, values, 0.0)
    with np.errstate(all="ignore"):
        if aggregator == "avg":
            out = zeroed.sum(axis=1) / count
        elif aggregator == "sum":
            out = zeroed.sum(axis=1)
        elif aggregator == "min":
            out = np.where(present, values, np.inf).min(axis=1)
        elif aggregator == "max":
            out = np.where(present, values, -np.inf).max(axis=1)
        else:
            raise ValueError(f"unknown time aggregator {aggregator!r}")
    return np.where((count > 0) & np.isfinite(out), out, np.nan).astype(np.float64)


def change_values(current: Floats, before: Floats, kind: str) -> Floats:
    """Per bucket, the change from ``before`` (the same buckets one timeshift earlier):
    ``change`` = current - before; ``pct_change`` = 100 * (current - before) / |before|
    (NaN where either is missing or ``before`` is 0)."""
    with np.errstate(all="ignore"):
        diff = current - before
        out = diff if kind == "change" else 100.0 * diff / np.abs(before)
    return np.where(np.isfinite(out), out, np.nan).astype(np.float64)


def group_name(tag_set: tuple[str, ...]) -> str:
    """Datadog's group name: the group's tags joined by ``,`` (``*`` without ``by``)."""
    return ",".join(tag_set) if tag_set else SIMPLE_GROUP
