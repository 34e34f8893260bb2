"""``retrolytics generate``: the generated traffic produced to Kafka, keyed by device."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from demo.traffic.schedule import TrafficStats, check_arguments, generate
from ingestion.progress import Progress
from ingestion.settings import Settings
from ingestion.topics import RELIABLE_PRODUCER_CONFIG, ensure_topic


def _delivery_report(failures: list[KafkaError]) -> Callable[[KafkaError | None, Message], None]:
    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    return on_delivery


def produce(
    settings: Settings,
    events: int,
    days: int = 7,
    seed: int = 1,
    until: date | None = None,
    report: Callable[[str], None] | None = None,
    report_every_s: float = 10.0,
) -> str:
    """Generate ``events`` events and produce them to ``settings.topic``, keyed by device.

    ``report``, if given, receives a progress line (rate and ETA) every ``report_every_s``.
    Raises RuntimeError naming the Kafka error if the topic cannot be reached or any message is
    not acknowledged. Returns a one-line summary.
    """
    check_arguments(events, days)
    began = time.monotonic()
    try:
        ensure_topic(settings.kafka_bootstrap, settings.topic)
    except KafkaException as exc:
        raise RuntimeError(
            f"cannot prepare topic {settings.topic} on Kafka at {settings.kafka_bootstrap}: {exc}"
        ) from exc
    # No message timestamps from the simulated clock: the broker would apply its retention to
    # them and could delete week-old events right away. Kafka stamps the produce time instead.
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, **RELIABLE_PRODUCER_CONFIG})
    failures: list[KafkaError] = []
    on_delivery = _delivery_report(failures)
    stats = TrafficStats()
    progress = Progress(events)
    last_report = progress.started
    for sent, event in enumerate(generate(events, days, seed, until, stats), start=1):
        value = json.dumps(event, separators=(",", ":")).encode()
        key = event["anonymous_id"].encode()
        while True:
            try:
                producer.produce(settings.topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.5)
        producer.poll(0)
        if failures:
            break
        if report is not None and sent % 1000 == 0:
            now = time.monotonic()
            if now - last_report >= report_every_s:
                report(f"generate: {progress.line(sent, now)}")
                last_report = now
    undelivered = producer.flush(120)
    if failures:
        raise RuntimeError(
            f"{len(failures)} event(s) were not delivered to {settings.topic} at "
            f"{settings.kafka_bootstrap}; first error: {failures[0]}"
        )
    if undelivered:
        raise RuntimeError(
            f"{undelivered} event(s) still unacknowledged by Kafka at {settings.kafka_bootstrap} "
            f"after 120 s (topic {settings.topic})"
        )
    seconds = time.monotonic() - began
    return (
        f"produced {stats.events} events ({stats.sessions} sessions, {stats.devices} devices, "
        f"{stats.purchases} purchases, {stats.duplicates} duplicates of already sent events, "
        f"{stats.late} hours late) to {settings.topic} in {seconds:.1f} s"
    )
