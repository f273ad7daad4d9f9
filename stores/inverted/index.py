"""The inverted index on RocksDB: apply series batches (set union), resolve filter trees.

Apply is idempotent and order-independent in its answers: every postings write is a
bitmap union, and a sid's ordinal is assigned once (a redelivery finds it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap
from rocksdict import WriteBatch, WriteOptions

from stores.inverted import keys
from stores.inverted.filters import Filter, Wildcard, evaluate, from_lists
from stores.runtime.applied import (
    COMPLETE_PREFIX,
    OFFSET_PREFIX,
    adopt_topic,
    applied_offsets,
    start_from_db,
)
from stores.runtime.readiness import CaughtUpCoverage
from stores.runtime.rocks import get_many, open_db, scan_prefix, u32, write_sync
from stores.runtime.store import Record, StartPosition, Store
from strata.codec import SeriesBatch, decode_series
from strata.model import INDEX_BUCKET_SECONDS, index_bucket

log = logging.getLogger(__name__)

Sids = npt.NDArray[np.uint64]
MAX_ORDINALS = 2**32
#: ordinal->sid chunks kept in memory (64k sids = 512 KiB each)
CACHED_CHUNKS = 256


class TooManySeries(RuntimeError):
    """A metric exceeded 2**32 series (ordinals are 32-bit)."""


class InvertedIndex(CaughtUpCoverage, Store[SeriesBatch]):
    kind = "inverted"

    def __init__(self, topic: str, path: Path) -> None:
        super().__init__()
        self.topic = topic
        self._db = open_db(path)
        # Chunks of the ordinal->sid table; this process is the only writer, and apply
        # drops the chunks it rewrites, so the cache is never stale.
        self._chunks: dict[bytes, Sids] = {}
        self._migrate()

    def _migrate(self) -> None:
        if self._db.get(keys.LAYOUT_KEY) == keys.LAYOUT:
            return
        stale = [k for k, _ in scan_prefix(self._db, keys.OLD_POSTINGS)]
        batch = WriteBatch(raw_mode=True)
        if stale:
            log.warning(
                "inverted: dropping %d layout-1 postings; replaying the series topic", len(stale)
            )
            stale += [
                k for p in (OFFSET_PREFIX, COMPLETE_PREFIX) for k, _ in scan_prefix(self._db, p)
            ]
            for key in stale:
                batch.delete(key)
        batch.put(keys.LAYOUT_KEY, keys.LAYOUT)
        opts = WriteOptions()
        opts.sync = True
        self._db.write(batch, opts)

    def decode(self, value: bytes) -> SeriesBatch:
        return decode_series(value)

    def bind_topic(self, topic_id: str | None) -> None:
        if adopt_topic(self._db, topic_id):
            log.warning(
                "%s: topic %s is not the one our applied offsets came from (id now %s); "
                "replaying it from the beginning",
                self.kind,
                self.topic,
                topic_id,
            )

    def start_position(self, partition: int, now_ms: int) -> StartPosition:
        return start_from_db(self._db, partition)

    # -- apply -------------------------------------------------------------------------

    def apply(self, records: Sequence[Record[SeriesBatch]]) -> None:
        """Assign ordinals to new sids, union them into their postings; one synchronous
        WriteBatch with the applied offsets."""
        puts: dict[bytes, bytes] = {}
        # (org, metric, bucket) -> tag -> ordinals: postings keys are built once per
        # distinct tag and bucket of the batch, not once per series and tag.
        added: dict[tuple[str, str, int], dict[str, list[int]]] = {}
        counts: dict[bytes, int] = {}
        for record in records:
            b = record.value
            if len(b) == 0:
                continue
            ordinals = self._ordinals(b.org, b.metric, b.sid, puts, counts)
            # Announcements carry bucket starts; align anyway so keys stay canonical.
            starts = (b.bucket - np.mod(b.bucket, INDEX_BUCKET_SECONDS)).tolist()
            for ordinal, start, tags in zip(ordinals, starts, b.tags, strict=True):
                by_tag = added.get((b.org, b.metric, start))
                if by_tag is None:
                    by_tag = added[(b.org, b.metric, start)] = {keys.ALL_SERIES: []}
                by_tag[keys.ALL_SERIES].append(ordinal)
                for tag in tags:
                    if tag in by_tag:
                        by_tag[tag].append(ordinal)
                    else:
                        by_tag[tag] = [ordinal]
        names: list[bytes] = []
        members: list[list[int]] = []
        for (org, metric, start), by_tag in added.items():
            names += keys.postings_keys(org, metric, by_tag, start)
            members += by_tag.values()
        for key, ords, old in zip(names, members, get_many(self._db, names), strict=True):
            merged = BitMap(ords)
            if old is not None:
                before = BitMap.deserialize(old)
                if merged.issubset(before):
                    continue  # a redelivery: nothing new to write
                merged |= before
            merged.run_optimize()
            puts[key] = merged.serialize()
        puts.update(applied_offsets(records))
        write_sync(self._db, puts)
        for key in puts:
            self._chunks.pop(key, None)

    def _ordinals(
        self,
        org: str,
        metric: str,
        sids: Sids,
        puts: dict[bytes, bytes],
        counts: dict[bytes, int],
    ) -> list[int]:
        """Ordinals of ``sids``, assigning new ones (recorded in ``puts``; ``counts``
        carries each metric's next ordinal through one apply)."""
        sid_list = sids.tolist()
        okeys = keys.ordinal_keys(org, metric, sid_list)
        found = get_many(self._db, okeys)
        ckey = keys.count_key(org, metric)
        out: list[int] = []
        new_sids: list[int] = []
        for sid, okey, raw in zip(sid_list, okeys, found, strict=True):
            raw = puts.get(okey, raw)
            if raw is None:
                if ckey not in counts:
                    stored = self._db.get(ckey)
                    counts[ckey] = int.from_bytes(stored, "big") if stored is not None else 0
                ordinal = counts[ckey]
                if ordinal >= MAX_ORDINALS:
                    raise TooManySeries(f"{org}/{metric} has more than 2**32 series")
                counts[ckey] = ordinal + 1
                raw = u32(ordinal)
                puts[okey] = raw
                new_sids.append(sid)
            out.append(int.from_bytes(raw, "big"))
        if new_sids:
            self._append_sids(org, metric, counts[ckey] - len(new_sids), new_sids, puts)
            puts[ckey] = u32(counts[ckey])
        return out

    def _append_sids(
        self, org: str, metric: str, first: int, sids: list[int], puts: dict[bytes, bytes]
    ) -> None:
        data = np.array(sids, dtype="<u8")
        pos = 0
        ordinal = first
        while pos < data.size:
            chunk, offset = divmod(ordinal, keys.CHUNK)
            take = min(keys.CHUNK - offset, data.size - pos)
            ck = keys.sids_key(org, metric, chunk)
            old = puts.get(ck)
            if old is None:
                old = self._db.get(ck) or b""
            old = old[: offset * 8]  # a replay after a crash cannot leave a longer tail
            puts[ck] = old + data[pos : pos + take].tobytes()
            pos += take
            ordinal += take

    # -- resolve -----------------------------------------------------------------------

    def postings(self, org: str, metric: str, tag: str, start: int, end: int) -> BitMap:
        """Union of the tag's ordinals over the index buckets overlapping [start, end]."""
        prefix = keys.postings_prefix(org, metric, tag)
        return BitMap.union(
            BitMap(),
            *(
                BitMap.deserialize(raw)
                for _, raw in scan_prefix(
                    self._db,
                    prefix,
                    keys.bucket_suffix(index_bucket(start)),
                    keys.bucket_suffix(index_bucket(end)),
                )
            ),
        )

    def expand(
        self, org: str, metric: str, wildcard: Wildcard, start: int, end: int
    ) -> Iterator[BitMap]:
        """Postings of every tag ``wildcard`` matches, scanning only the metric's tag keys
        that start with the pattern's literal prefix."""
        base = keys.tags_prefix(org, metric)
        matches = wildcard.matcher()
        lo, hi = index_bucket(start), index_bucket(end)
        verdict: dict[bytes, bool] = {}
        for key, raw in scan_prefix(self._db, base + wildcard.prefix.encode()):
            tag = key[len(base) : -9]
            ok = verdict.get(tag)
            if ok is None:
                ok = verdict[tag] = bool(tag) and matches(tag.decode())
            if ok and lo <= keys.bucket_of(key) <= hi:
                yield BitMap.deserialize(raw)

    def resolve_filter(self, org: str, metric: str, start: int, end: int, tree: Filter) -> Sids:
        """Sorted sids of (org, metric) active in [start, end] selected by ``tree``."""
        everything = self.postings(org, metric, keys.ALL_SERIES, start, end)
        if not everything:
            return np.empty(0, dtype=np.uint64)
        cache: dict[str, BitMap] = {}

        def postings(tag: str) -> BitMap:
            if tag not in cache:
                cache[tag] = self.postings(org, metric, tag, start, end)
            return cache[tag]

        chosen = evaluate(
            tree, everything, postings, lambda w: self.expand(org, metric, w, start, end)
        )
        return self.sids_of(org, metric, chosen)

    def resolve(
        self,
        org: str,
        metric: str,
        start: int,
        end: int,
        include: Sequence[str],
        exclude: Sequence[str],
    ) -> Sids:
        """Series of (org, metric) active in [start, end] with every ``include`` tag and
        no ``exclude`` tag (sorted sids)."""
        return self.resolve_filter(org, metric, start, end, from_lists(include, exclude))

    def sids_of(self, org: str, metric: str, ordinals: BitMap) -> Sids:
        """Sorted sids of ``ordinals``."""
        if not ordinals:
            return np.empty(0, dtype=np.uint64)
        ords = np.frombuffer(ordinals.to_array(), dtype=np.uint32)
        chunk_of = ords >> keys.CHUNK_BITS
        bounds = np.flatnonzero(np.diff(chunk_of)) + 1  # ords are sorted: chunks are runs
        parts = []
        for run in np.split(ords, bounds):
            table = self._chunk(org, metric, int(run[0]) >> keys.CHUNK_BITS)
            parts.append(table[run & (keys.CHUNK - 1)])
        out = np.concatenate(parts)
        out.sort()
        return out

    def _chunk(self, org: str, metric: str, chunk: int) -> Sids:
        key = keys.sids_key(org, metric, chunk)
        table = self._chunks.get(key)
        if table is None:
            raw = self._db.get(key)
            table = np.frombuffer(raw or b"", dtype="<u8").astype(np.uint64)
            if len(self._chunks) >= CACHED_CHUNKS:
                self._chunks.pop(next(iter(self._chunks)))
            self._chunks[key] = table
        return table

    def close(self) -> None:
        self._db.close()
