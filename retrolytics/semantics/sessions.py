"""Sessions, persons and devices, written down once, and a plain-Python reference that follows them.

The dbt models (``fct_sessions``, ``mart_sessions_daily``, ``dim_person_traits``,
``dim_persons``, ``dim_devices``) must produce exactly what this module computes from the same
events; the tests compare the two row by row.

Sessions
--------
A device's (``anonymous_id``'s) events, in order of ``occurred_at`` then ``event_id``, belong to
one session until the time since the previous event of the device is the timeout (30 minutes)
or more: an event exactly 30 minutes after the previous one starts a new session, one a
microsecond less continues it. Every event type is activity. Nothing else splits a session: not
midnight, not a new campaign or referrer (as Google Analytics 4, PostHog and Amplitude; Universal
Analytics split at both). The client's ``session_id`` never decides a boundary.

Per session: start and end (first and last ``occurred_at``), duration, events, pageviews, the
first event's id and client session id, how many distinct client session ids its events carry.
The *landing* is the first pageview, or the first event when the session has no pageview; the
landing page, referrer (and its host), UTM fields and user agent are the landing's. The exit page
is the last pageview's page (the last event's without a pageview). ``bounced``: the session is a
single pageview and nothing else. The person is the device's person at the session's start
(identity rules: ``retrolytics/semantics/funnels.py``, shared with the funnels).

Traits
------
A user's identify events, on any of their devices, in order of ``occurred_at`` then
``event_id``, set the traits they carry (the identify's properties). A trait an identify does not
mention keeps its value; setting a trait to a value equal to its current one (JSON equality)
changes nothing. Each value a trait takes is one row, valid from the identify that set it
(inclusive) to the next change (exclusive; infinity while current). Before its first identify a
trait has no value.

Persons and devices
-------------------
A person is every user that identified (``user:<id>``) and every device never identified
(``device:<anonymous_id>``). Seen from its sessions and from the identify events that started
its identity periods; its devices are those of both; its first touch is the landing of its
first session (by start, then device). A device's row describes its sessions: first touch from
the first, browser, OS and device from the latest; its person is the one it belongs to now.
"""

from __future__ import annotations

import statistics
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from ingestion import user_agents
from retrolytics.semantics.funnels import identity_periods, json_key

TIMEOUT = timedelta(minutes=30)
INFINITY = datetime.max.replace(tzinfo=UTC)  # stands for 'infinity'::timestamptz


@dataclass(frozen=True)
class Event:
    event_id: uuid.UUID
    anonymous_id: str
    occurred_at: datetime
    type: str
    user_id: str | None = None
    client_session_id: str | None = None
    page_path: str | None = None
    referrer: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    user_agent: str | None = None
    traits: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Session:
    anonymous_id: str
    session_start: datetime
    session_end: datetime
    duration_seconds: float
    session_day: date
    first_event_id: uuid.UUID
    client_session_id: str | None
    client_session_count: int
    event_count: int
    pageview_count: int
    bounced: bool
    landing_page: str | None
    exit_page: str | None
    referrer: str | None
    referrer_host: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    browser_family: str | None
    os_family: str | None
    device_family: str | None
    is_bot: bool
    person_id: str
    user_id: str | None


@dataclass
class TraitVersion:
    person_id: str
    user_id: str
    trait: str
    value: Any
    valid_from: datetime
    valid_to: datetime
    set_by_event_id: uuid.UUID
    set_on_device: str
    is_current: bool


@dataclass
class Person:
    person_id: str
    user_id: str | None
    is_identified: bool
    first_seen_at: datetime
    last_seen_at: datetime
    session_count: int
    devices: list[str]
    first_utm_source: str | None
    first_landing_page: str | None
    traits: dict[str, Any]


@dataclass
class Device:
    anonymous_id: str
    first_seen_at: datetime
    last_seen_at: datetime
    session_count: int
    event_count: int
    first_utm_source: str | None
    browser_family: str | None
    os_family: str | None
    is_bot: bool
    person_id: str
    user_id: str | None


