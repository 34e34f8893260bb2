"""The retention semantics, written down once, and a plain-Python reference that follows them.

The dbt models (``fct_retention_activity``, ``mart_retention``) must produce exactly what this
module computes from the same events; the tests compare the two row by row.

Units
-----
``unit: device`` counts devices (``anonymous_id``); ``unit: user`` counts persons, an event
belonging to the person of its device at its time (the identity rules of
``retrolytics/semantics/funnels.py``: ``user:<id>``, or ``device:<id>`` for a device never
identified). A device identified late moves its earlier events to its user.

Periods
-------
An event's period is the calendar hour, day, week or month of its time *on the wall clock of
the retention's time zone* (``time_zone``, default UTC): the local time truncated to the period
(PostgreSQL's ``date_trunc(period, occurred_at at time zone tz)``): Amplitude's "strict calendar
dates" (days in the project's time zone; its default "24-hour window" days are rolling from each
user's start event, not offered here); PostHog truncates each timestamp to the start of its
interval (``get_start_of_interval_hogql``) likewise. Weeks start on Monday (ISO), or on Sunday
with ``week_start: sunday`` (our choice; no peer's rule checked). Offsets count periods on that
wall clock: days and weeks by calendar
date, months by calendar month, hours by wall-clock hour (at a fall-back DST change the repeated
local hour is one period; a skipped hour is a period nobody is in).

Cohorts (``cohorting``)
-----------------------
- ``first_time``: a unit is in the cohort of the period of its first start event ever (the
  earliest by time, then event_id), over all history: a unit whose first start is older than
  some range is in none of that range's cohorts. PostHog's "first time" retention
  (``retention_first_time``, its ``is_first_ever_occurrence``: ``minIf(timestamp, start)`` over
  all events), Mixpanel's "birth" retention.
- ``recurring``: a unit is in the cohort of every period in which it did the start event
  (PostHog's "recurring" retention, Mixpanel's "compounded").

Returns
-------
A cohort member *returned at offset k* (1 <= k <= ``periods``) when it did the return event at
least ``min_occurrences`` times in the period k periods after its cohort's (PostHog's "minimum
occurrences" per interval). Offset 0 is the cohort itself: its returned units are the cohort
size, as PostHog's and Mixpanel's tables show 100% there. The start and the return event may
be the same event definition.

Breakdown (``breakdown: {field | property | session | person}``)
----------------------------------------------------------------
A value of the start event: an event field, or a property as text like ``->>``; or of its
context, a column of its session (``retrolytics/semantics/sessions.py``, as ``fct_sessions``
stores it) or a trait of its person as it was at the event's time (``dim_person_traits``, as
the funnels read it); ``(none)`` when null. ``first_time``: the value of the unit's first start
event (PostHog buckets each
actor "by the breakdown value on their earliest START event", ``argMinIf``); ``recurring``: a
unit is in the cohort of every value its start events in that period had (PostHog groups the
recurring rows by each event's value). With an event field or property, a return counts for a
value only when the return event has that same value (a missing value matches a missing value);
a session or person value describes the cohort member, and any return of it counts (PostHog's
person-property breakdowns read one value per person). Every retention also has rows
with the value ``(all)``: the cohort without a breakdown, units counted once, returns of any
value; never sum the value rows (a recurring unit may be under two values). A start value that
is the text ``(all)`` counts in the ``(all)`` rows only, as in the funnels.

Incomplete periods
------------------
The data ends at ``data_end``: the latest event that a start or return event of any declared
retention matches (as the funnels' data end). A period is complete when the period holding
``data_end`` is later; the period holding it is in progress: its returned units are counted so
far and ``is_complete`` is false; a period after it has not begun: ``returned_units`` and the
rates are null (unknown, not zero), ``is_complete`` false. PostHog likewise leaves intervals
after "now" out of its table rather than showing zeros.

Cumulative
----------
``cumulative_returned_units`` at offset k: members who returned at offset k *or later* (up to
``periods``, counting the in-progress period so far), PostHog's cumulative retention option
("on or after"), Amplitude's "unbounded" retention; at offset 0 the cohort size; null where the
offset's period has not begun. Rates are returned units / cohort size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from retrolytics.language.retention import Retention
from retrolytics.semantics.funnels import (
    Event,
    _session_event,
    identity_periods,
    jsonb_text,
    matches,
    person_of,
)

ALL_VALUES = "(all)"
NO_VALUE = "(none)"
_EPOCH = datetime(1970, 1, 1)
_MONDAY_EPOCH = date(1970, 1, 5)  # weeks are counted from a Monday (or the Sunday before)


@dataclass(frozen=True)
class Period:
    """One period on the retention's wall clock: its start (local, naive) and its number."""

    start: datetime
    index: int


