"""murmur2 placement equals the Java client's default partitioner.

The vectors are the Java-compatibility cases used across Kafka clients (1000 partitions).
tests/integration/test_intake_partitioning.py checks librdkafka's ``murmur2`` partitioner
against a real broker too.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strata.partitioning import murmur2, partition_for, partition_key


@pytest.mark.parametrize(
    ("key", "partition"),
    [
        (b"", 681),
        (b"a", 524),
        (b"ab", 434),
        (b"abc", 107),
        (b"123456789", 566),
        (b"\x00 ", 742),
    ],
)
def test_java_compatible_placement(key: bytes, partition: int) -> None:
    assert partition_for(key, 1000) == partition


def test_partition_key_shape() -> None:
    assert partition_key("acme", "system.load.1") == b"acme|system.load.1"


@given(st.binary(max_size=64), st.integers(1, 512))
def test_partition_in_range(key: bytes, n: int) -> None:
    assert 0 <= partition_for(key, n) < n
    assert 0 <= murmur2(key) < 2**32


def test_zero_partitions_rejected() -> None:
    with pytest.raises(ValueError):
        partition_for(b"x", 0)