@dataclass
class Day:
    session_day: date
    sessions: int
    devices: int
    persons: int
    pageviews: int
    bounced_sessions: int
    bounce_rate: float
    median_duration_seconds: float
    mean_duration_seconds: float


def _order(event: Event) -> tuple:
    return (event.occurred_at, event.event_id)


def split_sessions(events: Iterable[Event], timeout: timedelta = TIMEOUT) -> list[list[Event]]:
    """Each device's events cut where the gap is ``timeout`` or more; every list in time order."""
    by_device: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_device[event.anonymous_id].append(event)
    sessions = []
    for device_events in by_device.values():
        current: list[Event] = []
        for event in sorted(device_events, key=_order):
            if current and event.occurred_at - current[-1].occurred_at >= timeout:
                sessions.append(current)
                current = []
            current.append(event)
        sessions.append(current)
    return sessions


def _host(url: str | None) -> str | None:
    return urlsplit(url).hostname if url else None


def _person_at(periods: dict, device: str, moment: datetime) -> tuple[str, str | None]:
    device_periods = periods.get(device)
    if not device_periods:
        return f"device:{device}", None
    user = device_periods[0][1]
    for start, user_id in device_periods[1:]:
        if moment >= start:
            user = user_id
    return f"user:{user}", user


def sessions(events: Sequence[Event], timeout: timedelta = TIMEOUT) -> list[Session]:
    periods = identity_periods(events)  # type: ignore[arg-type]
    return [_session(chunk, periods) for chunk in split_sessions(events, timeout)]


def session_of_events(
    events: Sequence[Event], timeout: timedelta = TIMEOUT
) -> dict[uuid.UUID, Session]:
    """Each event's session, by event_id (the funnels' `unit: session` and session breakdown)."""
    periods = identity_periods(events)  # type: ignore[arg-type]
    found = {}
    for chunk in split_sessions(events, timeout):
        session = _session(chunk, periods)
        found.update((event.event_id, session) for event in chunk)
    return found


def _session(chunk: list[Event], periods: dict) -> Session:
    first, last = chunk[0], chunk[-1]
    pageviews = [e for e in chunk if e.type == "pageview"]
    landing = pageviews[0] if pageviews else first
    exit_event = pageviews[-1] if pageviews else last
    agent = (
        dict(zip(user_agents.COLUMNS, user_agents.parse(landing.user_agent), strict=True))
        if landing.user_agent is not None
        else {}
    )
    person_id, user_id = _person_at(periods, first.anonymous_id, first.occurred_at)
    return Session(
        anonymous_id=first.anonymous_id,
        session_start=first.occurred_at,
        session_end=last.occurred_at,
        duration_seconds=(last.occurred_at - first.occurred_at).total_seconds(),
        session_day=first.occurred_at.astimezone(UTC).date(),
        first_event_id=first.event_id,
        client_session_id=first.client_session_id,
        client_session_count=len({e.client_session_id for e in chunk} - {None}),
        event_count=len(chunk),
        pageview_count=len(pageviews),
        bounced=len(chunk) == 1 and len(pageviews) == 1,
        landing_page=landing.page_path,
        exit_page=exit_event.page_path,
        referrer=landing.referrer,
        referrer_host=_host(landing.referrer),
        utm_source=landing.utm_source,
        utm_medium=landing.utm_medium,
        utm_campaign=landing.utm_campaign,
        browser_family=agent.get("browser_family"),
        os_family=agent.get("os_family"),
        device_family=agent.get("device_family"),
        is_bot=bool(agent.get("is_bot")),
        person_id=person_id,
        user_id=user_id,
    )


def trait_history(events: Iterable[Event]) -> list[TraitVersion]:
    identifies = sorted(
        (e for e in events if e.type == "identify" and e.user_id), key=lambda e: _order(e)
    )
    # (person, trait) -> its versions so far, oldest first
    versions: dict[tuple[str, str], list[TraitVersion]] = defaultdict(list)
    for event in identifies:
        person_id = f"user:{event.user_id}"
        for trait, value in event.traits.items():
            history = versions[(person_id, trait)]
            if history and json_key(history[-1].value) == json_key(value):
                continue
            if history:
                history[-1].valid_to = event.occurred_at
                history[-1].is_current = False
            history.append(
                TraitVersion(
                    person_id=person_id,
                    user_id=event.user_id,  # type: ignore[arg-type]
                    trait=trait,
                    value=value,
                    valid_from=event.occurred_at,
                    valid_to=INFINITY,
                    set_by_event_id=event.event_id,
                    set_on_device=event.anonymous_id,
                    is_current=True,
                )
            )
    return [version for history in versions.values() for version in history]


