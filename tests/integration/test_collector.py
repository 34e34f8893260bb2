"""The HTTP collector against the real Kafka: what it acknowledges is on the topic, what it
refuses is not, and it says why."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from ingestion.collector import (
    EVENTS_PATH,
    MAX_BATCH_EVENTS,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADER_FIELDS,
    CollectorConfig,
    create_app,
    serving_in_background,
)
from ingestion.contract import MAX_JSON_DEPTH, parse_message
from tests.support.factories import click_event, iso, pageview_event
from tests.support.kafka import consume_all

SHOP_ORIGIN = "http://127.0.0.1:8800"


def fresh(factory=pageview_event, **overrides: object) -> dict:
    """A contract event that happened just now (the collector bounds client clocks)."""
    return factory(**{"occurred_at": iso(datetime.now(UTC)), **overrides})


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


def nested(depth: int) -> object:
    """A JSON object whose objects (odd levels) and arrays (even levels) nest ``depth`` deep."""
    value: object = {} if depth % 2 else []
    for level in range(depth - 1, 0, -1):
        value = {"level": value} if level % 2 else [value]
    return value


def raw_request(url: str, request: bytes) -> bytes:
    """Send bytes as they are and return what came back until the server closed. A server that
    refuses early resets the connection while we still send; its answer is read all the same."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        # A request below this size leaves in one segment, so the server reads it in one go.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        with contextlib.suppress(ConnectionError):
            sock.sendall(request)
        answer = b""
        with contextlib.suppress(ConnectionError):
            while chunk := sock.recv(65536):
                answer += chunk
        return answer


def get_health_with_headers(headers: bytes) -> bytes:
    return b"GET /health HTTP/1.1\r\nHost: collector\r\nConnection: close\r\n" + headers + b"\r\n"


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
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        json.dumps(fresh(properties=nested(MAX_JSON_DEPTH))).encode(),
        json.dumps([fresh(properties=nested(MAX_JSON_DEPTH))]).encode(),
    ],
    ids=["arrays", "objects", "event-one-level-too-deep", "batch-event-one-level-too-deep"],
)
def test_json_nested_deeper_than_the_contract_allows_gets_400(collector, stack, topic, body):
    response = collector.post(EVENTS_PATH, content=body)
    assert response.status_code == 400
    assert f"{MAX_JSON_DEPTH}-level limit" in response.json()["error"]
    assert topic_size(stack.kafka_bootstrap, topic) == 0


@pytest.mark.integration
def test_an_event_at_the_depth_limit_is_accepted_alone_and_in_a_batch(collector, stack, topic):
    # The event object is level 1, so its properties may nest one level less than the limit.
    alone = fresh(properties=nested(MAX_JSON_DEPTH - 1))
    in_batch = fresh(properties=nested(MAX_JSON_DEPTH - 1))
    assert collector.post(EVENTS_PATH, json=alone).status_code == 200
    assert collector.post(EVENTS_PATH, json=[in_batch]).status_code == 200
    messages = consume_all(stack.kafka_bootstrap, topic, expected=2)
    assert [parse_message(m.value()).properties for m in messages] == [
        nested(MAX_JSON_DEPTH - 1)
    ] * 2


@pytest.mark.integration
def test_a_lone_surrogate_is_forwarded_and_loads_as_a_replacement_character(
    collector, stack, topic
):
    # What JSON.stringify writes for text the snippet cut inside a surrogate pair.
    event = fresh(page={"url": "https://shop.test/", "title": "Retro \ud83d"})
    body = json.dumps(event).encode()
    assert b"\\ud83d" in body

    response = collector.post(EVENTS_PATH, content=body)

    assert response.status_code == 200, response.text
    (message,) = consume_all(stack.kafka_bootstrap, topic, expected=1)
    assert b"Retro \\ud83d" in message.value()  # as the client spelled it
    assert parse_message(message.value()).page.title == "Retro \ufffd"


