"""The tag index on RocksDB: apply series batches, answer lookups and catalogs.

Apply is idempotent: identities are first-writer-wins, collisions are keyed by the
identity's digest (a repeat writes the same key), and last-seen buckets take the maximum.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import orjson

from stores.runtime.applied import adopt_topic, applied_offsets, start_from_db
from stores.runtime.readiness import CaughtUpCoverage
from stores.runtime.rocks import get_many, open_db, scan_prefix, write_sync
from stores.runtime.store import Record, StartPosition, Store
from stores.tags import keys
from stores.tags.keys import Identity
from strata.codec import SeriesBatch, decode_series, merge_metadata
from strata.model import INDEX_BUCKET_SECONDS, MetricType

log = logging.getLogger(__name__)


class TagIndex(CaughtUpCoverage, Store[SeriesBatch]):
    kind = "tags"

    def __init__(self, topic: str, path: Path) -> None:
        super().__init__()
        self.topic = topic
        self._db = open_db(path)
        self.collisions = sum(1 for _ in scan_prefix(self._db, keys.COLLISION))

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
        """Read-modify-write through an overlay, so several messages of one batch that
        touch the same key see each other; one synchronous WriteBatch at the end (data and
        applied offsets together)."""
        puts: dict[bytes, bytes] = {}

        def get(key: bytes) -> bytes | None:
            return puts[key] if key in puts else cast(bytes | None, self._db.get(key))

        for record in records:
            b = record.value
            if b.metadata is not None:
                # A metadata update (PUT /api/v1/metrics/{name}, through Kafka so every
                # owner of the partition, now or after a rebalance, holds the same result).
                key = keys.metadata_key(b.org, b.metric)
                raw = get(key)
                current = merge_metadata(orjson.loads(raw) if raw is not None else {}, b.metadata)
                puts[key] = orjson.dumps(current)
                continue
            if len(b) == 0:
                continue
            sids = b.sid.tolist()
            skeys = [keys.series_key(sid) for sid in sids]
            stored = get_many(self._db, skeys)
            parts = keys.series_parts(b.org, b.metric, b.tags)
            # Tag tuples of the catalogued rows per bucket (rows of one message mostly share
            # one), so last-seen buckets are taken per distinct tag, not per row and tag.
            seen: dict[int, list[tuple[str, ...]]] = {}
            for i, (sid, bucket, skey) in enumerate(
                zip(sids, b.bucket.tolist(), skeys, strict=True)
            ):
                # Earlier rows of this batch first (the overlay), then the database.
                raw = puts[skey] if skey in puts else stored[i]
                if raw is None:
                    puts[skey] = self._identity(b, i, sid).encode()
                elif not keys.is_series(raw, parts[i]):
                    ident = self._identity(b, i, sid)
                    if not Identity.decode(raw).same_series(ident):
                        ckey = keys.collision_key(sid, ident)
                        if get(ckey) is None:
                            puts[ckey] = ident.encode()
                            self.collisions += 1
                            log.error("series id collision on %d (keeping the first identity)", sid)
                        continue  # the colliding series is not catalogued under the first's sid
                rows = seen.get(bucket)
                if rows is None:
                    seen[bucket] = [b.tags[i]]
                else:
                    rows.append(b.tags[i])
            if seen:
                newest: dict[str, int] = {}
                for bucket in sorted(seen):  # ascending: a later bucket overwrites
                    newest.update(
                        dict.fromkeys(itertools.chain.from_iterable(seen[bucket]), bucket)
                    )
                names = [keys.metric_key(b.org, b.metric), *keys.tag_keys(b.org, b.metric, newest)]
                buckets = [max(seen), *newest.values()]
                self._raise_last_seen(names, buckets, puts)
        puts.update(applied_offsets(records))
        write_sync(self._db, puts)

    def _raise_last_seen(
        self, names: list[bytes], buckets: list[int], puts: dict[bytes, bytes]
    ) -> None:
        """Set each last-seen key to its bucket where that is later than what is stored (the
        batch's own earlier writes first), reading the stored values in one multi-get."""
        unread = [k for k in names if k not in puts]
        stored = dict(zip(unread, get_many(self._db, unread), strict=True))
        for key, bucket in zip(names, buckets, strict=True):
            old = puts[key] if key in puts else stored[key]
            if old is None or keys.read_bucket(old) < bucket:
                puts[key] = keys.bucket_value(bucket)

    @staticmethod
    def _identity(b: SeriesBatch, i: int, sid: int) -> Identity:
        """Row ``i``'s identity (only for a new series or a mismatch: most rows need none)."""
        mtype = int(b.mtype[i])
        try:
            kind = MetricType(mtype)
        except ValueError:
            log.warning(
                "sid %d of %s: unknown metric type %d, stored as gauge", sid, b.metric, mtype
            )
            kind = MetricType.GAUGE
        return Identity(b.org, b.metric, kind, int(b.interval[i]), b.tags[i])

    def lookup(self, org: str, sids: Sequence[int]) -> list[tuple[int, Identity]]:
        """Identities of ``sids`` that belong to ``org`` (others are silently absent)."""
        unique = sorted(set(sids))
        raws = get_many(self._db, [keys.series_key(s) for s in unique])
        out = []
        for sid, raw in zip(unique, raws, strict=True):
            if raw is not None:
                ident = Identity.decode(raw)
                if ident.org == org:
                    out.append((sid, ident))
        return out

    def metrics(self, org: str, since: int, prefix: str = "") -> list[str]:
        """Metrics of ``org`` whose name starts with ``prefix``, seen in an index bucket
        that ends after ``since`` (sorted)."""
        return [name for name, _ in self.catalog(org, since, prefix)]

    def catalog(self, org: str, since: int, prefix: str = "") -> list[tuple[str, int]]:
        """(metric, last-seen bucket start) of ``org``'s metrics named ``prefix...`` seen
        in a bucket that ends after ``since``, sorted by name. Hour precision: a metric
        seen in a bucket counts as active through that bucket's end."""
        base = keys.metric_prefix(org)
        out = []
        for key, raw in scan_prefix(self._db, base + prefix.encode()):
            last = keys.read_bucket(raw)
            if _active(last, since):
                out.append((key[len(base) :].decode(), last))
        return out

    def tag_values(self, org: str, metric: str, since: int) -> dict[str, list[str]]:
        """Tag key -> values of (org, metric) seen since ``since`` (the data behind
        drop-downs); a bare tag is a key with no values."""
        out: dict[str, list[str]] = {}
        for tag in self.tags(org, metric, since):
            key, sep, value = tag.partition(":")
            values = out.setdefault(key, [])
            if sep:
                values.append(value)
        return out

    def known(self, org: str, metric: str) -> bool:
        """Whether (org, metric) was ever announced to this instance."""
        return self._db.get(keys.metric_key(org, metric)) is not None

    def metadata(self, org: str, metric: str) -> dict[str, Any] | None:
        """Stored metadata of a known (org, metric) (``{}`` when none was written), or
        None for a metric this instance never saw."""
        if not self.known(org, metric):
            return None
        raw = self._db.get(keys.metadata_key(org, metric))
        if raw is None:
            return {}
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise keys.CorruptValue(f"metadata of {org}/{metric} is not JSON") from exc
        return dict(value)

    def tags(self, org: str, metric: str, since: int) -> list[str]:
        prefix = keys.tag_prefix(org, metric)
        return [
            key[len(prefix) :].decode()
            for key, raw in scan_prefix(self._db, prefix)
            if _active(keys.read_bucket(raw), since)
        ]

    def close(self) -> None:
        self._db.close()


def _active(last_bucket: int, since: int) -> bool:
    # Hour precision: seen in a bucket means active through that bucket's end.
    return last_bucket + INDEX_BUCKET_SECONDS > since
