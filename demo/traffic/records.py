"""The records a simulated event passes through: what the client sent, then what the collector
received."""

from __future__ import annotations

from typing import Any, NamedTuple


class ClientEvent(NamedTuple):
    """One event as a simulated browser sends it."""

    occurred_ms: int
    type: str
    name: str | None
    user_id: str | None
    page: dict[str, Any]
    target: dict[str, Any] | None
    properties: dict[str, Any] | None
    context: dict[str, Any]
    id_bits: int  # the 128 random bits of its event_id


class Received(NamedTuple):
    """One message as the collector received it: a client event of a device's session, maybe
    a retried copy of one received before."""

    received_ms: int
    event: ClientEvent
    anonymous_id: str
    session_id: str
    is_duplicate: bool
