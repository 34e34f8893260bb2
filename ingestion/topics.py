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


# How long a topic may take to get its leaders. Seconds on an idle machine; a broker starved of
# CPU by other work has been seen to need more than 30 s, and waiting costs only when it is slow.
READY_TIMEOUT_S = 180.0


def _wait_until_led(
    admin: AdminClient, topic: str, partitions: int, timeout: float = READY_TIMEOUT_S
) -> None:
    """Return once every partition of the topic has a leader that answers offset requests.

    The controller acknowledges a new topic before the broker has become its partitions' leader;
    in that gap offset queries fail with NOT_LEADER_FOR_PARTITION, UNKNOWN_LEADER_EPOCH, "No
    leaders found" and the like (producers would retry, a consumer's watermark query does not).
    Each round asks the broker for fresh metadata first, so a stale cached answer is never
    waited on; any error before the deadline is taken as that gap.
    """
    latest = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    deadline = time.monotonic() + timeout
    while True:
        try:
            if _all_partitions_led(admin, topic, partitions):
                for future in admin.list_offsets(latest, request_timeout=10).values():
                    future.result()
                return
            problem = "not every partition has a leader yet"
        except KafkaException as exc:
            problem = str(exc)
        if time.monotonic() > deadline:
            raise KafkaException(f"topic {topic!r} is not ready after {timeout:.0f} s: {problem}")
        time.sleep(0.2)


def _all_partitions_led(admin: AdminClient, topic: str, partitions: int) -> bool:
    described = admin.list_topics(topic, timeout=10).topics.get(topic)
    if described is None or described.error is not None:
        return False
    led = [p for p in described.partitions.values() if p.leader >= 0 and p.error is None]
    return len(led) == partitions


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_topics([topic], operation_timeout=30)
    futures[topic].result(timeout=30)
