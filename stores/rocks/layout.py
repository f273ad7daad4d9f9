"""Key layout of the rocks store (pure): day shards, raw blocks and rollup records.

One RocksDB, one column family per UTC day (``dYYYYMMDD``) plus ``default`` for the
applied offsets and topic id (stores/runtime/applied.py). Inside a day shard every key is
``kind:u8  sid:u64  start:i64`` (17 bytes, big-endian, ``i64`` with the sign bit flipped)
so byte order is (kind, sid, time) order:

- ``b"r"`` + sid + hour start -> raw block of that series hour
- ``b"m"`` + sid + hour start -> 1-minute rollup rows of that hour
- ``b"h"`` + sid + day start  -> 1-hour rollup rows of that day

The kind byte comes first so each kind is contiguous: a 15-day 1 h read touches only the
compact ``h`` range of each shard, never SST blocks holding raw points.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import numpy.typing as npt

RAW = b"r"
MINUTES = b"m"
HOURS = b"h"
KEY_SIZE = 17
DAY = 86400
HOUR = 3600
_SIGN = np.uint64(1 << 63)
_KEY = np.dtype([("kind", "u1"), ("sid", ">u8"), ("start", ">u8")])
_EPOCH = dt.date(1970, 1, 1)


class NotAShard(ValueError):
    """A column family name that is not a day shard (``dYYYYMMDD``)."""


def keys(kind: bytes, sid: npt.NDArray[np.uint64], start: npt.NDArray[np.int64]) -> list[bytes]:
    """Keys of ``kind`` for every (sid, start) row, built column-wise."""
    rows = np.empty(sid.size, dtype=_KEY)
    rows["kind"] = kind[0]
    rows["sid"] = sid
    rows["start"] = start.view(np.uint64) ^ _SIGN
    raw = rows.tobytes()
    return [raw[i : i + KEY_SIZE] for i in range(0, len(raw), KEY_SIZE)]


def parse_key(key: bytes) -> tuple[bytes, int, int]:
    """(kind, sid, start) of a key (for tools and tests)."""
    row = np.frombuffer(key, dtype=_KEY)[0]
    start = (np.uint64(row["start"]) ^ _SIGN).view(np.int64)
    return bytes([int(row["kind"])]), int(row["sid"]), int(start)


def day_of(ts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """UTC day number (days since 1970-01-01) of each timestamp."""
    return np.floor_divide(ts, DAY)


def shard_name(day: int) -> str:
    return "d" + (_EPOCH + dt.timedelta(days=day)).strftime("%Y%m%d")


def shard_day(name: str) -> int:
    """Inverse of :func:`shard_name`; :class:`NotAShard` for any other name."""
    if len(name) != 9 or name[0] != "d" or not name[1:].isdigit():
        raise NotAShard(name)
    try:
        date = dt.datetime.strptime(name[1:], "%Y%m%d").date()
    except ValueError as exc:
        raise NotAShard(name) from exc
    return (date - _EPOCH).days


def is_shard(name: str) -> bool:
    try:
        shard_day(name)
    except NotAShard:
        return False
    return True


def oldest_kept_day(now: int, retention_days: int) -> int:
    """First day shard kept at ``now``: today and the ``retention_days`` before it, so at
    least ``retention_days`` full days of history are always answerable."""
    return int(now // DAY) - retention_days