def trait_at(history: Iterable[TraitVersion], person_id: str, trait: str, moment: datetime) -> Any:
    """A trait's value as it was at ``moment`` (None before it was first set)."""
    for version in history:
        if (version.person_id, version.trait) == (person_id, trait) and (
            version.valid_from <= moment < version.valid_to
        ):
            return version.value
    return None


def persons(events: Sequence[Event], built: Sequence[Session]) -> list[Person]:
    periods = identity_periods(events)  # type: ignore[arg-type]
    identified: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for device, device_periods in periods.items():
        for start, user_id in device_periods:
            identified[f"user:{user_id}"].append((start, device))
    by_person: dict[str, list[Session]] = defaultdict(list)
    for session in built:
        by_person[session.person_id].append(session)
    current_traits: dict[str, dict[str, Any]] = defaultdict(dict)
    for version in trait_history(events):
        if version.is_current:
            current_traits[version.person_id][version.trait] = version.value
    rows = []
    for person_id in set(by_person) | set(identified):
        own = sorted(by_person.get(person_id, []), key=lambda s: (s.session_start, s.anonymous_id))
        starts = [moment for moment, _ in identified.get(person_id, [])]
        seen = [s.session_start for s in own] + starts
        last = [s.session_end for s in own] + starts
        devices = {s.anonymous_id for s in own} | {d for _, d in identified.get(person_id, [])}
        rows.append(
            Person(
                person_id=person_id,
                user_id=person_id[len("user:") :] if person_id.startswith("user:") else None,
                is_identified=person_id in identified,
                first_seen_at=min(seen),
                last_seen_at=max(last),
                session_count=len(own),
                devices=sorted(devices),
                first_utm_source=own[0].utm_source if own else None,
                first_landing_page=own[0].landing_page if own else None,
                traits=current_traits.get(person_id, {}),
            )
        )
    return rows


def devices(events: Sequence[Event], built: Sequence[Session]) -> list[Device]:
    periods = identity_periods(events)  # type: ignore[arg-type]
    by_device: dict[str, list[Session]] = defaultdict(list)
    for session in built:
        by_device[session.anonymous_id].append(session)
    rows = []
    for device, own in by_device.items():
        own.sort(key=lambda s: s.session_start)
        current = periods.get(device)
        rows.append(
            Device(
                anonymous_id=device,
                first_seen_at=own[0].session_start,
                last_seen_at=max(s.session_end for s in own),
                session_count=len(own),
                event_count=sum(s.event_count for s in own),
                first_utm_source=own[0].utm_source,
                browser_family=own[-1].browser_family,
                os_family=own[-1].os_family,
                is_bot=any(s.is_bot for s in own),
                person_id=f"user:{current[-1][1]}" if current else f"device:{device}",
                user_id=current[-1][1] if current else None,
            )
        )
    return rows


def daily(built: Iterable[Session]) -> list[Day]:
    by_day: dict[date, list[Session]] = defaultdict(list)
    for session in built:
        if not session.is_bot:
            by_day[session.session_day].append(session)
    rows = []
    for day, own in by_day.items():
        durations = [s.duration_seconds for s in own]
        bounced = sum(s.bounced for s in own)
        rows.append(
            Day(
                session_day=day,
                sessions=len(own),
                devices=len({s.anonymous_id for s in own}),
                persons=len({s.person_id for s in own}),
                pageviews=sum(s.pageview_count for s in own),
                bounced_sessions=bounced,
                bounce_rate=bounced / len(own),
                median_duration_seconds=statistics.median(durations),
                mean_duration_seconds=statistics.fmean(durations),
            )
        )
    return rows
