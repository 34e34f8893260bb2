"""The demo's traffic generator against the real Kafka."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from confluent_kafka import Consumer

from demo import traffic
from demo.traffic import generate_events
from ingestion.settings import Settings

UNTIL = date(2026, 11, 24)


@pytest.mark.integration
def test_produce_writes_every_event_keyed_by_device(settings: Settings) -> None:
    summary = traffic.produce(settings, events=2000, days=3, seed=9, until=UNTIL)
    assert summary.startswith("produced 2000 events (") and settings.topic in summary

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-generator-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.topic])
    received = []
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    try:
        while len(received) < 2000 and datetime.now(UTC) < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            assert message.error() is None, message.error()
            received.append((message.key().decode(), json.loads(message.value())))
    finally:
        consumer.close()

    assert len(received) == 2000
    assert all(key == event["anonymous_id"] for key, event in received)
    expected = generate_events(2000, 3, seed=9, until=UNTIL)
    assert Counter(json.dumps(e, sort_keys=True) for _, e in received) == Counter(
        json.dumps(e, sort_keys=True) for e in expected
    )
