"""Partition key ``org|metric`` and Kafka's murmur2 partitioner.

Placement matches the Java client's default partitioner (and librdkafka's ``murmur2``):
``(murmur2(key) & 0x7fffffff) % partitions``, so any Kafka client agrees with us. The key
scheme leaves room for hot keys: a later version may append ``|shard`` to spread one
org|metric over several partitions without changing the placement of unsplit keys.
"""

from __future__ import annotations

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def partition_key(org: str, metric: str) -> bytes:
    return f"{org}|{metric}".encode()


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), as an unsigned 32-bit int."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    extra = length % 4
    if extra == 3:
        h ^= data[end + 2] << 16
    if extra >= 2:
        h ^= data[end + 1] << 8
    if extra >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """Partition of ``key`` among ``partitions`` (Java client's default partitioner)."""
    if partitions <= 0:
        raise ValueError("partitions must be positive")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
