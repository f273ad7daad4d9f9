"""Object names: derived only from topic id, partition, offset range and (for compacted
objects) the UTC day and a digest of the inputs. Pure; docs/formats.md (section "Archive objects").

Ingest objects are named by the Kafka offsets they hold, so a replay of the same messages
rewrites the same name instead of adding rows. Compacted objects carry the offset range of
their inputs too, so "the highest archived offset" survives compaction.

Layout (``<tid>`` is the broker's topic id, or the topic name if the broker has no ids)::

    points/<tid>/p0003/<first:020d>-<last:020d>.parquet                     ingest
    points/<tid>/p0003/d<day:011d>/<lo:020d>-<hi:020d>-<digest>.parquet     compacted day
    rollups/1h/<tid>/p0003/d<day:011d>/<lo:020d>-<hi:020d>-<digest>.parquet 1 h rollups of it
    series/<tid>/p0003/<first:020d>-<last:020d>.parquet                     series records
    points/<tid>/p0003/_progress/<last:020d>                                progress marker
    sketches/<tid>/p0003/<first:020d>-<last:020d>.parquet                   ingest sketches
    sketches/<tid>/p0003/d<day:011d>/<lo:020d>-<hi:020d>-<digest>.parquet   compacted day
    sketch-rollups/1m/<tid>/p0003/d<day:011d>/<lo>-<hi>-<digest>.parquet    1 m sketches of it
    sketch-rollups/1h/<tid>/p0003/d<day:011d>/<lo>-<hi>-<digest>.parquet    1 h sketches of it
    sketches/<tid>/p0003/_progress/<last:020d>                              progress marker

For sketches the offset range in a name is also what keeps a message from being merged
twice (merging is not idempotent): see :mod:`stores.archive.sketch_plan`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

DAY = 86400
_TID = re.compile(r"[^A-Za-z0-9._=-]")


class BadObjectName(ValueError):
    """A name under our prefixes that is not one of ours (ignored by listings)."""


class Family(Enum):
    POINTS = "points"
    SERIES = "series"
    ROLLUPS_1H = "rollups/1h"
    SKETCHES = "sketches"
    SKETCHES_1M = "sketch-rollups/1m"
    SKETCHES_1H = "sketch-rollups/1h"


@dataclass(frozen=True, slots=True, order=True)
class ObjectName:
    """A parsed archive object name; ``day`` is set for compacted and rollup objects."""

    family: Family
    topic_id: str
    partition: int
    first: int
    last: int
    day: int | None = None
    digest: str = ""

    @property
    def compacted(self) -> bool:
        return self.day is not None

    @property
    def stem(self) -> str:
        """The part shared by a compacted points object and its rollup object."""
        return f"{self.topic_id}/p{self.partition:04d}/d{self.day:011d}/{self._range()}"

    def _range(self) -> str:
        tail = f"-{self.digest}" if self.digest else ""
        return f"{self.first:020d}-{self.last:020d}{tail}"

    def key(self) -> str:
        base = f"{self.family.value}/{self.topic_id}/p{self.partition:04d}"
        if self.day is not None:
            return f"{base}/d{self.day:011d}/{self._range()}.parquet"
        return f"{base}/{self._range()}.parquet"


def safe_topic_id(topic_id: str) -> str:
    """Topic ids are base64 (may hold ``/`` and ``+``): make them one path segment."""
    return _TID.sub("_", topic_id)


def ingest_name(family: Family, topic_id: str, partition: int, first: int, last: int) -> str:
    if first < 0 or last < first:
        raise ValueError(f"bad offset range {first}-{last}")
    return ObjectName(family, safe_topic_id(topic_id), partition, first, last).key()


def digest(inputs: Iterable[str], salt: str = "") -> str:
    """8 hex chars naming a compaction's inputs: same inputs -> same name (idempotent),
    different inputs -> different name (an object is never overwritten with new content)."""
    h = hashlib.blake2b(digest_size=4)
    for name in sorted(inputs):
        h.update(name.encode() + b"\n")
    h.update(salt.encode())
    return h.hexdigest()


def compacted_name(
    family: Family, topic_id: str, partition: int, day: int, lo: int, hi: int, dig: str
) -> str:
    if day % DAY:
        raise ValueError(f"day {day} is not a multiple of {DAY}")
    return ObjectName(family, safe_topic_id(topic_id), partition, lo, hi, day, dig).key()


def partition_prefix(family: Family, topic_id: str, partition: int) -> str:
    return f"{family.value}/{safe_topic_id(topic_id)}/p{partition:04d}/"


def progress_prefix(topic_id: str, partition: int, family: Family = Family.POINTS) -> str:
    return partition_prefix(family, topic_id, partition) + "_progress/"


def progress_name(topic_id: str, partition: int, last: int, family: Family = Family.POINTS) -> str:
    return f"{progress_prefix(topic_id, partition, family)}{last:020d}"


_NAME = re.compile(
    r"^(?P<family>points|series|rollups/1h|sketches|sketch-rollups/1[mh])/"
    r"(?P<tid>[A-Za-z0-9._=-]+)/p(?P<p>\d{4})/"
    r"(?:d(?P<day>\d{11})/)?(?P<first>\d{20})-(?P<last>\d{20})(?:-(?P<digest>[0-9a-f]{8}))?"
    r"\.parquet$"
)


def parse(key: str) -> ObjectName:
    """Inverse of :meth:`ObjectName.key`; raise :class:`BadObjectName`."""
    m = _NAME.match(key)
    if m is None:
        raise BadObjectName(key)
    day = m.group("day")
    dig = m.group("digest") or ""
    if (day is None) != (dig == ""):
        raise BadObjectName(f"{key}: a day directory goes with a digest")
    first, last = int(m.group("first")), int(m.group("last"))
    if last < first:
        raise BadObjectName(f"{key}: offsets out of order")
    return ObjectName(
        Family(m.group("family")),
        m.group("tid"),
        int(m.group("p")),
        first,
        last,
        int(day) if day is not None else None,
        dig,
    )


def parse_progress(key: str) -> int | None:
    """The offset of a progress marker name, or None if ``key`` is not one."""
    head, sep, tail = key.rpartition("/_progress/")
    if not sep or not head or len(tail) != 20 or not tail.isdigit():
        return None
    return int(tail)


def parse_many(keys: Iterable[str]) -> list[ObjectName]:
    """Names of ours among ``keys`` (others, e.g. temp files or markers, are skipped)."""
    out = []
    for k in keys:
        try:
            out.append(parse(k))
        except BadObjectName:
            continue
    return out