@pytest.mark.integration
def test_an_error_that_echoes_a_lone_surrogate_is_still_json(collector, stack, topic):
    event = fresh(event_id="\udc00")
    response = collector.post(EVENTS_PATH, content=json.dumps(event).encode())
    assert response.status_code == 400
    (problem,) = response.json()["problems"]
    assert problem["event_id"] == "\udc00"
    assert "event_id" in problem["reason"]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("1e999", "1e999 is out of range"),
        ("-2.5E+400", "-2.5E+400 is out of range"),
        ("9" * 5000, "integer of 5000 digits is too long"),
    ],
)
def test_numbers_the_pipeline_cannot_store_get_400_naming_them(
    collector, stack, topic, number, reason
):
    body = json.dumps(fresh(properties={"n": 0})).replace('"n": 0', f'"n": {number}')
    response = collector.post(EVENTS_PATH, content=body.encode())
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert topic_size(stack.kafka_bootstrap, topic) == 0


def test_a_content_length_of_non_ascii_digits_gets_400_not_500():
    # h11 refuses such a header itself; an ASGI server that passes it on must not cause a 500.
    config = CollectorConfig(kafka_bootstrap=f"127.0.0.1:{closed_port()}", topic="nowhere")
    # The ASGI transport runs no lifespan (so needs no Kafka) and passes the header on as it is.
    transport = httpx.ASGITransport(app=create_app(config), raise_app_exceptions=False)

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            headers = {"content-length": "\u00b2".encode("latin-1")}
            return await client.post(EVENTS_PATH, content=b"{oops", headers=headers)

    response = asyncio.run(post())
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]


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


# -- request headers ------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (b"X-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n", f"{MAX_HEADER_BYTES}-byte limit"),
        (
            b"".join(b"X-Field-%d: 1\r\n" % i for i in range(MAX_HEADER_FIELDS)),
            f"more than the {MAX_HEADER_FIELDS} allowed",
        ),
    ],
    ids=["bytes", "fields"],
)
def test_headers_over_a_limit_get_431_naming_it(collector, headers, reason):
    # Small enough to arrive in one read, which h11 parses whole whatever its own bound: the
    # app's check answers.
    answer = raw_request(str(collector.base_url), get_health_with_headers(headers))
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert reason in json.loads(rest.partition(b"\r\n\r\n")[2])["error"]


@pytest.mark.integration
@pytest.mark.parametrize(
    "make_headers",
    [
        lambda: b"X-Big: " + b"a" * 8_000_000 + b"\r\n",
        lambda: b"".join(b"X-Field-%d: 1\r\n" % i for i in range(100_000)),
    ],
    ids=["8-MB-header", "100k-fields"],
)
def test_a_huge_header_block_gets_400_and_the_server_stays_up(collector, make_headers):
    # h11 stops buffering past MAX_HEADER_BYTES; uvicorn answers 400 and closes the connection.
    answer = raw_request(str(collector.base_url), get_health_with_headers(make_headers()))
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert collector.get("/health").status_code == 200


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


@pytest.mark.integration
def test_retrolytics_collect_allows_no_browser_origin_unless_told(stack, topic, tmp_path: Path):
    """Without --allow-origin no page may send events, not even the demo shop's; requests
    without an Origin header (servers, scripts) still may."""
    port = closed_port()
    env = {**os.environ, "RETROLYTICS_KAFKA_BOOTSTRAP": stack.kafka_bootstrap}
    env["RETROLYTICS_TOPIC"] = topic
    command = [sys.executable, "-m", "retrolytics.cli", "collect", "--port", str(port)]
    log = tmp_path / "collect.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/health").status_code == 200:
                        break
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            from_shop = client.post(EVENTS_PATH, json=fresh(), headers={"Origin": SHOP_ORIGIN})
            from_server = client.post(EVENTS_PATH, json=fresh())
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert from_shop.status_code == 403
    assert "--allow-origin" in from_shop.json()["error"]
    assert from_server.status_code == 200
    assert topic_size(stack.kafka_bootstrap, topic) == 1
    assert "allowed origins: none" in log.read_text()


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
