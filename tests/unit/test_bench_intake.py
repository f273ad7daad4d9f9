"""bench/bench_intake.py still drives the intake code it measures (not its speed)."""

from __future__ import annotations

import gzip
import time

import numpy as np

from bench.bench_intake import POINTS_PER_REQUEST, parsers, run, shape_points
from bench.workload import v2_body


def test_requests_cycle_through_distinct_series_and_are_parsed() -> None:
    now = int(time.time())
    requests = shape_points(1, now, 1, series=3000)
    assert len(requests) == 3 and all(len(r) == POINTS_PER_REQUEST for r in requests)
    rows = np.concatenate([r.row for r in requests])
    assert np.unique(rows).size == 3000  # every series once per round
    parse_v2, _ = parsers()
    wires = [gzip.compress(v2_body(r)) for r in requests]
    rate, _faults = run(parse_v2, wires, "gzip", 4, now, cold=False)
    assert rate > 0  # points were accepted (0 if every point had been refused)


def test_the_default_shapes_are_one_request_of_one_thousand_points() -> None:
    for per_series in (1, 10):
        requests = shape_points(1, int(time.time()), per_series)
        assert len(requests) == 1 and len(requests[0]) == POINTS_PER_REQUEST
