"""How a visit's events reach the collector: a short network delay, some hours late, a few sent
twice; and the contract event each received message becomes."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

from demo.traffic.population import HOUR_MS
from demo.traffic.records import Received
from demo.traffic.visit import Visit

LATE_SHARE = 0.01
DUPLICATE_SHARE = 0.002


def deliver(rng: random.Random, visit: Visit) -> list[Received]:
    """Collector receive times: a short network delay, ~1% hours late, ~0.2% sent twice."""
    anonymous_id, session_id = visit.device.anonymous_id, visit.session_id
    slowest = 900 if visit.device.kind == "desktop" else 2500
    messages = []
    for event in visit.events:
        occurred = event.occurred_ms
        r = rng.random()
        if r < LATE_SHARE:
            received = occurred + rng.randint(HOUR_MS, 6 * HOUR_MS)
        else:
            received = occurred + rng.randint(30, slowest)
        messages.append(Received(received, event, anonymous_id, session_id, False))
        if LATE_SHARE <= r < LATE_SHARE + DUPLICATE_SHARE:
            retried = received + rng.randint(1000, 30_000)
            messages.append(Received(retried, event, anonymous_id, session_id, True))
    return messages


class Timestamps:
    """RFC 3339 UTC text for epoch milliseconds, caching the part up to the minute."""

    def __init__(self) -> None:
        self.minutes: dict[int, str] = {}

    def __call__(self, ms: int) -> str:
        minute, rest = divmod(ms, 60_000)
        prefix = self.minutes.get(minute)
        if prefix is None:
            moment = datetime.fromtimestamp(minute * 60, UTC)
            prefix = moment.strftime("%Y-%m-%dT%H:%M:")
            self.minutes[minute] = prefix
        seconds, millis = divmod(rest, 1000)
        return f"{prefix}{seconds:02d}.{millis:03d}Z"


def to_event(message: Received, timestamp: Timestamps) -> dict[str, Any]:
    """The raw event contract's JSON object for a received message."""
    client = message.event
    event: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=client.id_bits, version=4)),
        "type": client.type,
    }
    if client.name:
        event["name"] = client.name
    event["occurred_at"] = timestamp(client.occurred_ms)
    event["received_at"] = timestamp(message.received_ms)
    event["anonymous_id"] = message.anonymous_id
    event["user_id"] = client.user_id
    event["session_id"] = message.session_id
    event["page"] = client.page
    event["context"] = client.context
    if client.target:
        event["target"] = client.target
    if client.properties:
        event["properties"] = client.properties
    return event
