"""Why points are rejected, and the one-line message a client sees for each group."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RejectReason(StrEnum):
    """Bounded set of reasons (also the counter labels)."""

    NON_FINITE = "non_finite"
    TOO_NEW = "too_new"
    TOO_OLD = "too_old"
    INVALID_METRIC = "invalid_metric_name"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Accepted timestamps for one request: ``now - late <= ts <= now + future``."""

    now: int
    late_seconds: int
    future_seconds: int

    @property
    def oldest(self) -> int:
        return self.now - self.late_seconds

    @property
    def newest(self) -> int:
        return self.now + self.future_seconds


@dataclass(frozen=True, slots=True)
class Rejection:
    """``count`` points of ``metric`` (as sent) rejected for one reason."""

    metric: str
    reason: RejectReason
    count: int
    detail: str = ""  # e.g. why a metric name is invalid

    def message(self, window: TimeWindow) -> str:
        what = f"{self.count} point{'s' if self.count != 1 else ''} rejected"
        return f"metric {self.metric[:200]}: {what}: {self._why(window)}"

    def _why(self, window: TimeWindow) -> str:
        if self.reason is RejectReason.NON_FINITE:
            return "value is NaN or infinite"
        if self.reason is RejectReason.TOO_NEW:
            return f"more than {window.future_seconds}s in the future"
        if self.reason is RejectReason.TOO_OLD:
            return f"older than the {window.late_seconds}s late-data window"
        return f"invalid metric name ({self.detail})"
