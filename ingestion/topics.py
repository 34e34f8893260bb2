"""Kafka topic administration and the producer settings every writer of raw events shares."""

from __future__ import annotations

import time

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

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
    """Create the topic if it does not exist yet (an existing topic is left as it is), and
    return once every partition has its leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=15).topics.get(topic)
    if existing is None or existing.error is not None:
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
            operation_timeout=30,
        )
        try:
            futures[topic].result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
            existing = admin.list_topics(topic, timeout=15).topics[topic]  # someone else's
    if existing is not None and existing.error is None:
        partitions = len(existing.partitions)
    _wait_until_led(admin, topic, partitions)


def _wait_until_led(admin: AdminClient, topic: str, partitions: int, timeout: float = 30) -> None:
    """Return once the broker answers offset requests for every partition of a new topic.

    The controller acknowledges a new topic before the broker has become its partitions' leader;
    in that gap offset queries fail with NOT_LEADER_FOR_PARTITION, UNKNOWN_LEADER_EPOCH and the
    like (producers would retry, a consumer's watermark query does not). The topic exists, so any
    error is taken as that gap until the deadline.
    """
    latest = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    deadline = time.monotonic() + timeout
    while True:
        try:
            for future in admin.list_offsets(latest, request_timeout=10).values():
                future.result()
            return
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_topics([topic], operation_timeout=30)
    futures[topic].result(timeout=30)
