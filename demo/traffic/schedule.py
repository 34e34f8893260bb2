"""The whole run: which sessions happen, and their messages merged in the order the collector
received them, with the same result for the same arguments."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from demo.traffic.delivery import Timestamps, deliver, to_event
from demo.traffic.population import DAY_MS, HOUR_MS, Person, busy, new_person
from demo.traffic.records import Received
from demo.traffic.visit import Visit

SESSION_TIMEOUT_MS = 30 * 60 * 1000
MAX_SESSIONS_PER_PERSON = 40


class SimulatedSession(NamedTuple):
    messages: list[Received]
    next_start_ms: int | None  # the person's next session, if they come back in the window
    anonymous_id: str  # of the device used


class PlannedSession(NamedTuple):
    """A session of the run, ordered by its start; ``keep``: how many of its messages count."""

    start_ms: int
    person_index: int
    number: int  # the person's first session is 0
    keep: int
    is_persons_last: bool


class Pending(NamedTuple):
    """A message waiting for every earlier-received one; ``order`` breaks ties stably."""

    received_ms: int
    order: int
    message: Received


@dataclass
class TrafficStats:
    """What a run generated; filled while its events are being consumed."""

    events: int = 0
    persons: int = 0
    sessions: int = 0
    devices: int = 0
    purchases: int = 0
    duplicates: int = 0
    late: int = 0


def simulate_session(
    seed: int, person_index: int, number: int, person: Person, start_ms: int, end_ms: int
) -> SimulatedSession:
    """One session of a person, and when they come back.

    Its own random stream, keyed by (seed, person, session number), lets a second pass replay the
    session alone, in global time order, and get exactly the same events.
    """
    rng = random.Random(f"retrolytics/{seed}/{person_index}/{number}")
    devices = person.devices
    device = devices[0] if len(devices) == 1 or rng.random() < 0.55 else devices[1]
    visit = Visit(rng, person, device, start_ms, end_ms)
    visit.run()
    messages = deliver(rng, visit)
    comes_back = 0.28 + (0.25 if device.cart else 0.0) + (0.15 if len(devices) > 1 else 0.0)
    if visit.purchased:
        comes_back = 0.2
    next_start = None
    if number + 1 < MAX_SESSIONS_PER_PERSON and rng.random() < comes_back:
        earliest = visit.t + SESSION_TIMEOUT_MS + 60_000
        for _ in range(20):
            mean_hours = 2.0 if rng.random() < 0.35 else 40.0
            candidate = earliest + int(rng.expovariate(1 / mean_hours) * HOUR_MS)
            if rng.random() < busy(candidate):
                break
        if candidate < end_ms:
            next_start = candidate
    return SimulatedSession(messages, next_start, device.anonymous_id)


def _person(seed: int, index: int, start_ms: int, end_ms: int) -> Person:
    return new_person(random.Random(f"retrolytics/{seed}/person/{index}"), start_ms, end_ms)


def _window(days: int, until: date) -> tuple[int, int]:
    first = datetime.combine(until - timedelta(days=days - 1), datetime.min.time(), UTC)
    start_ms = int(first.timestamp()) * 1000
    return start_ms, start_ms + days * DAY_MS


def _plan(events: int, seed: int, start_ms: int, end_ms: int) -> tuple[list[PlannedSession], int]:
    """First pass: simulate whole persons until ``events`` messages, keeping only the schedule.

    Returns the sessions in the order simulated and the number of persons.
    """
    schedule: list[PlannedSession] = []
    total = 0
    person_index = 0
    while total < events:
        person = _person(seed, person_index, start_ms, end_ms)
        start: int | None = person.first_visit_ms
        number = 0
        first_of_person = len(schedule)
        while start is not None and total < events:
            session = simulate_session(seed, person_index, number, person, start, end_ms)
            keep = min(len(session.messages), events - total)
            schedule.append(PlannedSession(start, person_index, number, keep, False))
            total += keep
            start, number = session.next_start_ms, number + 1
        if len(schedule) > first_of_person:
            schedule[-1] = schedule[-1]._replace(is_persons_last=True)
        person_index += 1
    return schedule, person_index


def check_arguments(events: int, days: int) -> None:
    if not isinstance(events, int) or events < 1:
        raise ValueError(f"events must be a positive whole number, got {events!r}")
    if not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive whole number, got {days!r}")


def generate(
    events: int, days: int, seed: int, until: date | None, stats: TrafficStats
) -> Iterator[dict]:
    """``generate_events``, counting what it yields into ``stats``."""
    check_arguments(events, days)
    start_ms, end_ms = _window(days, until or datetime.now(UTC).date())
    schedule, stats.persons = _plan(events, seed, start_ms, end_ms)
    schedule.sort()
    stats.sessions = len(schedule)
    persons: dict[int, Person] = {}
    devices: set[str] = set()
    pending: list[Pending] = []
    order = 0
    timestamp = Timestamps()

    def release(before_ms: int | None) -> Iterator[dict]:
        # Every later session starts at or after before_ms, so its messages arrive after it.
        while pending and (before_ms is None or pending[0].received_ms <= before_ms):
            message = heapq.heappop(pending).message
            stats.events += 1
            if message.is_duplicate:
                stats.duplicates += 1
            elif message.event.name == "purchase_completed":
                stats.purchases += 1
            if message.received_ms - message.event.occurred_ms >= HOUR_MS:
                stats.late += 1
            yield to_event(message, timestamp)

    for planned in schedule:
        yield from release(planned.start_ms)
        index = planned.person_index
        person = persons.get(index)
        if person is None:
            person = persons[index] = _person(seed, index, start_ms, end_ms)
        session = simulate_session(seed, index, planned.number, person, planned.start_ms, end_ms)
        devices.add(session.anonymous_id)
        for message in session.messages[: planned.keep]:
            heapq.heappush(pending, Pending(message.received_ms, order, message))
            order += 1
        if planned.is_persons_last:
            del persons[index]
    stats.devices = len(devices)
    yield from release(None)


def generate_events(events: int, days: int, seed: int, until: date | None = None) -> Iterator[dict]:
    """Exactly ``events`` contract events (duplicates included), in the order received.

    Deterministic for the arguments; ``until`` (default: today, UTC) is the last day of the
    ``days``-day window. The dicts share nested objects: treat them as read-only.
    """
    return generate(events, days, seed, until, TrafficStats())
