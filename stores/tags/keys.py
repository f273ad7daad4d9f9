"""Key and value layout of the tag index's RocksDB (documented in docs/stores.md).

Strings are UTF-8; org, metric and tag never contain NUL (normalisation and key creation
forbid it), so NUL separates them unambiguously and prefix scans cannot run into a longer
name that shares a prefix.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stores.runtime.rocks import i64, read_i64, u64
from strata.model import MetricType

SERIES = b"S"  # S sid:u64 -> identity (first seen)
COLLISION = b"X"  # X sid:u64 digest:8 -> identity (later, different identities)
METRIC = b"M"  # M org NUL metric -> last-seen bucket i64
TAG = b"T"  # T org NUL metric NUL tag -> last-seen bucket i64
METADATA = b"D"  # D org NUL metric -> metric metadata, JSON object (query service writes)
SEP = b"\x00"

# Identity value: type and interval, then the series' part (what same_series compares):
# the lengths of org and metric, org, metric, the tags joined by commas.
_KIND_INTERVAL = struct.Struct(">BI")
_LENGTHS = struct.Struct(">HH")
_IDENTITY_HEAD = struct.Struct(">" + _KIND_INTERVAL.format[1:] + _LENGTHS.format[1:])  # decode


class CorruptValue(ValueError):
    """A stored value that does not parse (a bug or a foreign database)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What a sid stands for."""

    org: str
    metric: str
    mtype: MetricType
    interval: int
    tags: tuple[str, ...]

    def same_series(self, other: Identity) -> bool:
        """Type and interval may change over a series' life; the hash covers the rest."""
        return (self.org, self.metric, self.tags) == (other.org, other.metric, other.tags)

    def encode(self) -> bytes:
        kind = _KIND_INTERVAL.pack(int(self.mtype), self.interval)
        return kind + series_parts(self.org, self.metric, (self.tags,))[0]

    @classmethod
    def decode(cls, raw: bytes) -> Identity:
        try:
            mtype, interval, lo, lm = _IDENTITY_HEAD.unpack_from(raw)
            pos = _IDENTITY_HEAD.size
            org = raw[pos : pos + lo].decode()
            metric = raw[pos + lo : pos + lo + lm].decode()
            rest = raw[pos + lo + lm :].decode()
            return cls(
                org, metric, MetricType(mtype), interval, tuple(t for t in rest.split(",") if t)
            )
        except (struct.error, UnicodeDecodeError, ValueError) as exc:
            raise CorruptValue(f"bad identity value: {exc}") from exc

    def digest(self) -> bytes:
        return hashlib.blake2b(self.encode(), digest_size=8).digest()


def series_key(sid: int) -> bytes:
    return SERIES + u64(sid)


def series_parts(org: str, metric: str, tags: Sequence[tuple[str, ...]]) -> list[bytes]:
    """For each tag tuple, the bytes an encoded :class:`Identity` of (org, metric, tags)
    holds after its type and interval; org and metric encoded once."""
    o, m = org.encode(), metric.encode()
    head = _LENGTHS.pack(len(o), len(m)) + o + m
    return [head + ",".join(t).encode() for t in tags]


def is_series(raw: bytes, part: bytes) -> bool:
    """Whether the stored identity ``raw`` is the series whose :func:`series_parts` entry
    is ``part``: a byte comparison, no decoding. (False may still be the same series in
    a value written differently; :meth:`Identity.same_series` decides.)"""
    return raw[_KIND_INTERVAL.size :] == part


def collision_key(sid: int, identity: Identity) -> bytes:
    return COLLISION + u64(sid) + identity.digest()


def metric_prefix(org: str) -> bytes:
    return METRIC + org.encode() + SEP


def metric_key(org: str, metric: str) -> bytes:
    return metric_prefix(org) + metric.encode()


def tag_prefix(org: str, metric: str) -> bytes:
    return TAG + org.encode() + SEP + metric.encode() + SEP


def tag_key(org: str, metric: str, tag: str) -> bytes:
    return tag_keys(org, metric, (tag,))[0]


def tag_keys(org: str, metric: str, tags: Iterable[str]) -> list[bytes]:
    """:func:`tag_key` of each tag, the prefix encoded once."""
    head = tag_prefix(org, metric)
    return [head + tag.encode() for tag in tags]


def bucket_value(bucket: int) -> bytes:
    return i64(bucket)


def read_bucket(raw: bytes) -> int:
    if len(raw) != 8:
        raise CorruptValue(f"bucket value has {len(raw)} bytes, expected 8")
    return read_i64(raw)


def metadata_key(org: str, metric: str) -> bytes:
    return METADATA + org.encode() + SEP + metric.encode()
