"""Per-request time budget, parallel fan-out to store instances, and partial-answer warnings.

A query request runs inside :func:`request_scope`, which sets two context variables for
everything the request calls, including work handed to the fan-out pool:

- the **deadline**: every store request takes ``min(store timeout, time left)`` as its
  timeout and is not started once the budget is spent (:class:`BudgetExceeded`, HTTP 504),
  so a slow or hung instance cannot hold a request past its budget;
- the **warnings**: code that answers with part of the data missing (an instance down, a
  partition without an owner, one of several queries failing) records what is missing with
  :func:`warn`. The routes put the warnings in the response (``message``/``errors`` field and
  the ``X-Strata-Warnings`` header). A partial answer is never silent.

:func:`parallel` runs independent calls (one per store instance, one per metric query) on a
shared thread pool: the store clients block on sockets, so threads overlap the waiting. When
the budget runs out, calls not yet started are cancelled and the request fails with
:class:`BudgetExceeded`; calls in flight end at their (budget-capped) socket timeouts.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

WARNINGS_HEADER = "X-Strata-Warnings"
# A store down for an hour under busy dashboards gives the same warning thousands of times.
LOG_INTERVAL_SECONDS = 60.0
# Threads waiting on store sockets, not computing: more than cores is the point.
POOL_SIZE = 32


class BudgetExceeded(RuntimeError):
    """The request used up its time budget before every store answered."""


@dataclass
class RequestScope:
    deadline: float  # time.monotonic() value
    budget: float
    warnings: list[str] = field(default_factory=list)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


_scope: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "strata_request_scope", default=None
)
_pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="fanout")


class LogThrottle:
    """At most one log line per distinct message per ``interval`` seconds; the next line
    of a message says how many times it was left out. Thread-safe (warnings come from the
    fan-out pool); remembers at most ``max_messages`` messages, forgetting expired ones."""

    def __init__(self, interval: float, max_messages: int = 1024) -> None:
        self._interval = interval
        self._max = max_messages
        self._lock = threading.Lock()
        self._seen: dict[str, list[float]] = {}  # message -> [last logged at, left out]

    def admit(self, message: str, now: float) -> int | None:
        """None: do not log ``message`` now. Otherwise log it, and the number is how many
        times it was left out since its last line."""
        with self._lock:
            entry = self._seen.get(message)
            if entry is not None and now - entry[0] < self._interval:
                entry[1] += 1
                return None
            if entry is None and len(self._seen) >= self._max:
                self._forget(now)
            self._seen[message] = [now, 0]
            return 0 if entry is None else int(entry[1])

    def _forget(self, now: float) -> None:
        expired = [m for m, (at, _) in self._seen.items() if now - at >= self._interval]
        # An expired message loses nothing (its next occurrence is logged anyway) but its
        # count of left-out lines. Over max_messages distinct ones within one interval, the
        # oldest half go: their next occurrence is logged again, early.
        for m in expired or list(self._seen)[: self._max // 2]:
            del self._seen[m]


_log_throttle = LogThrottle(LOG_INTERVAL_SECONDS)
_clock = time.monotonic  # the throttle's; tests replace it


@contextmanager
def request_scope(budget_seconds: float) -> Iterator[RequestScope]:
    """Run the body with a deadline ``budget_seconds`` from now and a fresh warning list."""
    scope = RequestScope(time.monotonic() + budget_seconds, budget_seconds)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def current() -> RequestScope | None:
    return _scope.get()


def timeout_for(default: float) -> float:
    """The timeout of one store call: ``default`` capped by the time left in the request.
    Raises :class:`BudgetExceeded` when nothing is left."""
    scope = _scope.get()
    if scope is None:
        return default
    left = scope.remaining()
    if left <= 0:
        raise BudgetExceeded(f"the query used up its time budget of {scope.budget:g} s")
    return min(default, left)


def warn(message: str) -> None:
    """Record that the answer is missing something (outside a request scope: ignored,
    since nobody would read it; such callers get complete answers or errors)."""
    scope = _scope.get()
    if scope is not None and message not in scope.warnings:
        scope.warnings.append(message)
        # The client sees it in the answer; the operator, who is asked why a graph had a
        # gap, sees it here (store names, metrics and partitions only: never a key), once a
        # minute per distinct warning.
        left_out = _log_throttle.admit(message, _clock())
        if left_out:
            log.warning(
                "partial answer: %s (and %d more times since its last line)", message, left_out
            )
        elif left_out == 0:
            log.warning("partial answer: %s", message)


def warnings() -> list[str]:
    scope = _scope.get()
    return list(scope.warnings) if scope is not None else []


def parallel(calls: Sequence[Callable[[], T]]) -> list[T | Exception]:
    """Run ``calls`` concurrently (in the caller's context: deadline and warnings are
    shared) and return each result or the exception it raised, in order.

    Raises :class:`BudgetExceeded` when the request's budget runs out first (calls not
    started are cancelled). A single call runs inline: no thread hop for the common case.
    """
    if len(calls) <= 1:
        return [_capture(c) for c in calls]
    futures: list[Future[T | Exception]] = [
        _pool.submit(contextvars.copy_context().run, _capture, c) for c in calls
    ]
    scope = _scope.get()
    timeout = max(0.0, scope.remaining()) if scope is not None else None
    _, pending = wait(futures, timeout=timeout, return_when=FIRST_EXCEPTION)
    if pending:
        for f in pending:
            f.cancel()
        assert scope is not None
        raise BudgetExceeded(f"the query used up its time budget of {scope.budget:g} s")
    return [f.result() for f in futures]


def _capture(call: Callable[[], T]) -> T | Exception:
    try:
        return call()
    except Exception as exc:  # returned to the caller, who decides per call
        return exc
