"""PartitionCounts.place (intake.producer): memoised placement equals Kafka's partitioner
for every key and partition count, follows count changes, and stays bounded."""

from __future__ import annotations

import pytest

import intake.producer
from intake.producer import BrokerUnavailable, PartitionCounts
from strata.partitioning import partition_for, partition_key

# partition_for is checked against the Java client's murmur2 in tests/unit/test_partitioning.py;
# the memo must agree with it on every call, hit or miss.
KEYS = [partition_key(org, f"cpu.usage_{m}") for org in ("main", "acme") for m in range(50)]


def test_place_equals_partition_for_on_hits_and_misses() -> None:
    counts = PartitionCounts("unused:9092", {"points": 4, "series": 7})
    for _ in range(3):  # misses, then hits
        for key in KEYS:
            assert counts.place("points", key) == partition_for(key, 4)
            assert counts.place("series", key) == partition_for(key, 7)


def test_a_new_partition_count_moves_keys_as_partition_for_does() -> None:
    counts = PartitionCounts("unused:9092", {"points": 4})
    before = [counts.place("points", k) for k in KEYS]
    counts._counts["points"] = 12  # what a refresh after adding partitions does
    after = [counts.place("points", k) for k in KEYS]
    assert before == [partition_for(k, 4) for k in KEYS]
    assert after == [partition_for(k, 12) for k in KEYS]
    assert before != after


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake.producer, "_PLACEMENT_MEMO", 10)
    counts = PartitionCounts("unused:9092", {"points": 3})
    for key in KEYS:
        assert counts.place("points", key) == partition_for(key, 3)
        assert len(counts._placed) <= 10


def test_unknown_topic_is_unavailable() -> None:
    with pytest.raises(BrokerUnavailable):
        PartitionCounts("unused:9092", {}).place("points", KEYS[0])
