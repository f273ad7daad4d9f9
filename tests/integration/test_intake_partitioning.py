"""confluent-kafka's ``murmur2`` partitioner places keys where strata.partitioning says.

Intake computes partitions itself and passes them explicitly; this test is the evidence that
any Kafka client using murmur2 (the Java default) agrees with that placement.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from strata.partitioning import partition_for, partition_key
from strata.servers import RunningServer

pytestmark = pytest.mark.integration

PARTITIONS = 7


def test_confluent_murmur2_matches_partition_for(tansu: RunningServer) -> None:
    topic = f"placement-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": tansu.address})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[
        topic
    ].result(15)

    keys = [partition_key(f"org{i % 5}", f"metric.{i}.x" + "y" * (i % 4)) for i in range(200)]
    keys += [b"", b"a", b"ab", b"abc", "ünï|cödé".encode()]
    placed: dict[bytes, int] = {}
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            key, partition = msg.key(), msg.partition()
            assert key is not None and partition is not None
            placed[key] = partition

    producer = Producer({"bootstrap.servers": tansu.address, "partitioner": "murmur2"})
    for key in keys:
        producer.produce(topic, b"v", key, on_delivery=delivered)
    assert producer.flush(15) == 0
    assert errors == []
    assert placed == {k: partition_for(k, PARTITIONS) for k in keys}
    assert len(set(placed.values())) == PARTITIONS
