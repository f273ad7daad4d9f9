"""The archive's sketch tier end to end in one process: ingest, compaction, reads.

Run: ``python -m bench.bench_archive_sketches [--quick] [--series N] [--hours N]
[--repeats N] [--seed N]`` (default 200 series x 24 h, about 1.7 M sketches; ``--quick``
50 series x 2 h, what ``make bench`` runs).

Workload: one (org, metric) on one partition; every 10 s each series sends one DDSketch of
5-15 (mean 10) log-normal latency-like values (around 20 ms, sigma 1), and one Kafka message
carries one 10 s tick of every series (as intake batches a request per partition key). The
hours start at yesterday's UTC midnight, so the default day is one compacted day object.

What is measured (no Kafka, a local-directory object store in a temp dir, the real code):

- **ingest**: the wire messages (encoded outside the timing) go through the writer's own
  ``decode``, then :meth:`ArchiveSketchStore.apply` and ``make_durable`` in polls of
  ``batch_max_messages`` messages (the consumer loop's default), uploading an object every
  ``archive_flush_sketches`` sketches (the service's default), then ``flush_all``;
- **compaction**: :meth:`stores.archive.compaction.Compactor.run` (the points pass finds
  nothing; the sketch pass writes the day objects and their 1 m and 1 h rollups);
- **reads**: ``POST /v1/sketches/read`` of the archive's app (``create_app`` with the
  sketch reader and the partition guard, as the service mounts it, served in process by
  starlette's TestClient) for every series over the whole range at ``raw``, ``1m`` and
  ``1h``, before and after compaction; the latency is the request plus the client's decode
  of the answer (:func:`strata.sketch_codec.decode_batch`), p50 and max of ``--repeats``;
  then one breakdown per resolution: the reader's ``read_sketches`` alone, the answer's
  ``encode_batch``, the client's decode.

Also printed: bytes per sketch in ingest objects, per row of the compacted day objects and
of the 1 m / 1 h rollup objects, and the process's peak RSS after each step (the bench's
client and the archive share the process, so it bounds the archive's from above).

Every read answer is checked against the counts generated (per row: sid, bucket, count;
in total: count, sum within 1e-9, min and max): a wrong answer raises :class:`WrongAnswer`
and fails the run instead of being timed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from fastapi.testclient import TestClient

from bench.machine import describe
from stores.archive.api import create_app
from stores.archive.catalog import Catalog
from stores.archive.compaction import Compactor
from stores.archive.naming import Family
from stores.archive.objectstore import LocalDirStore
from stores.archive.reader import ArchiveReader
from stores.archive.retention import Retention
from stores.archive.settings import ArchiveSettings
from stores.archive.sketches import ArchiveSketchReader, ArchiveSketchStore
from stores.runtime.ownership import Ownership
from stores.runtime.serving import ServingGuard
from stores.runtime.settings import StoreSettings
from stores.runtime.store import Record
from strata.codec import SketchMessage, encode_sketches
from strata.sketch import SketchBatch, SketchParams
from strata.sketch_codec import decode_batch, encode_batch

ORG, METRIC = "bench", "bench.latency"
PARTITION = 0
TICK, MINUTE, HOUR, DAY = 10, 60, 3600, 86400
TICKS_PER_HOUR = HOUR // TICK
POLL: int = StoreSettings.model_fields["batch_max_messages"].default  # per apply, as the loop
RESOLUTIONS = (("raw", TICK), ("1m", MINUTE), ("1h", HOUR))
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


class WrongAnswer(AssertionError):
    """A read answered something other than what was fed."""


@dataclass
class Fed:
    """What was sent: per (tick, series) value counts, and totals over every value."""

    sids: U64
    start: int
    counts: I64  # (ticks, series)
    total: float = 0.0
    low: float = np.inf
    high: float = -np.inf

    def expected(self, step: int) -> tuple[U64, I64, I64]:
        """(sid, bucket, count) per row of a whole-range read at ``step``, sorted by
        (sid, bucket), computed from the generated counts alone."""
        per = step // TICK
        ticks, series = self.counts.shape
        counts = self.counts.reshape(ticks // per, per, series).sum(axis=1)
        buckets = self.start + step * np.arange(ticks // per, dtype=np.int64)
        return (
            np.repeat(self.sids, buckets.size),
            np.tile(buckets, series),
            counts.T.ravel(),
        )


@dataclass
class Read:
    resolution: str
    rows: int
    answer_bytes: int
    bins: float  # mean bins per row of the answer
    seconds: list[float]  # request + client decode, per repeat
    store_seconds: float  # ArchiveSketchReader.read_sketches alone (once)
    encode_seconds: float  # the API's encode_batch of the answer (once)
    decode_seconds: float  # the client's decode_batch (once)


@dataclass
class Report:
    """The figures of one run (also what the smoke test inspects)."""

    sketches: int
    values: int
    ingest_seconds: float
    decode_seconds: float
    ingest_objects: int
    ingest_bytes: int
    compaction_seconds: float
    compacted_bytes: dict[str, int]
    rows: dict[str, int]
    reads_before: list[Read] = field(default_factory=list)
    reads_after: list[Read] = field(default_factory=list)


def hour_messages(
    rng: np.random.Generator, fed: Fed, hour: int, params: SketchParams
) -> list[bytes]:
    """The wire messages of one hour (one per tick), recording the counts in ``fed``."""
    series = fed.sids.size
    counts = rng.integers(5, 16, (TICKS_PER_HOUR, series))
    first = hour * TICKS_PER_HOUR
    fed.counts[first : first + TICKS_PER_HOUR] = counts
    out = []
    for i in range(TICKS_PER_HOUR):
        offsets = np.concatenate([[0], np.cumsum(counts[i])])
        values = rng.lognormal(np.log(20.0), 1.0, int(offsets[-1]))
        fed.total += float(values.sum())
        fed.low, fed.high = min(fed.low, values.min()), max(fed.high, values.max())
        ts = np.full(series, fed.start + (first + i) * TICK, np.int64)
        batch = SketchBatch.from_ragged(params, fed.sids, ts, offsets, values)
        out.append(encode_sketches(SketchMessage(ORG, METRIC, batch)))
    return out


def ingest(
    store: ArchiveSketchStore, rng: np.random.Generator, fed: Fed, hours: int, batch: int = POLL
) -> tuple[float, float]:
    """Feed ``hours`` of messages in polls of ``batch`` messages (generated an hour at a time,
    outside the timing); returns (seconds of decode + apply + make_durable + the final
    flush, of which decode)."""
    params = SketchParams()
    busy = decoding = 0.0
    offset = 0
    waiting: list[bytes] = []

    def poll(wire: list[bytes]) -> None:
        nonlocal busy, decoding, offset
        t0 = time.perf_counter()
        records = []
        for raw in wire:
            append_ms = (fed.start + offset * TICK) * 1000  # one tick per message
            records.append(Record(PARTITION, offset, append_ms, store.decode(raw)))
            offset += 1
        t1 = time.perf_counter()
        store.apply(records)
        store.make_durable()
        busy += time.perf_counter() - t0
        decoding += t1 - t0

    for hour in range(hours):
        waiting += hour_messages(rng, fed, hour, params)
        while len(waiting) >= batch:
            poll(waiting[:batch])
            del waiting[:batch]
    poll(waiting)
    t0 = time.perf_counter()
    if not store.flush_all():
        raise RuntimeError("the final flush left data buffered")
    busy += time.perf_counter() - t0
    store.caught_up(PARTITION, offset)
    return busy, decoding


def peak_mb() -> float:
    """The process's peak resident set so far (MB): bench client and archive together."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sizes(objects: LocalDirStore, family: Family) -> tuple[int, int]:
    """(objects, bytes) of a family's data objects (progress markers left out)."""
    found = [o for o in objects.list(family.value + "/") if "/_progress/" not in o.key]
    return len(found), sum(o.size for o in found)


