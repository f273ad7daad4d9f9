"""Datadog v1 response bodies, shaped so the official ``datadog-api-client`` deserializes
them (``MetricsQueryResponse``, ``MetricsListResponse``); unit tests check exactly that.

Times in a query response are milliseconds; ``pointlist`` entries are ``[ts_ms, value]``
floats; ``interval`` is the rollup step in seconds (what Datadog sends, whatever the client
docstring says); ``unit`` is ``[null, null]`` (Strata keeps no metric metadata yet).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from query.plan import GroupSeries, QueryResult

# Names the point tiers that served a query answer, oldest first: "archive,rocks,ram".
TIERS_HEADER = "X-Strata-Tiers"


def error_body(*messages: str) -> dict[str, list[str]]:
    return {"errors": list(messages)}


def _series(result: QueryResult, index: int, group: GroupSeries) -> dict[str, Any]:
    q = result.query
    ts_ms = (group.ts * 1000).astype(np.float64)
    # A sum can overflow to inf; JSON has no inf, and Datadog's Point admits null values.
    values = np.where(np.isfinite(group.value), group.value, np.nan)
    pointlist = [
        [t, None if v != v else v]  # v != v: NaN -> null
        for t, v in zip(ts_ms.tolist(), values.tolist(), strict=True)
    ]
    return {
        "metric": q.metric,
        "display_name": q.metric,
        "expression": q.expression(group.tag_set),
        "scope": q.scope(group.tag_set),
        "tag_set": list(group.tag_set),
        "aggr": q.aggregator.value,
        "pointlist": pointlist,
        "start": int(group.ts[0]) * 1000,
        # End of the last bucket, inclusive, in ms.
        "end": (int(group.ts[-1]) + result.interval) * 1000 - 1,
        "interval": result.interval,
        "length": len(pointlist),
        "unit": [None, None],
        "query_index": index,
        "attributes": {},
    }


def query_response(result: QueryResult, query_text: str) -> dict[str, Any]:
    """The body of ``GET /api/v1/query`` for a successful query (possibly no series)."""
    return {
        "status": "ok",
        "res_type": "time_series",
        "resp_version": 1,
        "query": query_text,
        "from_date": result.start * 1000,
        "to_date": result.end * 1000,
        "group_by": list(result.query.group_by),
        "series": [_series(result, 0, g) for g in result.series],
        "message": "",
        "values": [],
        "times": [],
    }


def metrics_list_response(start: int, metrics: list[str]) -> dict[str, Any]:
    """The body of ``GET /api/v1/metrics``; ``from`` is a string, as at Datadog."""
    return {"from": str(start), "metrics": metrics}
