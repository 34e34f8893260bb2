"""The HTTP collector against the real Kafka: what it acknowledges is on the topic, what it
refuses is not, and it says why."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from ingestion.collector import (
    EVENTS_PATH,
    MAX_BATCH_EVENTS,
    MAX_BODY_BYTES,
    CollectorConfig,
    create_app,
    serving_in_background,
)
from tests.factories import click_event, iso, pageview_event

SHOP_ORIGIN = "http://127.0.0.1:8800"


def fresh(factory=pageview_event, **overrides: object) -> dict:
    """A contract event that happened just now (the collector bounds client clocks)."""
    return factory(**{"occurred_at": iso(datetime.now(UTC)), **overrides})


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list:
    """Every message of the topic from the beginning, waiting until ``expected`` arrived."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=100, timeout=0.5):
                assert message.error() is None, message.error()
                messages.append(message)
        return messages
    finally:
        consumer.close()


def topic_size(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def collector(stack, topic: str) -> Iterator[httpx.Client]:
    config = CollectorConfig(
        kafka_bootstrap=stack.kafka_bootstrap, topic=topic, allow_origins=(SHOP_ORIGIN,)
    )
    with (
        serving_in_background(create_app(config)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


@pytest.fixture
def collector_without_kafka() -> Iterator[httpx.Client]:
    config = CollectorConfig(
        kafka_bootstrap=f"127.0.0.1:{closed_port()}", topic="nowhere", delivery_timeout_s=2
    )
    with (
        serving_in_background(create_app(config)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


# -- accepted events reach Kafka ------------------------------------------------------------


@pytest.mark.integration
def test_single_event_and_batch_are_on_the_topic_when_acknowledged(collector, stack, topic):
    single = fresh(anonymous_id="device-a")
    batch = [fresh(anonymous_id="device-b"), fresh(click_event, anonymous_id="device-c")]
    before = datetime.now(UTC)

    first = collector.post(EVENTS_PATH, json=single)
    second = collector.post(EVENTS_PATH, json=batch)

    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 1}
    assert second.status_code == 200, second.text
    assert second.json() == {"accepted": 2}
    messages = consume_all(stack.kafka_bootstrap, topic, expected=3)
    by_id = {json.loads(m.value())["event_id"]: m for m in messages}
    assert set(by_id) == {e["event_id"] for e in [single, *batch]}
    for event in [single, *batch]:
        message = by_id[event["event_id"]]
        stored = json.loads(message.value())
        assert message.key() == event["anonymous_id"].encode()
        received_at = datetime.fromisoformat(stored.pop("received_at"))
        assert before - timedelta(seconds=1) <= received_at <= datetime.now(UTC)
        event.pop("received_at")
        assert stored == event  # nothing else changed, unknown fields included


@pytest.mark.integration
def test_the_collector_clock_replaces_a_client_received_at(collector, stack, topic):
    event = fresh(received_at="2001-01-01T00:00:00Z")
    assert collector.post(EVENTS_PATH, json=event).status_code == 200
    (message,) = consume_all(stack.kafka_bootstrap, topic, expected=1)
    assert not json.loads(message.value())["received_at"].startswith("2001")


@pytest.mark.integration
def test_a_beacon_body_sent_as_text_plain_is_accepted(collector, stack, topic):
    events = [fresh(), fresh(extra_field={"kept": True})]
    response = collector.post(
        EVENTS_PATH,
        content=json.dumps(events),
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": SHOP_ORIGIN},
    )
    assert response.status_code == 200, response.text
    values = [json.loads(m.value()) for m in consume_all(stack.kafka_bootstrap, topic, 2)]
    assert {"kept": True} in [v.get("extra_field") for v in values]


# -- bad requests: 4xx with a reason, nothing on the topic ----------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b"{not json", "not JSON"),
        (b'"an event"', "JSON string"),
        (b"[]", "empty batch"),
        (b'{"value": NaN}', "NaN is not valid JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
def test_malformed_bodies_get_400_naming_the_problem(collector, stack, topic, body, reason):
    response = collector.post(EVENTS_PATH, content=body)
    assert response.status_code == 400
    assert reason in json.dumps(response.json())
    assert topic_size(stack.kafka_bootstrap, topic) == 0


@pytest.mark.integration
def test_a_partly_bad_batch_is_rejected_whole_with_a_reason_per_event(collector, stack, topic):
    good = fresh()
    no_target = fresh(click_event)
    del no_target["target"]
    future = fresh(occurred_at=iso(datetime.now(UTC) + timedelta(days=3)))
    long_id = fresh(anonymous_id="x" * 500)

    response = collector.post(EVENTS_PATH, json=[good, no_target, future, long_id])

    assert response.status_code == 400
    answer = response.json()
    assert "3 of 4 event(s)" in answer["error"]
    assert "whole batch was rejected" in answer["error"]
    problems = {p["index"]: p for p in answer["problems"]}
    assert set(problems) == {1, 2, 3}
    assert problems[1]["event_id"] == no_target["event_id"]
    assert "needs a target" in problems[1]["reason"]
    assert "client clock ahead" in problems[2]["reason"]
    assert "anonymous_id" in problems[3]["reason"]
    assert topic_size(stack.kafka_bootstrap, topic) == 0


@pytest.mark.integration
def test_an_oversized_body_gets_413(collector, stack, topic):
    event = fresh(properties={"blob": "x" * (MAX_BODY_BYTES + 10)})
    response = collector.post(EVENTS_PATH, json=event)
    assert response.status_code == 413
    assert f"{MAX_BODY_BYTES}-byte limit" in response.json()["error"]
    assert topic_size(stack.kafka_bootstrap, topic) == 0


@pytest.mark.integration
def test_an_event_larger_than_a_message_may_be_gets_400(collector, stack, topic):
    response = collector.post(EVENTS_PATH, json=fresh(properties={"blob": "x" * 70_000}))
    assert response.status_code == 400
    assert "byte limit" in response.json()["problems"][0]["reason"]


@pytest.mark.integration
def test_a_batch_over_the_event_limit_gets_413(collector, stack, topic):
    response = collector.post(EVENTS_PATH, json=[fresh() for _ in range(MAX_BATCH_EVENTS + 1)])
    assert response.status_code == 413
    assert f"{MAX_BATCH_EVENTS}-event limit" in response.json()["error"]
    assert topic_size(stack.kafka_bootstrap, topic) == 0


@pytest.mark.integration
def test_other_content_types_get_415(collector):
    response = collector.post(
        EVENTS_PATH, content=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.json()["error"]


@pytest.mark.integration
def test_get_on_the_events_endpoint_is_not_allowed(collector):
    assert collector.get(EVENTS_PATH).status_code == 405


# -- CORS -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_cors_preflight_allows_the_configured_origin_only(collector):
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    allowed = collector.options(EVENTS_PATH, headers={"Origin": SHOP_ORIGIN, **preflight})
    other = collector.options(EVENTS_PATH, headers={"Origin": "http://evil.test", **preflight})

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == SHOP_ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "content-type" in allowed.headers["access-control-allow-headers"].lower()
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.integration
def test_a_post_from_another_origin_is_refused_even_without_preflight(collector, stack, topic):
    refused = collector.post(
        EVENTS_PATH,
        content=json.dumps(fresh()),
        headers={"Origin": "http://evil.test", "Content-Type": "text/plain"},
    )
    allowed = collector.post(EVENTS_PATH, json=fresh(), headers={"Origin": SHOP_ORIGIN})

    assert refused.status_code == 403
    assert "http://evil.test" in refused.json()["error"]
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == SHOP_ORIGIN
    assert topic_size(stack.kafka_bootstrap, topic) == 1


# -- health, snippet, Kafka trouble ---------------------------------------------------------


@pytest.mark.integration
def test_health_reports_a_reachable_kafka_and_the_topic(collector, topic):
    response = collector.get("/health")
    assert response.status_code == 200
    kafka = response.json()["kafka"]
    assert kafka["reachable"] is True
    assert kafka["topic"] == topic
    assert kafka["topic_exists"] is True
    assert kafka["partitions"] == 6


@pytest.mark.integration
def test_the_snippet_is_served(collector):
    response = collector.get("/retrolytics.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert "sendBeacon" in response.text


def test_without_kafka_events_get_a_retryable_503_and_health_says_so(collector_without_kafka):
    response = collector_without_kafka.post(EVENTS_PATH, json=fresh())
    health = collector_without_kafka.get("/health")

    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert "Kafka" in response.json()["error"]
    assert health.status_code == 503
    assert health.json()["kafka"]["reachable"] is False


def test_without_kafka_bad_requests_still_get_their_4xx(collector_without_kafka):
    # Validation comes first: a client is never told to retry a request that can never succeed.
    response = collector_without_kafka.post(EVENTS_PATH, content=b"{oops")
    assert response.status_code == 400
