"""Small builders for contract events and raw Kafka messages used across tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer

from ingestion.topics import RELIABLE_PRODUCER_CONFIG

BASE_TIME = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def click_event(**overrides: object) -> dict:
    """A valid click on the cart's checkout button, with its hierarchy from target to root."""
    event = {
        "event_id": str(uuid.uuid4()),
        "type": "click",
        "occurred_at": iso(BASE_TIME),
        "received_at": iso(BASE_TIME + timedelta(seconds=1)),
        "anonymous_id": "device-1",
        "session_id": "session-1",
        "page": {"url": "https://shop.test/cart", "title": "Cart"},
        "target": {
            "elements": [
                {"tag": "span", "classes": ["label"], "nth_child": 1},
                {
                    "tag": "button",
                    "classes": ["btn", "checkout"],
                    "nth_child": 3,
                    "attributes": {"type": "submit"},
                },
                {"tag": "form", "id": "cart", "nth_child": 1},
                {"tag": "body", "nth_child": 2},
                {"tag": "html", "nth_child": 1},
            ],
            "text": "Check out",
        },
    }
    event.update(overrides)
    return event


def pageview_event(**overrides: object) -> dict:
    event = {
        "event_id": str(uuid.uuid4()),
        "type": "pageview",
        "occurred_at": iso(BASE_TIME),
        "received_at": iso(BASE_TIME + timedelta(seconds=1)),
        "anonymous_id": "device-1",
        "session_id": "session-1",
        "page": {"url": "https://shop.test/products?page=2", "title": "Products"},
    }
    event.update(overrides)
    return event


def many_events(count: int, devices: int = 20) -> list[dict]:
    return [
        pageview_event(
            anonymous_id=f"device-{i % devices}",
            occurred_at=iso(BASE_TIME + timedelta(minutes=i)),
            received_at=iso(BASE_TIME + timedelta(minutes=i, seconds=1)),
        )
        for i in range(count)
    ]


def click_with_href(href: str, name: str = "href") -> dict:
    """A click on an element whose ``href`` (spelled ``name``) is ``href``."""
    event = click_event()
    event["target"]["elements"][0]["attributes"] = {name: href, "type": "button"}
    return event


LONG_HREF = "/search?q=" + "a" * 60_000  # the message stays under the 64 KiB limit


def encode(event: dict) -> bytes:
    return json.dumps(event).encode()


def produce(
    bootstrap: str, topic: str, payloads: Iterable[bytes | None], keys: Iterable[str] | None = None
) -> int:
    """Produce raw payloads reliably; returns how many the broker acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, **RELIABLE_PRODUCER_CONFIG})
    failures: list[str] = []
    acknowledged = 0

    def on_delivery(error, _message) -> None:
        nonlocal acknowledged
        if error is not None:
            failures.append(str(error))
        else:
            acknowledged += 1

    key_list = list(keys) if keys is not None else None
    for index, payload in enumerate(payloads):
        key = key_list[index] if key_list else None
        producer.produce(topic, value=payload, key=key, on_delivery=on_delivery)
        producer.poll(0)
    producer.flush(30)
    assert not failures, failures
    return acknowledged