def check(answer: SketchBatch, fed: Fed, resolution: str, step: int) -> None:
    """Raise :class:`WrongAnswer` unless the answer is, row for row, what was fed."""
    sid, bucket, count = fed.expected(step)
    got = int(answer.count.sum()) if len(answer) else 0
    if len(answer) != sid.size:
        raise WrongAnswer(
            f"{resolution}: {len(answer):,} rows, expected {sid.size:,} "
            f"(count {got:,} of {int(count.sum()):,} fed)"
        )
    wrong = (answer.sid != sid) | (answer.ts != bucket) | (answer.count != count)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise WrongAnswer(
            f"{resolution}: {int(wrong.sum()):,} rows differ, first (sid {answer.sid[i]}, "
            f"ts {answer.ts[i]}, count {answer.count[i]}) expected ({sid[i]}, {bucket[i]}, "
            f"{count[i]}); total count {got:,} of {int(count.sum()):,} fed"
        )
    if got != int(fed.counts.sum()):
        raise WrongAnswer(f"{resolution}: total count {got:,}, fed {int(fed.counts.sum()):,}")
    total = float(answer.sum.sum())
    if not np.isclose(total, fed.total, rtol=1e-9, atol=0.0):
        raise WrongAnswer(f"{resolution}: sum of values {total!r}, fed {fed.total!r}")
    if answer.min.min() != fed.low or answer.max.max() != fed.high:
        raise WrongAnswer(
            f"{resolution}: min/max {answer.min.min()}/{answer.max.max()}, fed {fed.low}/{fed.high}"
        )


