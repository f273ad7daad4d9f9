"""Topic creation: every topic Strata uses, with the configured partition count."""

from __future__ import annotations

from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from strata.settings import CommonSettings


def topic_names(settings: CommonSettings) -> list[str]:
    return [
        settings.topic_points,
        settings.topic_series,
        settings.topic_sketches,
        settings.topic_dead_letter,
    ]


def ensure_topics(settings: CommonSettings, timeout: float = 15.0) -> dict[str, int]:
    """Create missing topics; return {topic: partition count} as the broker reports it.

    Existing topics keep their partition count (partitions cannot be added on tansu, and
    on Kafka adding them would move keys, so Strata never does it behind the user's back).
    """
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    existing = admin.list_topics(timeout=timeout).topics
    missing = [t for t in topic_names(settings) if t not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(t, num_partitions=settings.partitions, replication_factor=1)
                for t in missing
            ],
            operation_timeout=timeout,
        )
        for topic, fut in futures.items():
            try:
                fut.result()
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise RuntimeError(f"cannot create topic {topic}: {exc}") from exc
    meta = admin.list_topics(timeout=timeout).topics
    return {t: len(meta[t].partitions) for t in topic_names(settings) if t in meta}


def partition_count(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(topic, timeout=timeout).topics
    if topic not in meta or meta[topic].error is not None or not meta[topic].partitions:
        raise RuntimeError(f"topic {topic} does not exist on {bootstrap}")
    return len(meta[topic].partitions)


def topic_id(bootstrap: str, topic: str, timeout: float = 10.0) -> str | None:
    """The broker's unique id of ``topic`` (KIP-516), or ``None`` if the broker has none.

    A topic deleted and created again under the same name gets a new id; stores that keep
    applied offsets of their own compare ids to notice that their offsets no longer apply.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        desc = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout)
    except KafkaException as exc:
        raise RuntimeError(f"cannot describe topic {topic}: {exc}") from exc
    tid = getattr(desc, "topic_id", None)
    text = str(tid) if tid is not None else ""
    # An all-zero id means "unknown" in the Kafka protocol.
    return text if text and text.strip("A=") else None
