"""The TSBS query instances of bench/bench_query.py as PromQL and InfluxQL, with answer checks.

bench/bench_query.py's :class:`~bench.bench_query.Planner` draws the instances (hosts and
windows) and :func:`~bench.bench_query.fill_expected` computes their answers from the
generated values; here each instance becomes one HTTP request to a peer asking the same
question, and the peer's answer is held against the same expected values.

Bucket semantics: bench_query's buckets are ``[t, t + step)`` with ``t`` step-aligned.
InfluxQL's ``GROUP BY time(step)`` buckets are exactly that. A PromQL range query evaluates
``f_over_time(x[step])`` at instants ``e`` over the left-open window ``(e - step, e]``: with
``e = t + step - 1`` and samples on a 10 s grid that holds the same samples as ``[t, t +
step)`` (the peer answers with ``e``; the check maps it back to ``t``).

Shapes (Datadog request in bench_query -> PromQL / InfluxQL):

- single-groupby-1-1-1: ``max_over_time(cpu_usage_user{host="H"}[60s])``, range step 60 s /
  ``SELECT max(usage_user) FROM cpu WHERE host='H' AND <1 h> GROUP BY time(1m)``.
- single-groupby-5-8-1, cpu-max-all-8, high-cpu-1 (5 or 10 metrics, a space max over 1 or
  8 hosts, step 60 s, 1 h or 300 s): PromQL drops the metric name in ``max_over_time``, so
  the per-metric expressions ``max(max_over_time(cpu_usage_<m>{host=~"H1|..."}[step]))`` are
  each tagged with ``label_replace(..., "field", "<m>", "", "")`` and joined with ``or`` into
  one query (one request, like the one v2 request) / one ``SELECT max(usage_<m>), ...``.
  high-cpu-1 asks what bench_query asks Strata (the 10 metrics at 300 s, buckets over 90
  picked by the client) although both peers could filter on the value themselves.
- double-groupby-1: ``avg by (host) (avg_over_time(cpu_usage_user[3600s]))`` /
  ``SELECT mean(usage_user) ... GROUP BY time(1h), host``.
- lastpoint: an instant query ``{__name__=~"cpu_usage_.+"}`` at the data's last second (the
  5 min lookback returns each series' last sample) / ``SELECT last(*) FROM cpu WHERE <last
  10 min> GROUP BY host``.
- groupby-orderby-limit: ``max(max_over_time(cpu_usage_user[60s]))`` over the 5 minutes /
  ``SELECT max(usage_user) FROM cpu WHERE <5 min> GROUP BY time(1m)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.bench_query import Case, DataSet
from bench.peers.line_protocol import escape_key
from bench.workload import CPU_FIELDS

F64 = npt.NDArray[np.float64]

LAST_WINDOW = 600  # lastpoint looks at the data's last 10 minutes, as bench_query does


@dataclass(frozen=True)
class PeerQuery:
    """One HTTP GET to a peer: path, parameters, and what it stands for."""

    path: str
    params: dict[str, str]
    text: str  # the PromQL / InfluxQL


def _step(case: Case) -> int:
    times: list[int] = case.expected["times"]
    return times[1] - times[0]


def _hosts_regex(hosts: Sequence[int]) -> str:
    return "|".join(f"host_{h}" for h in hosts)


# --- PromQL ---------------------------------------------------------------------------------


def promql(case: Case, ds: DataSet) -> PeerQuery:
    """The Prometheus HTTP API request for a bench_query instance."""
    e = case.expected
    if case.shape == "lastpoint":
        q = '{__name__=~"cpu_usage_.+"}'
        return PeerQuery("/api/v1/query", {"query": q, "time": str(ds.end - 1)}, q)
    step = _step(case)
    if case.shape == "single-groupby-1-1-1":
        q = f'max_over_time(cpu_usage_user{{host="host_{e["hosts"][0]}"}}[{step}s])'
    elif case.kind == "timeseries":
        sel = f'{{host=~"{_hosts_regex(e["hosts"])}"}}'
        q = " or ".join(
            f'label_replace(max(max_over_time(cpu_{f}{sel}[{step}s])), "field", "{f}", "", "")'
            for f in CPU_FIELDS[: e["metrics"]]
        )
    elif case.shape == "double-groupby-1":
        q = f"avg by (host) (avg_over_time(cpu_usage_user[{step}s]))"
    elif case.shape == "groupby-orderby-limit":
        q = f"max(max_over_time(cpu_usage_user[{step}s]))"
    else:
        raise ValueError(f"no PromQL for {case.shape}")
    times: list[int] = e["times"]
    params = {
        "query": q,
        "start": str(times[0] + step - 1),
        "end": str(times[-1] + step - 1),
        "step": str(step),
    }
    return PeerQuery("/api/v1/query_range", params, q)


def _close(got: Sequence[float], want: F64) -> bool:
    if len(got) != want.size or any(math.isnan(v) for v in got):
        return False
    return bool(np.allclose(np.array(got, dtype=np.float64), want, rtol=1e-9, atol=1e-9))


def _prom_series(case: Case, item: dict[str, Any], want: F64, label: str) -> str | None:
    step = _step(case)
    times = [int(t) - (step - 1) for t, _ in item["values"]]
    if times != case.expected["times"]:
        return f"{label}: bucket times differ: {times[:3]}... vs {case.expected['times'][:3]}..."
    if not _close([float(v) for _, v in item["values"]], want):
        return f"{label}: values differ from the generated data"
    return None


def check_prometheus(case: Case, body: dict[str, Any]) -> str | None:
    """None if the Prometheus answer equals the expected one, else what differs."""
    if body.get("status") != "success":
        return f"status {body.get('status')}: {body.get('error')}"
    result: list[dict[str, Any]] = body["data"]["result"]
    e = case.expected
    if case.shape == "lastpoint":
        want: F64 = e["values"]  # (metrics, hosts)
        if len(result) != want.size:
            return f"expected {want.size} series, got {len(result)}"
        for item in result:
            m = CPU_FIELDS.index(item["metric"]["__name__"].removeprefix("cpu_"))
            h = int(item["metric"]["host"].removeprefix("host_"))
            if not _close([float(item["value"][1])], want[m, h : h + 1]):
                return f"{item['metric']['__name__']} of host_{h}: last value differs"
        return None
    if case.shape in ("single-groupby-1-1-1", "groupby-orderby-limit"):
        if len(result) != 1:
            return f"expected 1 series, got {len(result)}"
        return _prom_series(case, result[0], e["values"], "series")
    if case.kind == "timeseries":
        by_field = {item["metric"]["field"]: item for item in result}
        fields = list(CPU_FIELDS[: e["metrics"]])
        if sorted(by_field) != sorted(fields):
            return f"expected fields {fields}, got {sorted(by_field)}"
        for i, f in enumerate(fields):
            problem = _prom_series(case, by_field[f], e["values"][i], f)
            if problem:
                return problem
        return None
    if case.shape == "double-groupby-1":
        if len(result) != e["values"].shape[0]:
            return f"expected {e['values'].shape[0]} hosts, got {len(result)}"
        for item in result:
            h = int(item["metric"]["host"].removeprefix("host_"))
            problem = _prom_series(case, item, e["values"][h], f"host_{h}")
            if problem:
                return problem
        return None
    raise ValueError(f"no check for {case.shape}")


# --- InfluxQL -------------------------------------------------------------------------------


def _where_time(lo: int, hi: int) -> str:
    return f"time >= {lo}s AND time < {hi}s"


def _host_filter(hosts: Sequence[int]) -> str:
    return "(" + " OR ".join(f"host = 'host_{h}'" for h in hosts) + ")"


def influxql(case: Case, ds: DataSet, db: str) -> PeerQuery:
    """The InfluxDB 1.x ``/query`` request for a bench_query instance."""
    e = case.expected
    if case.shape == "lastpoint":
        window = _where_time(ds.end - LAST_WINDOW, ds.end)
        q = f"SELECT last(*) FROM cpu WHERE {window} GROUP BY host"
    else:
        step = _step(case)
        times: list[int] = e["times"]
        window = _where_time(times[0], times[-1] + step)
        if case.shape == "single-groupby-1-1-1":
            q = (
                f"SELECT max(usage_user) FROM cpu WHERE host = 'host_{e['hosts'][0]}' "
                f"AND {window} GROUP BY time({step}s)"
            )
        elif case.kind == "timeseries":
            cols = ", ".join(f"max({escape_key(f)})" for f in CPU_FIELDS[: e["metrics"]])
            q = (
                f"SELECT {cols} FROM cpu WHERE {_host_filter(e['hosts'])} AND {window} "
                f"GROUP BY time({step}s)"
            )
        elif case.shape == "double-groupby-1":
            q = f"SELECT mean(usage_user) FROM cpu WHERE {window} GROUP BY time({step}s), host"
        elif case.shape == "groupby-orderby-limit":
            q = f"SELECT max(usage_user) FROM cpu WHERE {window} GROUP BY time({step}s)"
        else:
            raise ValueError(f"no InfluxQL for {case.shape}")
    return PeerQuery("/query", {"db": db, "epoch": "s", "q": q}, q)


def _influx_rows(case: Case, series: dict[str, Any], want: F64, label: str) -> str | None:
    """``want`` is (columns, buckets): column i of the answer (after time) against row i."""
    rows: list[list[Any]] = series["values"]
    times = [int(r[0]) for r in rows]
    if times != case.expected["times"]:
        return f"{label}: bucket times differ: {times[:3]}... vs {case.expected['times'][:3]}..."
    for i in range(want.shape[0]):
        col = [math.nan if r[i + 1] is None else float(r[i + 1]) for r in rows]
        if not _close(col, want[i]):
            return f"{label}: column {series['columns'][i + 1]} differs from the generated data"
    return None


def check_influx(case: Case, body: dict[str, Any]) -> str | None:
    """None if the InfluxDB answer equals the expected one, else what differs."""
    results = body.get("results", [])
    if len(results) != 1 or "error" in results[0]:
        return f"error: {body}"[:300]
    series: list[dict[str, Any]] = results[0].get("series", [])
    e = case.expected
    if case.shape == "lastpoint":
        want: F64 = e["values"]  # (metrics, hosts)
        if len(series) != want.shape[1]:
            return f"expected {want.shape[1]} hosts, got {len(series)}"
        for s in series:
            h = int(s["tags"]["host"].removeprefix("host_"))
            (row,) = s["values"]
            got = dict(zip(s["columns"], row, strict=True))
            values = [got[f"last_{f}"] for f in CPU_FIELDS]
            if not _close([float(v) for v in values], want[:, h]):
                return f"host_{h}: last values differ"
        return None
    if case.shape == "double-groupby-1":
        if len(series) != e["values"].shape[0]:
            return f"expected {e['values'].shape[0]} hosts, got {len(series)}"
        for s in series:
            h = int(s["tags"]["host"].removeprefix("host_"))
            problem = _influx_rows(case, s, e["values"][h : h + 1], f"host_{h}")
            if problem:
                return problem
        return None
    if len(series) != 1:
        return f"expected 1 series, got {len(series)}"
    want = e["values"]
    return _influx_rows(case, series[0], want.reshape(-1, want.shape[-1]), "answer")