def read_all(
    http: TestClient,
    reader: ArchiveSketchReader,
    fed: Fed,
    hours: int,
    repeats: int,
    out: Callable[[str], None],
) -> Iterator[Read]:
    """Every series over the whole range at each resolution, checked, then timed; then one
    breakdown: the store's read alone, the answer's encoding, the client's decode."""
    lo, hi = fed.start, fed.start + hours * HOUR - 1
    body: dict[str, object] = {
        "sids": [int(s) for s in fed.sids.tolist()],
        "from": lo,
        "to": hi,
        "partition": PARTITION,
    }
    for resolution, step in RESOLUTIONS:
        body["resolution"] = resolution
        seconds = []
        answer_bytes = rows = 0
        bins = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            resp = http.post("/v1/sketches/read", json=body)
            if resp.status_code != 200:
                raise WrongAnswer(f"{resolution}: HTTP {resp.status_code} {resp.text[:300]}")
            answer = decode_batch(resp.content)
            seconds.append(time.perf_counter() - t0)
            check(answer, fed, resolution, step)
            answer_bytes, rows = len(resp.content), len(answer)
            bins = float((answer.pos.lengths + answer.neg.lengths).mean()) if rows else 0.0
        t0 = time.perf_counter()
        batch = reader.read_sketches(fed.sids, lo, hi, step, PARTITION)  # as the API does
        t1 = time.perf_counter()
        encoded = encode_batch(batch)
        t2 = time.perf_counter()
        decode_batch(encoded)
        t3 = time.perf_counter()
        read = Read(resolution, rows, answer_bytes, bins, seconds, t1 - t0, t2 - t1, t3 - t2)
        p50 = statistics.median(seconds)
        out(
            f"  {resolution:>3}: {rows:>9,} rows of {bins:5.1f} bins "
            f"({answer_bytes / max(rows, 1):5.1f} B/row on the wire)  "
            f"p50 {p50 * 1000:7.0f} ms  max {max(seconds) * 1000:7.0f} ms  "
            f"({rows / p50:,.0f} rows/s)"
        )
        out(
            f"       of which: store read {read.store_seconds * 1000:.0f} ms, "
            f"encode {read.encode_seconds * 1000:.0f} ms, "
            f"client decode {read.decode_seconds * 1000:.0f} ms (one run each); "
            f"peak RSS so far {peak_mb():,.0f} MB"
        )
        yield read


