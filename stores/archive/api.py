"""The archive's internal read API: ``POST /v1/points/read`` (docs/architecture.md) and,
with the sketch tier, ``POST /v1/sketches/read`` (stores/sketches/read.py).

Both reads go through one :class:`ReadGate`. A read holds every row of its series in its
range at once (110-150 bytes per row at its peak), and a read whose client timed out keeps
running to the end, so without a bound the process holds as many reads as the query
service ever sent: tens of GB under a backlog, with ``/health`` starved of worker threads.
With the gate at most ``slots`` reads compute at a time; the others wait up to
``wait_seconds`` and then get 503, which the query planner treats as "tier down". Memory
is then about the idle process plus ``slots`` times the largest read (docs/archive.md,
"Memory").

A read that names its partition (the query planner always does) lists and decodes only
that partition's objects (:mod:`stores.archive.reader`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from stores.archive.objectstore import ObjectStoreError
from stores.archive.reader import ArchiveReader, ReadRaced
from stores.archive.settings import READ_SLOTS, READ_WAIT_SECONDS
from stores.archive.sketches import ArchiveSketchReader
from stores.runtime.http import BadRequest, make_app
from stores.runtime.ownership import Ownership
from stores.runtime.pointread import ARROW_STREAM, ReadRequest, raw_stream, rollup_stream
from stores.runtime.serving import ServingGuard
from stores.sketches.read import Sids, add_sketch_read
from strata.model import SID_DTYPE
from strata.rollup import RESOLUTIONS
from strata.sketch import SketchBatch


class ReadBusy(RuntimeError):
    """No read slot became free in time (HTTP 503: the planner falls back or retries)."""


class ReadGate:
    """At most ``slots`` reads at once; a read waits at most ``wait_seconds`` for a slot.

    The slot is taken and released in the worker thread that computes the read, so a read
    whose client went away still holds its slot until its memory is freed."""

    def __init__(self, slots: int = READ_SLOTS, wait_seconds: float = READ_WAIT_SECONDS) -> None:
        if slots < 1 or wait_seconds < 0:
            raise ValueError(f"need slots >= 1 and wait_seconds >= 0, got {slots}, {wait_seconds}")
        self._slots = threading.BoundedSemaphore(slots)
        self._size = slots
        self._wait = wait_seconds

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the body; raise :class:`ReadBusy` if none frees in time."""
        if not self._slots.acquire(timeout=self._wait):
            raise ReadBusy(f"{self._size} reads in progress for more than {self._wait:g} s")
        try:
            yield
        finally:
            self._slots.release()


# The shared sketch route (stores/sketches/read.py) calls ``guard.serving(partition)``
# around ``store.read_sketches(sids, from, to, step)`` and passes the partition nowhere
# else. The two adapters below are how the archive hooks into it without a route of its
# own: the guard takes a read slot and records the request's partition for the duration
# of the read (the same worker thread), and the tier reads that partition's objects.
_SKETCH_PARTITION: ContextVar[int | None] = ContextVar("archive_sketch_partition", default=None)


class _GatedSketchGuard(ServingGuard):
    """The sketch loop's partition guard, inside a read slot, recording the partition."""

    def __init__(self, guard: ServingGuard, gate: ReadGate) -> None:
        # Delegates instead of calling ServingGuard.__init__: the checks are ``guard``'s.
        self._guard = guard
        self._gate = gate

    @contextmanager
    def serving(self, partition: int | None) -> Iterator[None]:
        with self._gate.slot(), self._guard.serving(partition):
            token = _SKETCH_PARTITION.set(partition)
            try:
                yield
            finally:
                _SKETCH_PARTITION.reset(token)


class _ScopedSketches:
    """:class:`ArchiveSketchReader` as the shared route's tier: reads the partition the
    request named (recorded by :class:`_GatedSketchGuard`)."""

    def __init__(self, reader: ArchiveSketchReader) -> None:
        self._reader = reader
        self.kind = reader.kind

    def read_sketches(self, sids: Sids, start: int, end: int, step: int) -> SketchBatch:
        return self._reader.read_sketches(sids, start, end, step, _SKETCH_PARTITION.get())


def create_app(
    reader: ArchiveReader,
    ownership: Ownership,
    kind: str = "archive",
    sketches: tuple[ArchiveSketchReader, ServingGuard] | None = None,
    gate: ReadGate | None = None,
) -> FastAPI:
    """The read API; with ``sketches`` (the sketch reader and the guard of the sketch
    loop's partitions) also ``POST /v1/sketches/read``, the other sketch tiers' contract.
    Point and sketch reads share ``gate`` (default: :data:`READ_SLOTS` slots, a wait of
    :data:`READ_WAIT_SECONDS`)."""
    app = make_app(kind, ownership.partitions, ownership.watermarks.snapshot)
    reads = gate if gate is not None else ReadGate()

    # The point read API answers 400 {"errors": [...]} (architecture.md), each naming a field.
    @app.exception_handler(BadRequest)
    async def bad_request(_request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"errors": [str(exc)]}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg', '')}"
            for e in exc.errors()
        ]
        return JSONResponse({"errors": problems}, status_code=400)

    @app.post("/v1/points/read")
    def read(req: ReadRequest) -> Response:
        if req.from_ > req.to:
            raise BadRequest(f"from: {req.from_} is after to ({req.to})")
        sids = np.unique(np.array(req.sids, dtype=SID_DTYPE))
        try:
            with reads.slot():
                if req.resolution == "raw":
                    cols = reader.read_raw(sids, req.from_, req.to, partition=req.partition)
                    body = raw_stream(cols)
                else:
                    step = RESOLUTIONS[req.resolution]
                    r = reader.read_rollups(sids, req.from_, req.to, step, partition=req.partition)
                    body = rollup_stream(r)
        except (ObjectStoreError, ReadRaced, ReadBusy) as exc:
            # The planner treats 5xx as "tier down" and falls back to another tier.
            return JSONResponse({"errors": [f"archive unavailable: {exc}"]}, status_code=503)
        return Response(body, media_type=ARROW_STREAM)

    if sketches is not None:
        # The shared sketch route does not know the object store: its failures, and a read
        # that found no slot in time, answer 503 here, as the point route's, so the planner
        # falls back to another tier.
        @app.exception_handler(ObjectStoreError)
        @app.exception_handler(ReadRaced)
        @app.exception_handler(ReadBusy)
        async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"errors": [f"archive unavailable: {exc}"]}, status_code=503)

        sketch_reader, guard = sketches
        add_sketch_read(app, _ScopedSketches(sketch_reader), _GatedSketchGuard(guard, reads))

    return app
