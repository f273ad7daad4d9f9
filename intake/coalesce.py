"""Points of concurrent requests share Kafka messages (docs/intake.md, "Coalescing").

Each request used to produce one points message per (org, metric) it touched: with agents
sending a few points per series, messages of ~100 points, and every store, the broker and
the request's own acknowledgement paid a fixed cost per message. Requests that arrive
within ``window`` seconds of each other now go out together: their point batches are
concatenated per (topic, partition, key), so ten requests naming the same ten metrics make
ten messages instead of a hundred, and one ``produce_all`` waits for the acknowledgements
of all of them (their series announcements ride along unchanged).

What a request is promised does not change: it is answered 202 only once the broker
acknowledged every message holding its points and announcements, and 503 if any of them
failed (then every request of that flush gets 503; each client retries its own body, and
duplicates resolve by value, strata.conflict, so nothing is double-counted). A flush
closes when its window ends or once it holds ``max_points``; a window of 0 sends each
request on its own, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from intake.messages import points_values
from intake.producer import OutMessage
from strata.codec import PointBatch

#: (topic, partition, key) of a points message
Destination = tuple[str, int, bytes]


@dataclass
class _Flush:
    """Everything the requests of one window send, and their shared outcome."""

    done: asyncio.Future[None]
    points: dict[Destination, list[PointBatch]] = field(default_factory=dict)
    others: list[OutMessage] = field(default_factory=list)
    size: int = 0
    timer: asyncio.TimerHandle | None = None


def merge(batches: Sequence[PointBatch]) -> PointBatch:
    """One batch of the rows of ``batches`` (all of one org and metric), in order."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    return PointBatch(
        first.org,
        first.metric,
        np.concatenate([b.sid for b in batches]),
        np.concatenate([b.ts for b in batches]),
        np.concatenate([b.value for b in batches]),
    )


def messages_of(points: dict[Destination, list[PointBatch]]) -> list[OutMessage]:
    """The points messages of a flush: one per destination, cut where over the size limit."""
    out = []
    for (topic, partition, key), batches in points.items():
        for value in points_values(merge(batches)):
            out.append(OutMessage(topic, partition, key, value))
    return out


class Coalescer:
    """Collects the messages of concurrent requests and produces them together."""

    def __init__(
        self,
        produce: Callable[[list[OutMessage]], Awaitable[None]],
        *,
        window: float,
        max_points: int,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        self._produce = produce
        self._window = window
        self._max_points = max_points
        self._on_sent = on_sent
        self._open: _Flush | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def send(
        self, points: Sequence[tuple[Destination, PointBatch]], others: Sequence[OutMessage]
    ) -> None:
        """Return once every message holding ``points`` and ``others`` is acknowledged;
        raise what the produce raised (:class:`~intake.producer.BrokerUnavailable`)."""
        if not points and not others:
            return
        if self._window <= 0:
            flush = self._new(asyncio.get_running_loop())
            self._add(flush, points, others)
            self._close(flush)
        else:
            opened = self._open
            if opened is None:
                loop = asyncio.get_running_loop()
                opened = self._open = self._new(loop)
                opened.timer = loop.call_later(self._window, self._close, opened)
            flush = opened
            self._add(flush, points, others)
            if flush.size >= self._max_points:
                self._close(flush)
        # Shielded: a request whose client went away must not cancel the others' outcome.
        await asyncio.shield(flush.done)

    def _new(self, loop: asyncio.AbstractEventLoop) -> _Flush:
        return _Flush(loop.create_future())

    @staticmethod
    def _add(
        flush: _Flush,
        points: Sequence[tuple[Destination, PointBatch]],
        others: Sequence[OutMessage],
    ) -> None:
        for destination, batch in points:
            flush.points.setdefault(destination, []).append(batch)
            flush.size += len(batch)
        flush.others.extend(others)

    def _close(self, flush: _Flush) -> None:
        if flush.timer is not None:
            flush.timer.cancel()
        if self._open is flush:
            self._open = None
        task = asyncio.get_running_loop().create_task(self._run(flush))
        self._running.add(task)  # a reference until it ends (the loop keeps weak ones)
        task.add_done_callback(self._running.discard)

    async def _run(self, flush: _Flush) -> None:
        try:
            messages = messages_of(flush.points)
            messages.extend(flush.others)
            await self._produce(messages)
        except asyncio.CancelledError:  # shutdown: the waiters are cancelled too
            flush.done.cancel()
            raise
        except Exception as exc:  # every waiter gets the failure
            if not flush.done.done():
                flush.done.set_exception(exc)
            return
        if self._on_sent is not None:
            self._on_sent(len(messages))
        if not flush.done.done():
            flush.done.set_result(None)

    async def close(self) -> None:
        """Send what is collected and wait for every flush under way."""
        if self._open is not None:
            self._close(self._open)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
