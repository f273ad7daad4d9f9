"""In-memory intake counters, exposed on ``GET /metrics`` (docs/operations.md, "Metrics").

Labels are bounded: reasons and HTTP statuses only, never orgs, metrics or keys. The
counters are plain integers bumped on the event loop; :meth:`IntakeCounters.families`
reads them at scrape time (from a worker thread, hence the atomic ``dict`` copies).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import Histogram
from prometheus_client.core import Metric

from intake.rejections import RejectReason
from strata.observability import IO_BUCKETS, counter


def _produce_histogram() -> Histogram:
    # Not registered: families() yields it with the counters.
    return Histogram(
        "strata_intake_kafka_produce_duration_seconds",
        "time from producing a request's messages to the broker acknowledging all of them",
        registry=None,
        buckets=IO_BUCKETS,
    )


@dataclass
class IntakeCounters:
    points_accepted: int = 0
    points_rejected: Counter[RejectReason] = field(default_factory=Counter)
    # refused whole requests by HTTP status (400, 403, 413, 415, 503)
    requests_refused: Counter[int] = field(default_factory=Counter)
    messages_produced: int = 0
    producers_replaced: int = 0
    heartbeats: int = 0
    # failed produce_all calls by BrokerUnavailable.reason
    produce_errors: Counter[str] = field(default_factory=Counter)
    produce_seconds: Histogram = field(default_factory=_produce_histogram)

    def produced(self, seconds: float, error: str | None) -> None:
        """The producer's ``on_result``: latency of acknowledged produce calls (a coalesced
        flush, a distribution request, a heartbeat), failures by reason."""
        if error is None:
            self.produce_seconds.observe(seconds)
        else:
            self.produce_errors[error] += 1

    def snapshot(self) -> dict[str, object]:
        return {
            "points_accepted": self.points_accepted,
            "points_rejected": {str(k): v for k, v in self.points_rejected.items()},
            "requests_refused": {str(k): v for k, v in self.requests_refused.items()},
            "messages_produced": self.messages_produced,
            "producers_replaced": self.producers_replaced,
            "heartbeats": self.heartbeats,
            "produce_errors": dict(self.produce_errors),
        }

    def families(self) -> Iterator[Metric]:
        """The counters as Prometheus families; every reason appears (0 until it happens)."""
        prefix = "strata_intake"
        rejected = dict(self.points_rejected)
        yield counter(
            f"{prefix}_points_accepted", "points accepted", (), [((), self.points_accepted)]
        )
        yield counter(
            f"{prefix}_points_rejected",
            "points rejected, by reason",
            ("reason",),
            [((str(r),), rejected.get(r, 0)) for r in RejectReason],
        )
        yield counter(
            f"{prefix}_requests_refused",
            "whole requests refused, by HTTP status",
            ("status",),
            [((str(s),), n) for s, n in sorted(dict(self.requests_refused).items())],
        )
        yield counter(
            f"{prefix}_messages_produced",
            "Kafka messages acknowledged by the broker",
            (),
            [((), self.messages_produced)],
        )
        yield counter(
            f"{prefix}_kafka_produce_errors",
            "produce calls (a coalesced flush of requests, a distribution request, a "
            "heartbeat) whose messages the broker did not acknowledge, by reason",
            ("reason",),
            [((r,), n) for r, n in sorted(dict(self.produce_errors).items())],
        )
        yield counter(
            f"{prefix}_producers_replaced",
            "Kafka producers retired after a failure and replaced",
            (),
            [((), self.producers_replaced)],
        )
        yield counter(
            f"{prefix}_heartbeats",
            "heartbeats written (a marker to every partition of every topic)",
            (),
            [((), self.heartbeats)],
        )
        yield from self.produce_seconds.collect()
