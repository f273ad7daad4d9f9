"""Key layout of the inverted index's RocksDB (documented in docs/stores.md).

``P org NUL metric NUL tag NUL bucket:i64`` -> serialized roaring BitMap64 of sids. The
empty tag stands for "every series of the metric". The bucket is last and sorts like the
number, so a query's bucket range is one contiguous scan per tag.
"""

from __future__ import annotations

from stores.runtime.rocks import i64, read_i64

POSTINGS = b"P"
SEP = b"\x00"
ALL_SERIES = ""  # the tag under which every series of a metric is listed


def postings_prefix(org: str, metric: str, tag: str) -> bytes:
    return POSTINGS + org.encode() + SEP + metric.encode() + SEP + tag.encode() + SEP


def postings_key(org: str, metric: str, tag: str, bucket: int) -> bytes:
    return postings_prefix(org, metric, tag) + i64(bucket)


def bucket_of(key: bytes) -> int:
    return read_i64(key[-8:])


def bucket_suffix(bucket: int) -> bytes:
    return i64(bucket)
