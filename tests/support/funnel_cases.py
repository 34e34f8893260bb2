"""Shared builders for funnel tests: funnels from YAML text, and small reference events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from retrolytics.language.funnels import Funnel, parse_funnel
from retrolytics.language.sources import parse_yaml
from retrolytics.semantics.funnels import Event

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def funnel_from_yaml(text: str) -> Funnel:
    """One funnel from the YAML of a list item (without the ``funnels:`` key)."""
    document = parse_yaml("funnels:\n" + _indent(text), "test.yml")
    assert not document.problems, document.problems
    item = document.data["funnels"][0]
    funnel, problems = parse_funnel(item, "test.yml", item.line, 0)
    assert funnel is not None, [str(p) for p in problems]
    return funnel


def _indent(text: str) -> str:
    lines = [line for line in text.strip("\n").splitlines()]
    width = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    body = [line[width:] for line in lines]
    return "\n".join(("  - " if i == 0 else "    ") + line for i, line in enumerate(body)) + "\n"


_counter = iter(range(1, 10**9))


def ev(
    device: str,
    minutes: float,
    name: str | None = None,
    *,
    type: str = "custom",
    props: dict[str, Any] | None = None,
    user: str | None = None,
    fields: dict[str, str | None] | None = None,
    event_id: int | None = None,
    definitions: set[str] | None = None,
) -> Event:
    """An event ``minutes`` after T0; a custom event ``name`` matches definition ``did_<name>``.
    Event ids grow with creation order unless ``event_id`` is given (to test ties)."""
    number = event_id if event_id is not None else next(_counter)
    if definitions is None:
        definitions = {f"did_{name}"} if type == "custom" and name else set()
    return Event(
        event_id=uuid.UUID(int=number),
        anonymous_id=device,
        occurred_at=T0 + timedelta(minutes=minutes),
        type=type,
        name=name if type == "custom" else None,
        user_id=user,
        properties=props or {},
        fields=fields or {},
        definitions=frozenset(definitions),
    )


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)
