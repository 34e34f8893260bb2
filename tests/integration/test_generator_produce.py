"""The demo's traffic generator against the real Kafka."""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from confluent_kafka import Consumer

from benchmarks.bulk import COPY_EVENT_ID_SQL
from demo import traffic
from demo.traffic import generate_events
from demo.traffic.to_kafka import COPIED_IDS, copy_event_id
from ingestion.settings import Settings
from tests.support.loading import drain

UNTIL = date(2026, 11, 24)


@pytest.mark.integration
def test_produce_writes_every_event_keyed_by_device(settings: Settings) -> None:
    summary = traffic.produce(settings, events=2000, days=3, seed=9, until=UNTIL)
    assert summary.startswith("produced 2000 events (") and settings.topic in summary

    received = _consume(settings, 2000)
    assert all(key == event["anonymous_id"] for key, event in received)
    expected = generate_events(2000, 3, seed=9, until=UNTIL)
    assert Counter(json.dumps(e, sort_keys=True) for _, e in received) == Counter(
        json.dumps(e, sort_keys=True) for e in expected
    )


def _consume(settings: Settings, count: int) -> list[tuple[str, dict]]:
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
    partitions: defaultdict[bytes, set[int]] = defaultdict(set)
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    try:
        while len(received) < count and datetime.now(UTC) < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            assert message.error() is None, message.error()
            received.append((message.key().decode(), json.loads(message.value())))
            partitions[message.key()].add(message.partition())
    finally:
        consumer.close()
    assert len(received) == count, f"{len(received)} of {count} messages within 60 s"
    # Keyed by device: each device's events on one partition, the devices over several.
    spread = {key: used for key, used in partitions.items() if len(used) > 1}
    assert not spread, f"devices on several partitions: {spread}"
    assert len(set().union(*partitions.values())) > 1
    return received


@pytest.mark.integration
def test_a_sample_and_its_copies_are_other_peoples_traffic_that_loads_whole(
    settings: Settings,
) -> None:
    summary = traffic.produce(settings, events=2500, days=3, seed=9, until=UNTIL, sample=1000)
    assert summary.startswith("produced 2500 events (a sample of 1000 generated (")

    received = _consume(settings, 2500)
    assert all(key == event["anonymous_id"] for key, event in received)
    sample = list(generate_events(1000, 3, seed=9, until=UNTIL))
    by_copy = Counter(event["anonymous_id"].partition("~")[2] for _, event in received)
    assert by_copy == {"": 1000, "1": 1000, "2": 500}
    # A copy is the sample's event by another device and person, with an id of its own.
    first_copy = [event for _, event in received if event["anonymous_id"].endswith("~1")]
    assert Counter(map(_without_copy_ids, first_copy)) == Counter(map(_without_copy_ids, sample))
    assert not {e["event_id"] for e in first_copy} & {e["event_id"] for e in sample}
    for name in COPIED_IDS:
        assert all(e[name] is None or e[name].endswith("~1") for e in first_copy), name
    # The sample's duplicates (the same event sent twice) stay duplicates in every copy.
    distinct = len({e["event_id"] for e in sample})
    assert len({event["event_id"] for _, event in received}) == distinct * 2 + len(
        {e["event_id"] for e in sample[:500]}
    )
    stats = drain(settings)
    assert stats.dead_letters == 0
    assert stats.loaded == len({event["event_id"] for _, event in received})


def _without_copy_ids(event: dict) -> str:
    """The event with the copy's suffix taken off its ids and no event id: what a copy keeps."""
    ids = {name: (event[name] or "").partition("~")[0] for name in COPIED_IDS}
    return json.dumps({**event, **ids, "event_id": None}, sort_keys=True)


@pytest.mark.integration
def test_the_bulk_paths_copies_get_the_generators_event_ids(database_url: str) -> None:
    ids = [str(uuid.UUID(int=n)) for n in (0, 2**128 - 1, 0x7FFFFFFF << 96, 0x80000000 << 96)]
    ids += [str(uuid.uuid4()) for _ in range(50)]
    with psycopg.connect(database_url) as conn:
        for copy in (1, 2, 0x7FFFFFFF, 0xFFFFFFFF):
            in_sql = conn.execute(
                f"select ({COPY_EVENT_ID_SQL})::text from unnest(%(ids)s::uuid[]) as event_id",
                {"ids": ids, "copy": copy},
            ).fetchall()
            assert [row[0] for row in in_sql] == [copy_event_id(i, copy) for i in ids], copy
