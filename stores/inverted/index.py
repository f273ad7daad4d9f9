"""The inverted index on RocksDB: apply series batches (set union), resolve filters.

Apply is idempotent and order-independent: every write is a bitmap union.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from pyroaring import BitMap64

from stores.inverted import keys
from stores.inverted.postings import select, union
from stores.runtime.applied import adopt_topic, applied_offsets, start_from_db
from stores.runtime.rocks import get_many, open_db, scan_prefix, write_sync
from stores.runtime.store import Record, StartPosition, Store
from strata.codec import SeriesBatch, decode_series
from strata.model import index_bucket

log = logging.getLogger(__name__)


class InvertedIndex(Store[SeriesBatch]):
    kind = "inverted"

    def __init__(self, topic: str, path: Path) -> None:
        self.topic = topic
        self._db = open_db(path)

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

    def apply(self, records: Sequence[Record[SeriesBatch]]) -> None:
        """Union the batch's sids into their postings; one synchronous WriteBatch with the
        applied offsets."""
        added: dict[bytes, BitMap64] = {}
        for record in records:
            b = record.value
            for i, (sid, bucket) in enumerate(zip(b.sid.tolist(), b.bucket.tolist(), strict=True)):
                # Announcements carry bucket starts; align anyway so keys stay canonical.
                start = index_bucket(bucket)
                for tag in (keys.ALL_SERIES, *b.tags[i]):
                    key = keys.postings_key(b.org, b.metric, tag, start)
                    posting = added.get(key)
                    if posting is None:
                        posting = added[key] = BitMap64()
                    posting.add(sid)
        names = list(added)
        puts: dict[bytes, bytes] = {}
        for key, old in zip(names, get_many(self._db, names), strict=True):
            merged = added[key]
            if old is not None:
                before = BitMap64.deserialize(old)
                if merged.issubset(before):
                    continue  # a redelivery: nothing new to write
                merged |= before
            puts[key] = merged.serialize()
        puts.update(applied_offsets(records))
        write_sync(self._db, puts)

    def postings(self, org: str, metric: str, tag: str, start: int, end: int) -> BitMap64:
        """Union of the tag's postings over the index buckets overlapping [start, end]."""
        prefix = keys.postings_prefix(org, metric, tag)
        return union(
            BitMap64.deserialize(raw)
            for _, raw in scan_prefix(
                self._db,
                prefix,
                keys.bucket_suffix(index_bucket(start)),
                keys.bucket_suffix(index_bucket(end)),
            )
        )

    def resolve(
        self,
        org: str,
        metric: str,
        start: int,
        end: int,
        include: Sequence[str],
        exclude: Sequence[str],
    ) -> BitMap64:
        """Series of (org, metric) active in [start, end] with every ``include`` tag and
        no ``exclude`` tag."""
        everything = self.postings(org, metric, keys.ALL_SERIES, start, end)
        if not everything:
            return everything
        return select(
            everything,
            [self.postings(org, metric, t, start, end) for t in dict.fromkeys(include)],
            [self.postings(org, metric, t, start, end) for t in dict.fromkeys(exclude)],
        )

    def close(self) -> None:
        self._db.close()
