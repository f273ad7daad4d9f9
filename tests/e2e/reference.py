"""An independent, obviously-correct model of what the pipeline should answer.

A dict of (org, metric, tag set) -> {ts: value}; no numpy, no code shared with the services.
Duplicate points follow the documented conflict rule (largest absolute value wins, ties to
the larger value), written out again here rather than imported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

SeriesKey = tuple[str, str, frozenset[str]]
Answer = dict[tuple[str, ...], dict[int, float]]

AGGREGATORS: dict[str, Callable[[list[float]], float]] = {
    "avg": lambda vs: sum(vs) / len(vs),
    "sum": lambda vs: sum(vs),
    "min": lambda vs: min(vs),
    "max": lambda vs: max(vs),
}


class ReferenceModel:
    def __init__(self) -> None:
        self.points: dict[SeriesKey, dict[int, float]] = defaultdict(dict)

    def add(self, org: str, metric: str, tags: Iterable[str], ts: int, value: float) -> None:
        series = self.points[(org, metric, frozenset(tags))]
        old = series.get(ts)
        if old is None or (abs(value), value) > (abs(old), old):
            series[ts] = value

    def metrics(self, org: str) -> set[str]:
        return {metric for (o, metric, _) in self.points if o == org}

    def expected(
        self,
        org: str,
        metric: str,
        aggregator: str,
        group_by: Iterable[str] = (),
        scope: Iterable[str] = (),
    ) -> Answer:
        """``aggregator:metric{scope} by {group_by}`` at raw resolution.

        Every group's series must carry each group-by tag key (the tests make sure), and
        timestamps are aligned so each rollup bucket holds one point per series.
        """
        keys = list(group_by)
        wanted = set(scope)
        values: dict[tuple[str, ...], dict[int, list[float]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for (o, m, tags), series in self.points.items():
            if o != org or m != metric or not wanted <= tags:
                continue
            group = tuple(sorted(t for t in tags if t.split(":", 1)[0] in keys))
            for ts, v in series.items():
                values[group][ts].append(v)
        agg = AGGREGATORS[aggregator]
        return {g: {ts: float(agg(vs)) for ts, vs in by_ts.items()} for g, by_ts in values.items()}


def parse_query_response(body: dict[str, Any]) -> Answer:
    """A Datadog v1 query response -> {tag set: {ts seconds: value}} (nulls dropped)."""
    out: Answer = {}
    for series in body.get("series") or []:
        tag_set = tuple(sorted(series.get("tag_set") or []))
        points = {int(p[0]) // 1000: float(p[1]) for p in series["pointlist"] if p[1] is not None}
        out[tag_set] = points
    return out


def assert_same(got: Answer, want: Answer, what: str) -> None:
    """Equal groups, timestamps and values (values to 1e-9 relative: sums reorder)."""
    assert want, f"{what}: the test expects nothing, so it would prove nothing"
    assert set(got) == set(want), f"{what}: groups {sorted(got)} != expected {sorted(want)}"
    for group, points in want.items():
        assert set(got[group]) == set(points), (
            f"{what} {group}: timestamps {sorted(got[group])} != expected {sorted(points)}"
        )
        for ts, value in points.items():
            g = got[group][ts]
            assert abs(g - value) <= 1e-9 * max(1.0, abs(value)), (
                f"{what} {group} @ {ts}: {g} != expected {value}"
            )
