"""Kafka topic administration and the producer settings every writer of raw events shares."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

DEFAULT_PARTITIONS = 6

# Nothing acknowledged may be lost: wait for every in-sync replica, and let the broker drop the
# duplicates that producer retries would otherwise write.
RELIABLE_PRODUCER_CONFIG = {
    "acks": "all",
    "enable.idempotence": True,
    "compression.type": "lz4",
    "linger.ms": 20,
}


def ensure_topic(bootstrap: str, topic: str, partitions: int = DEFAULT_PARTITIONS) -> None:
    """Create the topic if it does not exist yet; an existing topic is left as it is."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=15)
    if topic in metadata.topics and metadata.topics[topic].error is None:
        return
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=30,
    )
    try:
        futures[topic].result(timeout=30)
    except KafkaException as exc:
        if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_topics([topic], operation_timeout=30)
    futures[topic].result(timeout=30)
