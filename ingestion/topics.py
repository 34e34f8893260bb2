"""Kafka topic administration and the producer settings every writer of raw events shares."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic, OffsetSpec

DEFAULT_PARTITIONS = 6

# Nothing acknowledged may be lost: wait for every in-sync replica, and let the broker drop the
# duplicates that producer retries would otherwise write.
RELIABLE_PRODUCER_CONFIG = {
    "acks": "all",
    "enable.idempotence": True,
    "compression.type": "lz4",
    "linger.ms": 20,
}


# How long a topic may take to exist with every partition led. Seconds on an idle machine; a
# broker starved of CPU by other work has been seen to need more than 30 s, and waiting costs only
# when it is slow.
READY_TIMEOUT_S = 180.0
ADMIN_REQUEST_TIMEOUT_S = 10.0  # one admin request; a slow one is asked again until the deadline
# A broker that has not answered one request in this time is taken for down (a wrong address, a
# stopped Kafka): said at once rather than after the whole deadline. Once it has answered, the
# deadline governs: a loaded broker answers metadata long before its partitions have leaders.
UNREACHABLE_AFTER_S = 15.0

# Errors no wait mends (a bad name or replication factor, a refused authorization): raised at once.
_PERMANENT_ERRORS = {
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.INVALID_PARTITIONS,
    KafkaError.INVALID_REPLICATION_FACTOR,
    KafkaError.INVALID_REPLICA_ASSIGNMENT,
    KafkaError.INVALID_CONFIG,
    KafkaError.POLICY_VIOLATION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError._INVALID_ARG,
}


def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int = DEFAULT_PARTITIONS,
    timeout: float = READY_TIMEOUT_S,
) -> None:
    """Create the topic if it does not exist yet (an existing topic is left as it is), and
    return once every partition has a leader that answers offset requests.

    Every admin request shares one deadline, ``timeout`` seconds away: on a loaded machine any of
    them can time out, and a new topic's partitions answer "No leaders found",
    NOT_LEADER_FOR_PARTITION and the like until the broker has become their leader (producers
    would retry, a consumer's watermark query does not). Each round asks the broker afresh, so a
    stale cached answer is never waited on; only errors no wait mends, and a broker that has not
    answered at all in ``UNREACHABLE_AFTER_S``, are raised before the deadline.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    started = time.monotonic()
    answered = False  # has the broker answered any request yet?
    count: int | None = None  # the topic's partitions, once known
    while True:
        limit = timeout if answered else min(timeout, UNREACHABLE_AFTER_S)
        left = started + limit - time.monotonic()
        request_timeout = max(1.0, min(ADMIN_REQUEST_TIMEOUT_S, left))
        try:
            if count is None:
                metadata = admin.list_topics(timeout=request_timeout)
                answered = True
                count = _partition_count(admin, metadata, topic, partitions, request_timeout)
            if count is None:
                problem = "the topic exists but its metadata is not visible yet"
            elif _all_partitions_answer(admin, topic, count, request_timeout):
                return
            else:
                problem = "not every partition has a leader yet"
        except KafkaException as exc:
            if _is_permanent(exc):
                raise
            problem = str(exc)
        except TimeoutError:  # a future that outlived its request (librdkafka answers late)
            problem = "an admin request timed out"
        if not answered:
            problem = f"Kafka has not answered any request ({problem})"
        limit = timeout if answered else min(timeout, UNREACHABLE_AFTER_S)
        if time.monotonic() - started >= limit:
            raise KafkaException(
                f"topic {topic!r} on {bootstrap} is not ready after {limit:.0f} s: {problem}"
            )
        time.sleep(0.2)


def _is_permanent(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and (error.fatal() or error.code() in _PERMANENT_ERRORS)


def _partition_count(
    admin: AdminClient, metadata: ClusterMetadata, topic: str, partitions: int, timeout: float
) -> int | None:
    """How many partitions the topic has, creating it with ``partitions`` if it is missing; None
    when another creation (someone else's, or an earlier request of ours that timed out) is not
    visible yet."""
    existing = metadata.topics.get(topic)
    if existing is not None and existing.error is None:
        return len(existing.partitions)
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    try:
        futures[topic].result(timeout=timeout + 5)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return None
        raise
    return partitions


def _all_partitions_answer(admin: AdminClient, topic: str, partitions: int, timeout: float) -> bool:
    described = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if described is None or described.error is not None:
        return False
    led = [p for p in described.partitions.values() if p.leader >= 0 and p.error is None]
    if len(led) != partitions:
        return False
    latest = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    for future in admin.list_offsets(latest, request_timeout=timeout).values():
        future.result(timeout=timeout + 5)
    return True


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_topics([topic], operation_timeout=30)
    futures[topic].result(timeout=30)