def run(
    series: int,
    hours: int,
    seed: int = 1,
    repeats: int = 3,
    flush_sketches: int | None = None,
    out: Callable[[str], None] = print,
    batch: int = POLL,
) -> Report:
    """One run (module docstring); raises :class:`WrongAnswer` on a wrong read."""
    if series < 1 or hours < 1:
        raise ValueError("--series and --hours must be at least 1")
    rng = np.random.default_rng(seed)
    sids = np.unique(rng.integers(1, 2**63, series).astype(np.uint64))
    while sids.size < series:  # a collision among random ids: draw the missing ones
        more = rng.integers(1, 2**63, series - sids.size).astype(np.uint64)
        sids = np.unique(np.concatenate([sids, more]))
    start = (int(time.time()) // DAY - 1) * DAY  # yesterday, 00:00 UTC
    fed = Fed(sids, start, np.zeros((hours * TICKS_PER_HOUR, series), np.int64))
    defaults = ArchiveSettings.model_fields
    flush = flush_sketches or int(defaults["archive_flush_sketches"].default)
    root = Path(tempfile.mkdtemp(prefix="bench-archive-sketches-"))
    try:
        objects = LocalDirStore(root)
        catalog = Catalog(objects)
        store = ArchiveSketchStore(
            "sketches",
            catalog,
            flush_rows=flush,
            flush_seconds=1e9,
            max_buffer_rows=int(defaults["archive_max_buffer_sketches"].default),
            row_group_rows=int(defaults["archive_row_group_rows"].default),
        )
        store.bind_topic("bench")
        store.start_position(PARTITION, 0)
        ingest_s, decode_s = ingest(store, rng, fed, hours, batch)
        sketches, values = fed.counts.size, int(fed.counts.sum())
        n_ingest, ingest_bytes = sizes(objects, Family.SKETCHES)
        out(
            f"ingest: {sketches:,} sketches ({series} series x {hours} h x 1/10 s, "
            f"{values:,} values) in {ingest_s:.2f} s = {sketches / ingest_s:,.0f} sketches/s "
            f"(decode {decode_s / ingest_s:.0%} of it); {n_ingest} object(s) "
            f"(flush at {flush:,} sketches), {ingest_bytes / sketches:.1f} B/sketch; "
            f"peak RSS so far {peak_mb():,.0f} MB"
        )

        own = Ownership()
        own.assign({PARTITION: 0})
        guard = ServingGuard(own, store.coverage)
        reader = ArchiveSketchReader(catalog)
        app = create_app(ArchiveReader(catalog), own, sketches=(reader, guard))
        with TestClient(app) as http:
            # One untimed request first: the app's and the client's first-call costs.
            warm = {"sids": [int(sids[0])], "from": start, "to": start + HOUR - 1}
            if http.post("/v1/sketches/read", json=warm).status_code != 200:
                raise WrongAnswer("the warm-up read failed")
            out(f"read {series} series x {hours} h, ingest objects only:")
            before = list(read_all(http, reader, fed, hours, repeats, out))

            t0 = time.perf_counter()
            Compactor(catalog, Retention(10**9)).run()
            compaction_s = time.perf_counter() - t0
            rows = {"raw": sketches, "1m": sketches // 6, "1h": sketches // TICKS_PER_HOUR}
            compacted = {
                "raw": sizes(objects, Family.SKETCHES)[1],
                "1m": sizes(objects, Family.SKETCHES_1M)[1],
                "1h": sizes(objects, Family.SKETCHES_1H)[1],
            }
            out(
                f"compaction: {compaction_s:.2f} s = {sketches / compaction_s:,.0f} sketches/s; "
                + ", ".join(
                    f"{r} {compacted[r] / rows[r]:.1f} B/row ({rows[r]:,} rows)" for r in rows
                )
                + f"; peak RSS so far {peak_mb():,.0f} MB"
            )
            out(f"read {series} series x {hours} h, compacted (day objects, rollup objects):")
            after = list(read_all(http, reader, fed, hours, repeats, out))
        return Report(
            sketches=sketches,
            values=values,
            ingest_seconds=ingest_s,
            decode_seconds=decode_s,
            ingest_objects=n_ingest,
            ingest_bytes=ingest_bytes,
            compaction_seconds=compaction_s,
            compacted_bytes=compacted,
            rows=rows,
            reads_before=before,
            reads_after=after,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3, help="timed reads per resolution")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="50 series x 2 h, one read each")
    args = ap.parse_args()
    if args.quick:
        args.series, args.hours, args.repeats = 50, 2, 1
    print(describe())
    print(f"pyarrow {pa.__version__}; load average {os.getloadavg()[0]:.1f} at start")
    print(
        f"seed {args.seed}; {args.series} series x {args.hours} h, one sketch of 5-15 "
        "log-normal values per series every 10 s, one partition, local directory"
    )
    run(args.series, args.hours, args.seed, args.repeats)
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