@dataclass(frozen=True)
class MartRow:
    retention_name: str
    cohort_period: datetime  # local wall-clock start of the cohort's period
    breakdown_value: str
    period_offset: int
    cohort_size: int
    returned_units: int | None
    retention_rate: float | None
    cumulative_returned_units: int | None
    cumulative_retention_rate: float | None
    is_complete: bool


def period_of(retention: Retention, moment: datetime) -> Period:
    """The period holding ``moment`` (an aware datetime) on the retention's wall clock."""
    local = moment.astimezone(ZoneInfo(retention.time_zone)).replace(tzinfo=None)
    if retention.period == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        return Period(start, (start - _EPOCH) // timedelta(hours=1))
    if retention.period == "day":
        start = datetime.combine(local.date(), datetime.min.time())
        return Period(start, (start - _EPOCH).days)
    if retention.period == "week":
        back = local.weekday() if retention.week_start == "monday" else (local.weekday() + 1) % 7
        day = local.date() - timedelta(days=back)
        return Period(datetime.combine(day, datetime.min.time()), (day - _MONDAY_EPOCH).days // 7)
    start = datetime(local.year, local.month, 1)
    return Period(start, local.year * 12 + local.month - 1)


def period_after(retention: Retention, period: Period, k: int) -> Period:
    """The period ``k`` periods after ``period``."""
    if retention.period == "hour":
        return Period(period.start + timedelta(hours=k), period.index + k)
    if retention.period == "day":
        return Period(period.start + timedelta(days=k), period.index + k)
    if retention.period == "week":
        return Period(period.start + timedelta(weeks=k), period.index + k)
    months = period.start.month - 1 + k
    start = datetime(period.start.year + months // 12, months % 12 + 1, 1)
    return Period(start, period.index + k)


@dataclass(frozen=True)
class _Context:
    """What a session or person breakdown reads beyond the event, derived once per call."""

    periods: dict[str, list[tuple[datetime, str]]]
    sessions: dict
    traits: list


def _context(retention: Retention, events: Sequence[Event]) -> _Context:
    from retrolytics.semantics import sessions

    needed = retention.breakdown_session is not None or retention.breakdown_person is not None
    as_sessions = [_session_event(event) for event in events] if needed else []
    return _Context(
        periods=identity_periods(events),
        sessions=sessions.session_of_events(as_sessions)
        if retention.breakdown_session is not None
        else {},
        traits=sessions.trait_history(as_sessions)
        if retention.breakdown_person is not None
        else [],
    )


def value_of(retention: Retention, event: Event, context: _Context | None = None) -> str:
    """The event's breakdown value as the mart shows it (``(none)`` for a missing one)."""
    from retrolytics.semantics import sessions

    if retention.breakdown_field is not None:
        value = event.fields.get(retention.breakdown_field)
    elif retention.breakdown_property is not None:
        value = jsonb_text(event.properties.get(retention.breakdown_property))
    elif context is not None and retention.breakdown_session is not None:
        value = getattr(context.sessions[event.event_id], retention.breakdown_session)
    elif context is not None and retention.breakdown_person is not None:
        person, _ = person_of(event, context.periods)
        trait = sessions.trait_at(
            context.traits, person, retention.breakdown_person, event.occurred_at
        )
        value = jsonb_text(trait)
    else:
        value = None
    return NO_VALUE if value is None else value


def data_end_of(retentions: Iterable[Retention], events: Iterable[Event]) -> datetime | None:
    """The end of the data: the latest event a start or return event of any retention matches."""
    refs = [ref for r in retentions for ref in (r.start_event, r.return_event)]
    times = [e.occurred_at for e in events if any(matches(ref, e) for ref in refs)]
    return max(times, default=None)


@dataclass
class _Unit:
    """What one unit did: start events (time, event_id, period, value) and return counts."""

    starts: list[tuple[datetime, object, Period, str]]
    returns: dict[tuple[int, str], int]  # (period index, value) -> return events

    def returned(self, period_index: int, value: str, minimum: int) -> bool:
        if value == ALL_VALUES:
            count = sum(n for (index, _), n in self.returns.items() if index == period_index)
        else:
            count = self.returns.get((period_index, value), 0)
        return count >= minimum


def _units(retention: Retention, events: Sequence[Event]) -> dict[str, _Unit]:
    context = _context(retention, events)
    periods = context.periods
    units: dict[str, _Unit] = defaultdict(lambda: _Unit([], defaultdict(int)))
    for event in events:
        is_start = matches(retention.start_event, event)
        is_return = matches(retention.return_event, event)
        if not (is_start or is_return):
            continue
        unit_id = person_of(event, periods)[0] if retention.unit == "user" else event.anonymous_id
        unit = units[unit_id]
        period = period_of(retention, event.occurred_at)
        value = value_of(retention, event, context)
        if is_start:
            unit.starts.append((event.occurred_at, event.event_id, period, value))
        if is_return:
            unit.returns[(period.index, value if retention.returns_match_value else NO_VALUE)] += 1
    return units


def cohorts(retention: Retention, events: Sequence[Event]) -> dict[tuple[Period, str], set[str]]:
    """(cohort period, breakdown value or ``(all)``) -> the units in that cohort."""
    members: dict[tuple[Period, str], set[str]] = defaultdict(set)
    for unit_id, unit in _units(retention, events).items():
        if not unit.starts:
            continue
        if retention.cohorting == "first_time":
            chosen = [min(unit.starts, key=lambda s: (s[0], str(s[1])))]
        else:
            chosen = unit.starts
        for _, _, period, value in chosen:
            members[(period, ALL_VALUES)].add(unit_id)
            if retention.has_breakdown and value != ALL_VALUES:
                members[(period, value)].add(unit_id)
    return dict(members)


def retention_mart(
    retention: Retention, events: Sequence[Event], data_end: datetime | None
) -> list[MartRow]:
    """The mart rows of one retention: per cohort period, value and offset 0..``periods``."""
    if data_end is None:
        return []
    units = _units(retention, events)
    end_index = period_of(retention, data_end).index
    rows = []
    for (period, value), members in cohorts(retention, events).items():
        matched = value if retention.returns_match_value else ALL_VALUES
        returned_at = {
            unit_id: {
                k
                for k in range(1, retention.periods + 1)
                if units[unit_id].returned(period.index + k, matched, retention.min_occurrences)
            }
            for unit_id in members
        }
        size = len(members)
        for k in range(retention.periods + 1):
            index = period.index + k
            begun = index <= end_index
            if k == 0:
                returned = cumulative = size
            elif begun:
                returned = sum(1 for offsets in returned_at.values() if k in offsets)
                cumulative = sum(
                    1 for offsets in returned_at.values() if max(offsets, default=0) >= k
                )
            else:
                returned = cumulative = None
            rows.append(
                MartRow(
                    retention_name=retention.name,
                    cohort_period=period.start,
                    breakdown_value=value,
                    period_offset=k,
                    cohort_size=size,
                    returned_units=returned,
                    retention_rate=None if returned is None else returned / size,
                    cumulative_returned_units=cumulative,
                    cumulative_retention_rate=None if cumulative is None else cumulative / size,
                    is_complete=index < end_index,
                )
            )
    return rows
