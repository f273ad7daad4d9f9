"""In-memory intake counters (a later issue exposes them on /metrics).

Labels are bounded: reasons and HTTP statuses only, never orgs, metrics or keys.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from intake.rejections import RejectReason


@dataclass
class IntakeCounters:
    points_accepted: int = 0
    points_rejected: Counter[RejectReason] = field(default_factory=Counter)
    # refused whole requests by HTTP status (400, 403, 413, 415, 503)
    requests_refused: Counter[int] = field(default_factory=Counter)
    messages_produced: int = 0
    producers_replaced: int = 0
    heartbeats: int = 0

    def snapshot(self) -> dict[str, object]:
        return {
            "points_accepted": self.points_accepted,
            "points_rejected": {str(k): v for k, v in self.points_rejected.items()},
            "requests_refused": {str(k): v for k, v in self.requests_refused.items()},
            "messages_produced": self.messages_produced,
            "producers_replaced": self.producers_replaced,
            "heartbeats": self.heartbeats,
        }
