"""Key layout of the inverted index's RocksDB (documented in docs/stores.md, layout 2).

Postings hold dense per-(org, metric) ordinals, not sids: sids are 64-bit hashes, and a
roaring bitmap of random 64-bit values degenerates to one container per value (an OR of
1M and 100k such sids took a second). Ordinals are 32-bit and dense, so bitmaps stay
compact and fast; a table maps them back to sids.

- ``B org NUL metric NUL tag NUL bucket:i64`` -> serialized 32-bit roaring ``BitMap`` of
  ordinals. The empty tag stands for "every series of the metric". The bucket is last and
  sorts like the number, so a query's bucket range is one contiguous scan per tag.
- ``I org NUL metric NUL sid:u64`` -> ordinal ``u32`` (assigned once, never changed).
- ``N org NUL metric`` -> number of ordinals assigned ``u32``.
- ``R org NUL metric NUL chunk:u32`` -> sids of ordinals ``chunk*65536 ...`` as little-endian
  ``u64`` (the last chunk grows as ordinals are assigned).
- ``\\x00V`` -> layout version (``b"2"``). Layout 1 (``P`` keys: BitMap64 of sids) is
  dropped at open and the series topic replayed.
"""

from __future__ import annotations

from collections.abc import Iterable

from stores.runtime.rocks import i64, read_i64, u32, u64

POSTINGS = b"B"
ORDINAL = b"I"
COUNT = b"N"
SIDS = b"R"
LAYOUT_KEY = b"\x00V"
LAYOUT = b"2"
OLD_POSTINGS = b"P"  # layout 1
SEP = b"\x00"
ALL_SERIES = ""  # the tag under which every series of a metric is listed
CHUNK_BITS = 16
CHUNK = 1 << CHUNK_BITS


def _metric(org: str, metric: str) -> bytes:
    return org.encode() + SEP + metric.encode()


def tags_prefix(org: str, metric: str) -> bytes:
    """Prefix of every postings key of (org, metric); the tag follows."""
    return POSTINGS + _metric(org, metric) + SEP


def postings_prefix(org: str, metric: str, tag: str) -> bytes:
    return tags_prefix(org, metric) + tag.encode() + SEP


def postings_key(org: str, metric: str, tag: str, bucket: int) -> bytes:
    return postings_keys(org, metric, (tag,), bucket)[0]


def postings_keys(org: str, metric: str, tags: Iterable[str], bucket: int) -> list[bytes]:
    """:func:`postings_key` of each tag, the shared parts encoded once."""
    head, tail = tags_prefix(org, metric), SEP + i64(bucket)
    return [head + tag.encode() + tail for tag in tags]


def bucket_of(key: bytes) -> int:
    return read_i64(key[-8:])


def bucket_suffix(bucket: int) -> bytes:
    return i64(bucket)


def ordinal_key(org: str, metric: str, sid: int) -> bytes:
    return ordinal_keys(org, metric, (sid,))[0]


def ordinal_keys(org: str, metric: str, sids: Iterable[int]) -> list[bytes]:
    """:func:`ordinal_key` of each sid, the shared prefix encoded once."""
    head = ORDINAL + _metric(org, metric) + SEP
    return [head + u64(sid) for sid in sids]


def count_key(org: str, metric: str) -> bytes:
    return COUNT + _metric(org, metric)


def sids_key(org: str, metric: str, chunk: int) -> bytes:
    return SIDS + _metric(org, metric) + SEP + u32(chunk)
