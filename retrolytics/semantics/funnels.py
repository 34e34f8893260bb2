"""The funnel semantics, written down once, and a plain-Python reference that follows them.

The dbt models (``fct_funnel_entries``, ``mart_funnel_conversion``) must produce exactly what
this module computes from the same events; the tests compare the two row by row. This is the
one place that says what a funnel means (the models' YAML points here and repeats the summary).

Identity (``unit: user``)
-------------------------
Only ``identify`` events tie a device (``anonymous_id``) to a user. Take a device's identify
events in order of ``occurred_at`` (then ``event_id``). Each starts a period in which the device
belongs to that user, until the next identify of a *different* user; the first period reaches
back to the device's very first event, so what a visitor did before logging in belongs to them.
A device never identified is a person of its own. Person ids: ``user:<user_id>`` and
``device:<anonymous_id>``. For ``unit: device`` the unit is the ``anonymous_id`` itself.

Sessions (``unit: session``)
----------------------------
The unit is the event's session as ``retrolytics/semantics/sessions.py`` defines it (and
``fct_sessions`` stores it): the device's events, *all* of them, not only the funnel's, split
where 30 minutes pass without one. Unit id: ``session:<the session's first event_id>``. So an
attempt never leaves its session: a step in the device's next session belongs to another unit,
and the attempt ends ``dropped_off`` at its deadline as usual (the conversion window still
applies inside a session). PostHog's "unique sessions" aggregation of a funnel counts the same
way: an entry and its steps within one ``$session_id``. A late event that merges or splits
sessions changes the units, and a later run re-derives them.

The unit's stream
-----------------
The events of one unit that match a step or an exclusion of the funnel, in this total order:
``occurred_at``, then the lowest step the event matches (events that only match exclusions come
after all steps), then ``event_id``, then ``anonymous_id``. So two events at the same instant
count as in funnel order, and an exclusion at the same instant as a step counts after it.
An event matching several steps is one element of the stream and fills at most one step.
With ``broken_by: any_event`` (strict funnels, below) the stream is *every* event of the unit,
whatever its type (pageviews, clicks, custom and identify events alike); one that matches no
step sorts like an exclusion-only event, after the steps at its instant.

Attempts
--------
A unit is *idle* or in one *attempt*. Walking the stream:

- Idle: an event matching step 1 (any step, for ``unordered``) enters the funnel: a new attempt
  whose entry time is the event's time. It fills step 1 (``unordered``: the lowest step it
  matches). Other events are ignored while idle.
- Deadline: an attempt is alive while the event time is at most its deadline: entry time +
  ``conversion_window`` (``window_end``: a calendar window of n months adds n months to the
  entry's UTC date, keeping the time of day, on the month's last day when that day does not
  exist: Jan 31 10:00 + 1mo = Feb 28 (or 29) 10:00, as PostgreSQL's ``timestamp + interval``
  does in UTC), and, when the next step has ``within``, at most that long after the
  step reached last. Both bounds are inclusive: a step exactly at the deadline counts. The first
  event after the deadline ends the attempt (``dropped_off``, ended at the deadline); that event
  is then looked at again by an idle unit, so it may enter a new attempt.
- ``ordered``: an event matching the next step fills it (the step's time is the event's time)
  if the ``hold_constant`` properties equal those of the entry event. Any other event in between
  is ignored, including repeats of earlier steps and step-1 events (no re-entry while alive).
- ``strict``: as ``ordered``, but an event that matches any step of the funnel and does not fill
  the next one ends the attempt (``broken_order``, ended at that event), which is then looked at
  by an idle unit (so a repeated step 1 restarts the funnel).
- ``broken_by: any_event`` (``strict`` only; the default ``step_events`` is the rule above
  alone): every event of the unit counts, as in PostHog's strict funnels, which read every event
  of the person (``funnel_udf.py``: ``skip_step_filter`` when the order is strict) and, after
  each event, clear every step it does not match (``funnel-udf/src/steps.rs``). An event that
  matches no step and comes while an attempt is alive (at most its deadline) ends it: ``excluded``
  if it disqualifies it as an exclusion (below; PostHog applies exclusions before that
  clearing), else ``broken_order``, ended at that event. A step event keeps the rule above.
  So an event of another kind between two steps stops the unit at the earlier step
  (``test_basic_strict_funnel`` in PostHog's ``test_funnel_strict.py``). Such a funnel's stream
  is the unit's whole event stream: the cost PostHog pays too.
- ``unordered``: an event fills the lowest not-yet-filled step it matches (hold_constant as
  above). ``furthest_step`` is the number of steps filled; steps may be filled in any order.
- Filling the last step converts the attempt (``converted``, ended at that event); the event is
  used up.
- Exclusions: after an event is processed as a step, if it matches an exclusion
  ``between: [i, j]`` while the attempt has reached step i but not step j, and it happened
  strictly later than step i's time, the attempt is disqualified (``excluded``, ended at that
  event). Unless the event filled a step, it is then looked at by an idle unit.
  Excluded attempts stay in the facts but count nowhere in the mart. ``unordered``: "reached
  step i" is "filled i steps" and step i's time the time it had (the i-th fill); an unordered
  funnel's exclusions span it whole (``between: [1, N]``, the validator refuses any other), so
  an exclusion event strictly after the entry disqualifies an attempt that is alive and not
  converted. This is PostHog's rule for unordered funnels: its validator refuses "Partial
  Exclusions" there (``funnel_unordered.py``, ``funnel_udf.py``), and its UDF
  (``funnel-udf/src/unordered_steps.rs``) drops the steps gathered in the window when an
  exclusion event comes, so the person counts by their other windows, as a unit here counts by
  its other attempts (``test_advanced_funnel_multiple_exclusions_between_steps`` in
  ``test_funnel_unordered.py``: five persons at step 1, two at step 2, one at steps 3 to 5).
- ``exclusion_scope: until_step`` (``ordered`` and ``unordered``; the default ``window`` is the
  rule above alone, PostHog's funnels today, whose UDF counts an exclusion only within the
  conversion window: ``test_excluded_after_time_expires`` in ``test_funnel.py``): an attempt
  that ends ``dropped_off`` at its deadline is watched over the rest of its stream (from the
  event after the deadline on). The watch places the steps the attempt would go on to fill had
  it no deadline (the same fill rule, ``hold_constant`` included; no ``within``), which stay
  unreached: the facts keep the steps of the window. An event matching an exclusion
  ``between: [i, j]`` while the watch has step i (reached or placed) but not step j, strictly
  later than step i's time, disqualifies the attempt if it comes before step i's time + the
  conversion window (``window_end``), or else as soon as the watch places step j (it never
  does: the attempt stays ``dropped_off``). The outcome becomes ``excluded``; ``ended_at``
  stays the deadline. This is PostHog's rule before its funnel UDF (``funnel.py`` and
  ``base.py`` ``_get_exclusion_condition``: an exclusion after step i's time and before the
  time of step j, taken whatever the window, or, without a step j, before step i's time + the
  window; the UDF test above notes that the old funnels still excluded that person). PostHog's
  old query reads only the first exclusion event at or after step i; here any counts. Strict
  funnels cannot declare it (PostHog's old strict funnels ignored exclusions), nor funnels
  with ``entries: every_entry`` (its windows are the UDF's).
- When the stream ends, an attempt still alive is ``in_progress`` if its deadline is later
  than the end of the data (``data_end``: the latest ``occurred_at`` among the step and
  exclusion events of all declared funnels when the facts are built; the other events of a
  ``broken_by: any_event`` stream do not count), so events still to come
  may fill its steps; a later run re-derives it. Otherwise it ends ``dropped_off``. Either way
  ``ended_at`` is its deadline. Without ``data_end`` nothing is in progress.

So a unit enters again only after its previous attempt converted, expired, broke or was
excluded (``entries: sequential``, the default). A consequence: a unit's furthest step can be
lower than that of the best window from *any* step-1 event (ClickHouse's ``windowFunnel``): a
step-1 event inside a live attempt starts nothing, even when the steps after it would fit in a
window of its own but come after the attempt's deadline. ``entries: every_entry`` (below)
counts those windows. Values of ``hold_constant`` properties compare as JSON values; a missing
property and JSON null are the same value (null equals null).

Every entry (``entries: every_entry``; ordered and strict funnels)
------------------------------------------------------------------
The furthest step of a unit is that of the best window started at *any* step-1 event, as
ClickHouse's ``windowFunnel`` (default mode) and PostHog's funnel UDF (``funnel-udf/src/steps.rs``)
count it. PostHog keeps, per step k, the chain with the latest step-1 event among those that
reached k (a later start leaves more of its window); each step-1 event starts a chain, also one
that fills a step of an older chain; a person's result is the first chain to reach the furthest
step (its times are the ones reported), an excluded one giving way to another that reaches the
same step. Here, with attempts:

- Windows. Every step-1 event opens a *window*: an attempt of its own by the rules above
  (entry, deadline, ``within``, ``hold_constant``, strict breaks, exclusions), except that an
  event never re-enters: a window that ends is over. Each window takes every later event of the
  stream, so one event may fill a step of several windows (at most one step of each).
- Attempts group windows. A step-1 event opens its window in the unit's latest attempt while
  that attempt is *open*: not ended, and the event at most one conversion window (from the
  attempt's first entry, inclusive) after that entry; otherwise the event enters a new attempt.
  So attempts start about one window apart, as sequential ones do, and an attempt's later windows
  may outlive its span and overlap the next attempt's (an event may fill steps of both).
- Per event, in stream order: every live window of every attempt, the attempts in the order they
  entered, takes it (a window past its deadline ends ``dropped_off`` at the deadline). A window
  that fills the last step converts its attempt (``converted``, at that event): the attempt
  ends, its other windows are dropped, and the event is used up: no later attempt's window takes
  it and it opens nothing (so one event converts at most one attempt). Then an attempt without a
  live window has ended. Then a step-1 event opens its window. Last, a live window is *dropped*
  when a window of the same attempt opened later has the same ``hold_constant`` values and as
  many steps filled: from there the later one fills every step the earlier would (the same next
  step, a deadline as late or later, an exclusion that hits it hits the earlier). So an attempt
  has at most one live window per step count and hold value: the walk costs O(events x live
  windows^2), live windows at most (steps - 1) x the hold values seen in a window x the attempts
  overlapping (usually 1 or 2), never a rescan of the stream per step-1 event.
- Facts: one row per attempt (numbered in the order they entered), holding its *reported*
  window: of its windows not dropped, the one with the most steps filled, then one not
  excluded, then the one that filled that many steps first (PostHog's first chain to reach the
  furthest step; a dropped window is no longer there to be first). The row's entry event and
  time, step times, furthest step and breakdown (attributions as above, over that window's
  events) are the window's, so the period, the time to each step and the time to convert are
  measured from the window's own step-1 event, as PostHog's timings are. Outcome, ``ended_at``
  and ``deadline_at`` are the window's, except that an attempt that did not convert and has a
  window still alive when the stream ends whose deadline is later than ``data_end`` is
  ``in_progress`` (that window may still go further), ended at and with the latest such
  deadline. The mart reads these rows as any others: a unit at step k in a period has a reported
  window that entered in that period and reached k; ``entries`` counts attempts, not windows.
- Ties: events at the same instant are taken in stream order (funnel order), as everywhere
  here. PostHog also takes same-timestamp events of different steps in step order, but then
  skips strict breaks and exclusions among them (and its step-1 chains start at such an event
  too); here a strict break or an exclusion at the same instant applies as at any other. The
  same holds for ``broken_by: any_event`` in both walks: an event matching no step at the instant
  of a step (it sorts after it) breaks the attempt, where PostHog skips the clearing among
  events sharing a timestamp.
- A windowed run recomputes a unit of such a funnel from its beginning (its attempts overlap).

Facts: one row per attempt: entry time and event, the time each step was filled (null when
not), the furthest step, converted yes/no, time to convert, the outcome, and the breakdown value:
the event field or property (as text, like ``->>``) of the events that filled the attempt's
steps, taken in the order they filled them: the first value that is neither null nor the empty
text (``first_touch``), the last such value (``last_touch``), null when every one is empty (so a
step without the property never hides a later step's value, as PostHog's first and last touch
skip empty values); or step N's event's own value (``step_N``, null when step N was not reached
or its event has no value). ``all_events`` (PostHog's "All events" attribution) walks each
breakdown value apart: the unit's stream is split by the value of each event (step and exclusion
events alike; null is a value of its own, apart from the empty text), each part is walked as a
stream of its own as above, and each attempt has its part's value; so a unit counts under every
value whose events enter the funnel, and its steps under a value are only those of that value.
``session: <column>`` reads that column of the event's session (its
landing page, referrer host, UTM fields, browser...); ``person: <trait>`` reads the trait of the
event's person (identity as above) as it was at the event's time (``dim_person_traits``:
valid_from <= time < valid_to), as text like ``->>``; null for a device never identified or a
trait not set yet. ``attempt_number`` counts the unit's attempts from 1 (with ``all_events``
value by value, the values in the order they first appear in the unit's stream).

Mart: per funnel, period and breakdown value. Periods: the ``day`` of the entry (UTC date of the
entry time), its ``week`` (ISO: Monday to Sunday, UTC days) and its ``month`` (calendar month of
the UTC day); a row names its period's first day (``period_start``). Every attempt counts in its
day, its week and its month, so a unit that entered on two days of a week counts once in the week:
the weekly and monthly rows are not sums of the daily ones, and summing daily rows over a week
double counts the units that came back. Breakdown value: ``(none)`` for a
null value; ``(all)`` for every attempt of the period, with or without a breakdown, so one funnel
with a breakdown answers the overall question too; a breakdown value that is the text ``(all)``
counts in that overall row only; with ``step_N`` attribution and ``unreached: leave_out``, an
attempt that never filled step N counts in the overall row only, as PostHog leaves a person who
never reached the attribution step out of its breakdown; with ``all_events`` the overall row
counts each unit once over its attempts under every value, which is not the funnel without a
breakdown: steps under two values never join), one row per step k: ``units`` = distinct
units with an attempt that entered in that period, has that breakdown value, is not excluded and
filled at least k steps; ``entries`` = such attempts. Time to step k of an attempt = the time it
had filled k steps (for ordered funnels, step k's time) minus its entry time; per unit the first
such attempt (by entry time, then attempt number) counts, and the mean, the median and the 90th
percentile (linear interpolation, like PostgreSQL's ``percentile_cont``) are taken over units.
Time from the previous step to step k (k > 1) of the same attempts = the time it had filled k
steps minus the time it had filled k - 1; mean, median and p90 likewise. Time to convert is time
to the last step. ``units_in_progress`` = those of the units with an ``in_progress`` attempt that
filled at least k steps. Conversion rates leave attempts in progress out (their outcome is not
known yet): with ``settled`` units at k = distinct units with an attempt that is neither excluded
nor in progress and filled at least k steps, ``conversion_from_previous`` = settled at k / settled
at k-1 (null for step 1 and after a step without settled units), ``conversion_overall`` = settled
at k / settled at step 1 (null without settled units).
"""

from __future__ import annotations

import calendar
import copy
import json
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from retrolytics.language.funnels import EventRef, Funnel

if TYPE_CHECKING:  # sessions builds on this module's identity rules: imported where used
    from retrolytics.semantics.sessions import Event as SessionEvent
    from retrolytics.semantics.sessions import Session, TraitVersion

ALL_VALUES = "(all)"
NO_VALUE = "(none)"


@dataclass(frozen=True)
class Event:
    """One stored event, with the event definitions it matches (from wherever they came)."""

    event_id: uuid.UUID
    anonymous_id: str
    occurred_at: datetime
    type: str
    name: str | None = None
    user_id: str | None = None
    properties: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    fields: dict[str, str | None] = field(default_factory=dict, hash=False, compare=False)
    definitions: frozenset[str] = frozenset()
    user_agent: str | None = None


@dataclass(frozen=True)
class Entry:
    funnel_name: str
    unit_id: str
    user_id: str | None
    anonymous_id: str
    attempt_number: int
    entry_event_id: uuid.UUID
    entered_at: datetime
    entry_step: int
    step_reached_at: tuple[datetime | None, ...]
    furthest_step: int
    converted: bool
    converted_at: datetime | None
    seconds_to_convert: float | None
    outcome: str
    ended_at: datetime
    deadline_at: datetime
    breakdown_value: str | None

    @property
    def entry_day(self) -> date:
        return self.entered_at.astimezone(UTC).date()


@dataclass(frozen=True)
class MartRow:
    funnel_name: str
    period: str  # day, week or month
    period_start: date
    breakdown_value: str
    step_number: int
    units: int
    entries: int
    units_in_progress: int
    conversion_from_previous: float | None
    conversion_overall: float | None
    avg_seconds_to_step: float | None
    median_seconds_to_step: float | None
    p90_seconds_to_step: float | None
    avg_seconds_from_previous: float | None
    median_seconds_from_previous: float | None
    p90_seconds_from_previous: float | None
    avg_seconds_to_convert: float | None
    median_seconds_to_convert: float | None
    p90_seconds_to_convert: float | None


# -- identity --------------------------------------------------------------------------------


def identity_periods(events: Iterable[Event]) -> dict[str, list[tuple[datetime, str]]]:
    """Per identified device: (start, user_id) of each period, in time order; the first period
    reaches back to the device's first event (its start is only used from the second on)."""
    identifies = sorted(
        (e for e in events if e.type == "identify" and e.user_id),
        key=lambda e: (e.occurred_at, e.event_id),
    )
    periods: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for event in identifies:
        device = periods[event.anonymous_id]
        if not device or device[-1][1] != event.user_id:
            device.append((event.occurred_at, event.user_id))
    return dict(periods)


def person_of(
    event: Event, periods: dict[str, list[tuple[datetime, str]]]
) -> tuple[str, str | None]:
    """(person id, user_id or None) that ``event`` belongs to."""
    device = periods.get(event.anonymous_id)
    if not device:
        return f"device:{event.anonymous_id}", None
    user = device[0][1]
    for start, user_id in device[1:]:
        if event.occurred_at >= start:
            user = user_id
    return f"user:{user}", user


# -- values ----------------------------------------------------------------------------------


def json_key(value: Any) -> Any:
    """Equality as jsonb has it: numbers by value, booleans apart from numbers."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list):
        return ("array", tuple(json_key(v) for v in value))
    return ("object", tuple(sorted((k, json_key(v)) for k, v in value.items())))


def jsonb_text(value: Any) -> str | None:
    """What PostgreSQL's ``->>`` gives for a JSON value."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return _jsonb_document(value)


def _jsonb_document(value: Any) -> str:
    # jsonb prints object keys shorter first, then bytewise, with ", " and ": " separators.
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        inner = ", ".join(
            f"{json.dumps(k, ensure_ascii=False)}: {_jsonb_document(value[k])}" for k in keys
        )
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_document(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def matches(ref: EventRef, event: Event) -> bool:
    if ref.definition is not None:
        return ref.definition in event.definitions
    return event.type == ref.event_type and (ref.event_name is None or event.name == ref.event_name)


# -- attempts --------------------------------------------------------------------------------


def window_end(start: datetime, seconds: int, months: int = 0) -> datetime:
    """``start`` + a conversion window: seconds, or calendar months in UTC (day clamped to the
    month's last, time of day kept)."""
    if not months:
        return start + timedelta(seconds=seconds)
    utc = start.astimezone(UTC)
    month_index = utc.month - 1 + months
    year, month = utc.year + month_index // 12, month_index % 12 + 1
    day = min(utc.day, calendar.monthrange(year, month)[1])
    return utc.replace(year=year, month=month, day=day)


@dataclass
class _Attempt:
    entry: Event
    hold: tuple
    step_events: list[Event | None]
    fills: list[Event]  # the events that filled a step, in the order they did
    deadline: datetime = field(init=False)

    @property
    def filled(self) -> int:
        return sum(e is not None for e in self.step_events)


def step_time(attempt: _Attempt, step: int) -> datetime:
    """Step ``step``'s time: when the attempt had filled that many steps (in order, for ordered
    and strict attempts, the step's own time)."""
    return attempt.fills[step - 1].occurred_at


@dataclass
class _Watch:
    """``exclusion_scope: until_step``: a dropped-off attempt (``index`` into the walk's ended
    attempts) whose steps go on being placed (``chain``, without deadline) after its deadline;
    ``pending``: the lowest step j whose placing makes an exclusion seen since count."""

    index: int
    chain: _Attempt
    pending: float = math.inf

    @classmethod
    def of(cls, attempt: _Attempt, index: int) -> _Watch:
        chain = _Attempt(
            attempt.entry, attempt.hold, list(attempt.step_events), list(attempt.fills)
        )
        chain.deadline = attempt.deadline
        return cls(index, chain)


@dataclass
class _StreamEvent:
    event: Event
    steps: list[int]  # 1-based steps it matches, ascending
    exclusions: list[tuple[int, int]]  # (from, to) of exclusions it matches


class _Walk:
    """Walks one unit's stream; ``ended`` collects (attempt, outcome, ended_at)."""

    def __init__(self, funnel: Funnel) -> None:
        self.funnel = funnel
        self.count = len(funnel.steps)
        self.current: _Attempt | None = None
        self.ended: list[tuple[_Attempt, str, datetime]] = []
        self.watches: list[_Watch] = []  # exclusion_scope until_step: dropped-off attempts

    def hold_of(self, event: Event) -> tuple:
        return tuple(json_key(event.properties.get(name)) for name in self.funnel.hold_constant)

    def set_deadline(self, attempt: _Attempt) -> None:
        funnel = self.funnel
        deadline = window_end(
            attempt.entry.occurred_at,
            funnel.conversion_window_seconds,
            funnel.conversion_window_months,
        )
        if self.funnel.order != "unordered":
            reached = attempt.filled
            if reached < self.count:
                within = self.funnel.steps[reached].within_seconds
                if within is not None:
                    last = attempt.step_events[reached - 1]
                    assert last is not None
                    deadline = min(deadline, last.occurred_at + timedelta(seconds=within))
        attempt.deadline = deadline

    def end(self, outcome: str, at: datetime) -> None:
        assert self.current is not None
        self.ended.append((self.current, outcome, at))
        self.current = None

    def idle(self, item: _StreamEvent) -> None:
        entering = (
            item.steps if self.funnel.order == "unordered" else [s for s in item.steps if s == 1]
        )
        if not entering:
            return
        step_events: list[Event | None] = [None] * self.count
        step_events[entering[0] - 1] = item.event
        self.current = _Attempt(item.event, self.hold_of(item.event), step_events, [item.event])
        self.set_deadline(self.current)

    def fill(self, attempt: _Attempt, item: _StreamEvent, place_only: bool = False) -> bool:
        """Fill the step the event may fill; ``place_only`` (a watch's chain): no deadline."""
        if self.hold_of(item.event) != attempt.hold:
            return False
        if self.funnel.order == "unordered":
            free = [s for s in item.steps if attempt.step_events[s - 1] is None]
            if not free:
                return False
            step = free[0]
        else:
            step = attempt.filled + 1
            if step not in item.steps:
                return False
        attempt.step_events[step - 1] = item.event
        attempt.fills.append(item.event)
        if not place_only:
            self.set_deadline(attempt)
        return True

    def excluded(self, attempt: _Attempt, item: _StreamEvent) -> bool:
        return any(self.in_exclusion(attempt, item, first, last) for first, last in item.exclusions)

    @staticmethod
    def in_exclusion(attempt: _Attempt, item: _StreamEvent, first: int, last: int) -> bool:
        """Whether the attempt has step ``first`` but not ``last`` and the event is strictly
        later than step ``first``'s time (the ``first``-th fill: step order for ordered ones)."""
        reached = attempt.filled
        return first <= reached < last and item.event.occurred_at > step_time(attempt, first)

    def take(self, item: _StreamEvent) -> None:
        attempt = self.current
        if attempt is not None and item.event.occurred_at > attempt.deadline:
            self.end("dropped_off", attempt.deadline)
            if self.funnel.exclusion_scope == "until_step":
                self.watches.append(_Watch.of(attempt, len(self.ended) - 1))
            attempt = None
        self.watch(item)
        if attempt is None:
            self.idle(item)
            return
        filled = self.fill(attempt, item)
        if filled and attempt.filled == self.count:
            self.end("converted", item.event.occurred_at)
            return
        if not filled and self.funnel.order == "strict" and item.steps:
            self.end("broken_order", item.event.occurred_at)
            self.idle(item)
            return
        if self.excluded(attempt, item):
            self.end("excluded", item.event.occurred_at)
            if not filled:
                self.idle(item)
            return
        if self.broken_by_other_event(item):
            self.end("broken_order", item.event.occurred_at)

    def broken_by_other_event(self, item: _StreamEvent) -> bool:
        """``broken_by: any_event``: an event matching no step breaks a live strict attempt."""
        return self.funnel.broken_by == "any_event" and not item.steps

    def watch(self, item: _StreamEvent) -> None:
        """``until_step``: the event, after their deadlines, for each watched attempt."""
        for watch in list(self.watches):
            chain = watch.chain
            self.fill(chain, item, place_only=True)
            last_step = max(x.to_step for x in self.funnel.exclusions)
            for first, last in item.exclusions:
                if self.in_exclusion(chain, item, first, last):
                    window = window_end(
                        step_time(chain, first),
                        self.funnel.conversion_window_seconds,
                        self.funnel.conversion_window_months,
                    )
                    if item.event.occurred_at < window:
                        watch.pending = 0  # at once
                    else:
                        watch.pending = min(watch.pending, last)
            if chain.filled >= watch.pending:
                attempt, _, ended_at = self.ended[watch.index]
                self.ended[watch.index] = (attempt, "excluded", ended_at)
                self.watches.remove(watch)
            elif chain.filled >= last_step:
                self.watches.remove(watch)  # past every exclusion's range: settled

    def finish(self, data_end: datetime | None) -> None:
        if self.current is not None:
            deadline = self.current.deadline
            alive = data_end is not None and deadline > data_end
            self.end("in_progress" if alive else "dropped_off", deadline)


@dataclass
class _Window:
    """A window of ``entries: every_entry``: an attempt's state, and where it got that far."""

    state: _Attempt
    reached: int  # stream position of the event that filled its latest step
    outcome: str | None = None
    ended_at: datetime | None = None


@dataclass
class _Group:
    """An attempt of ``entries: every_entry``: the windows opened while it was open."""

    span_end: datetime  # step-1 events up to here open their windows in it
    live: list[_Window]
    over: list[_Window] = field(default_factory=list)  # windows that ended
    converted: _Window | None = None
    ended: bool = False


class _EveryEntryWalk:
    """Walks one unit's stream under ``entries: every_entry`` (the semantics above); the same
    ``take`` / ``finish`` / ``ended`` as ``_Walk``, whose step rules each window follows."""

    def __init__(self, funnel: Funnel) -> None:
        self.rules = _Walk(funnel)
        self.funnel = funnel
        self.count = len(funnel.steps)
        self.groups: list[_Group] = []
        self.position = 0
        self.ended: list[tuple[_Attempt, str, datetime]] = []

    def take(self, item: _StreamEvent) -> None:
        self.position += 1
        used_up = False
        for group in self.groups:
            if not group.ended and not used_up:
                used_up = self.advance(group, item)
        for group in self.groups:
            if not group.ended and not group.live:
                group.ended = True
        if not used_up and 1 in item.steps:
            self.open(item)
        for group in self.groups:
            if not group.ended:
                group.live = self.undominated(group.live)

    def advance(self, group: _Group, item: _StreamEvent) -> bool:
        """Every live window of the attempt takes the event; whether one converted."""
        time = item.event.occurred_at
        live = []
        for window in group.live:
            state = window.state
            if time > state.deadline:
                self.close(group, window, "dropped_off", state.deadline)
                continue
            filled = self.rules.fill(state, item)
            if filled:
                window.reached = self.position
            if filled and state.filled == self.count:
                window.outcome, window.ended_at = "converted", time
                group.converted, group.live, group.ended = window, [], True
                return True
            if not filled and self.funnel.order == "strict" and item.steps:
                self.close(group, window, "broken_order", time)
            elif self.rules.excluded(state, item):
                self.close(group, window, "excluded", time)
            elif self.rules.broken_by_other_event(item):
                self.close(group, window, "broken_order", time)
            else:
                live.append(window)
        group.live = live
        return False

    def close(self, group: _Group, window: _Window, outcome: str, at: datetime) -> None:
        window.outcome, window.ended_at = outcome, at
        group.over.append(window)

    def open(self, item: _StreamEvent) -> None:
        event = item.event
        latest = self.groups[-1] if self.groups else None
        if latest is None or latest.ended or event.occurred_at > latest.span_end:
            funnel = self.funnel
            span_end = window_end(
                event.occurred_at,
                funnel.conversion_window_seconds,
                funnel.conversion_window_months,
            )
            latest = _Group(span_end, [])
            self.groups.append(latest)
        step_events: list[Event | None] = [None] * self.count
        step_events[0] = event
        state = _Attempt(event, self.rules.hold_of(event), step_events, [event])
        self.rules.set_deadline(state)
        latest.live.append(_Window(state, self.position))

    @staticmethod
    def undominated(live: list[_Window]) -> list[_Window]:
        """Drops each window that a later one with the same hold values has caught up with."""
        seen = set()
        kept = []
        for window in reversed(live):
            key = (window.state.hold, window.state.filled)
            if key not in seen:
                seen.add(key)
                kept.append(window)
        return kept[::-1]

    def finish(self, data_end: datetime | None) -> None:
        for group in self.groups:
            progress = [
                w.state.deadline
                for w in group.live
                if data_end is not None and w.state.deadline > data_end
            ]
            for window in group.live:
                window.outcome, window.ended_at = "dropped_off", window.state.deadline
            self.ended.append(self.report(group, max(progress, default=None)))

    @staticmethod
    def report(group: _Group, progress: datetime | None) -> tuple[_Attempt, str, datetime]:
        if group.converted is not None:
            window = group.converted
        else:
            window = min(
                [*group.over, *group.live],
                key=lambda w: (-w.state.filled, w.outcome == "excluded", w.reached),
            )
        state, outcome, ended_at = window.state, window.outcome, window.ended_at
        assert outcome is not None and ended_at is not None
        if progress is not None and outcome != "converted":
            state = copy.copy(state)
            state.deadline = progress
            outcome, ended_at = "in_progress", progress
        return state, outcome, ended_at


def _walk(funnel: Funnel) -> _Walk | _EveryEntryWalk:
    return _EveryEntryWalk(funnel) if funnel.entries == "every_entry" else _Walk(funnel)


def _stream(funnel: Funnel, events: Iterable[Event]) -> list[_StreamEvent]:
    count = len(funnel.steps)
    items = []
    for event in events:
        steps = [i + 1 for i, s in enumerate(funnel.steps) if matches(s.event, event)]
        exclusions = [
            (x.from_step, x.to_step) for x in funnel.exclusions if matches(x.event, event)
        ]
        if steps or exclusions or funnel.broken_by == "any_event":
            items.append(_StreamEvent(event, steps, exclusions))
    items.sort(
        key=lambda i: (
            i.event.occurred_at,
            i.steps[0] if i.steps else count + 1,
            i.event.event_id,
            i.event.anonymous_id.encode(),
        )
    )
    return items


@dataclass
class _Context:
    """What units and breakdowns read beyond the events themselves, derived once per call."""

    periods: dict[str, list[tuple[datetime, str]]]
    sessions: dict[uuid.UUID, Session]  # event_id -> its session
    traits: list[TraitVersion]


def _context(funnel: Funnel, events: Sequence[Event]) -> _Context:
    # Imported here: retrolytics.semantics.sessions builds on this module's identity rules.
    from retrolytics.semantics import sessions

    breakdown = funnel.breakdown
    needs_sessions = funnel.unit == "session" or (
        breakdown is not None and breakdown.session_column is not None
    )
    needs_traits = breakdown is not None and breakdown.person_trait is not None
    as_sessions = (
        [_session_event(event) for event in events] if needs_sessions or needs_traits else []
    )
    return _Context(
        periods=identity_periods(events),
        sessions=sessions.session_of_events(as_sessions) if needs_sessions else {},
        traits=sessions.trait_history(as_sessions) if needs_traits else [],
    )


def _session_event(event: Event) -> SessionEvent:
    from retrolytics.semantics import sessions

    fields = event.fields
    return sessions.Event(
        event_id=event.event_id,
        anonymous_id=event.anonymous_id,
        occurred_at=event.occurred_at,
        type=event.type,
        user_id=event.user_id,
        page_path=fields.get("page_path"),
        referrer=fields.get("referrer"),
        utm_source=fields.get("utm_source"),
        utm_medium=fields.get("utm_medium"),
        utm_campaign=fields.get("utm_campaign"),
        user_agent=event.user_agent,
        traits=event.properties if event.type == "identify" else {},
    )


def _breakdown_of(funnel: Funnel, source: Event, context: _Context) -> str | None:
    """The breakdown value of one event (the attributed one of an attempt)."""
    from retrolytics.semantics import sessions

    breakdown = funnel.breakdown
    assert breakdown is not None
    if breakdown.field is not None:
        return source.fields.get(breakdown.field)
    if breakdown.session_column is not None:
        return getattr(context.sessions[source.event_id], breakdown.session_column)
    if breakdown.person_trait is not None:
        person, _ = person_of(source, context.periods)
        trait = sessions.trait_at(
            context.traits, person, breakdown.person_trait, source.occurred_at
        )
        return jsonb_text(trait)
    assert breakdown.property_name is not None
    return jsonb_text(source.properties.get(breakdown.property_name))


def _breakdown(funnel: Funnel, attempt: _Attempt, context: _Context) -> str | None:
    breakdown = funnel.breakdown
    if breakdown is None:
        return None
    if breakdown.attribution == "all_events":
        return _breakdown_of(funnel, attempt.entry, context)  # every event of the part's value
    if breakdown.attribution == "step":
        assert breakdown.attribution_step is not None
        source = attempt.step_events[breakdown.attribution_step - 1]
        return None if source is None else _breakdown_of(funnel, source, context)
    values = [_breakdown_of(funnel, event, context) for event in attempt.fills]
    present = [value for value in values if value]  # neither null nor ''
    if not present:
        return None
    return present[0] if breakdown.attribution == "first_touch" else present[-1]


def _left_out(funnel: Funnel, entry: Entry) -> bool:
    """Whether the attempt counts in no breakdown value's row (``unreached: leave_out``)."""
    breakdown = funnel.breakdown
    if breakdown is None or breakdown.unreached != "leave_out":
        return False
    assert breakdown.attribution_step is not None
    return entry.step_reached_at[breakdown.attribution_step - 1] is None


def funnel_entries(
    funnel: Funnel, events: Sequence[Event], data_end: datetime | None = None
) -> list[Entry]:
    """The funnel facts: one entry per attempt of every unit; ``data_end`` as in the
    semantics (``data_end_of``)."""
    context = _context(funnel, events)
    units: dict[str, list[Event]] = defaultdict(list)
    users: dict[str, str | None] = {}
    for event in events:
        if funnel.unit == "device":
            unit = event.anonymous_id
        elif funnel.unit == "session":
            unit = f"session:{context.sessions[event.event_id].first_event_id}"
        else:
            unit, users[unit] = person_of(event, context.periods)
        units[unit].append(event)
    entries = []
    for unit, unit_events in units.items():
        ended: list[tuple[_Attempt, str, datetime]] = []
        for part in _parts(funnel, _stream(funnel, unit_events), context):
            walk = _walk(funnel)
            for item in part:
                walk.take(item)
            walk.finish(data_end)
            ended += walk.ended
        for number, (attempt, outcome, ended_at) in enumerate(ended, start=1):
            entries.append(_entry(funnel, unit, users, number, attempt, outcome, ended_at, context))
    return entries


def _parts(
    funnel: Funnel, stream: list[_StreamEvent], context: _Context
) -> list[list[_StreamEvent]]:
    """The streams walked apart: with ``all_events`` one per breakdown value (in the order the
    values first appear), else the whole stream."""
    if funnel.breakdown is None or funnel.breakdown.attribution != "all_events":
        return [stream]
    parts: dict[str | None, list[_StreamEvent]] = {}
    for item in stream:
        parts.setdefault(_breakdown_of(funnel, item.event, context), []).append(item)
    return list(parts.values())


def data_end_of(funnels: Iterable[Funnel], events: Iterable[Event]) -> datetime | None:
    """The end of the data: the latest event that a step or exclusion of ``funnels`` matches."""
    refs = [r.event for f in funnels for r in (*f.steps, *f.exclusions)]
    times = [e.occurred_at for e in events if any(matches(ref, e) for ref in refs)]
    return max(times, default=None)


def _entry(
    funnel: Funnel,
    unit: str,
    users: dict[str, str | None],
    number: int,
    attempt: _Attempt,
    outcome: str,
    ended_at: datetime,
    context: _Context,
) -> Entry:
    entry = attempt.entry
    times = tuple(e.occurred_at if e is not None else None for e in attempt.step_events)
    converted = outcome == "converted"
    converted_at = ended_at if converted else None
    return Entry(
        funnel_name=funnel.name,
        unit_id=unit,
        user_id=users.get(unit) if funnel.unit == "user" else entry.user_id,
        anonymous_id=entry.anonymous_id,
        attempt_number=number,
        entry_event_id=entry.event_id,
        entered_at=entry.occurred_at,
        entry_step=next(i + 1 for i, e in enumerate(attempt.step_events) if e is entry),
        step_reached_at=times,
        furthest_step=attempt.filled,
        converted=converted,
        converted_at=converted_at,
        seconds_to_convert=(converted_at - entry.occurred_at).total_seconds()
        if converted_at
        else None,
        outcome=outcome,
        ended_at=ended_at,
        deadline_at=attempt.deadline,
        breakdown_value=_breakdown(funnel, attempt, context),
    )


# -- the mart --------------------------------------------------------------------------------


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont``: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = math.ceil(position)
    low, high = ordered[lower], ordered[upper]
    return low + (position - lower) * (high - low)


def _seconds_to_step(entry: Entry, k: int) -> float:
    return (_reached(entry, k) - entry.entered_at).total_seconds()


def _seconds_from_previous(entry: Entry, k: int) -> float | None:
    if k == 1:
        return None
    return (_reached(entry, k) - _reached(entry, k - 1)).total_seconds()


def _reached(entry: Entry, k: int) -> datetime:
    """When the attempt had filled k steps (its k-th filled step, by time then step)."""
    reached = sorted((t, i) for i, t in enumerate(entry.step_reached_at) if t is not None)
    return reached[k - 1][0]


@dataclass(frozen=True)
class _Timing:
    """Mean, median and 90th percentile of some seconds (all None without values)."""

    avg: float | None
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, values: Sequence[float | None]) -> _Timing:
        present = [v for v in values if v is not None]
        return cls(
            sum(present) / len(present) if present else None,
            percentile_cont(present, 0.5),
            percentile_cont(present, 0.9),
        )


PERIODS = ("day", "week", "month")


def period_start(period: str, day: date) -> date:
    """The first day of the day's period: itself, its ISO week's Monday, its month's first."""
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def units_between(
    funnel: Funnel, entries: Iterable[Entry], first_day: date, last_day: date
) -> dict[int, int]:
    """Per step k, the distinct units with an attempt (not excluded) that entered on a day from
    ``first_day`` to ``last_day`` and filled at least k steps: the mart's ``units`` of the
    overall rows, for any range of days. Steps no unit reached are left out."""
    reached: dict[int, set[str]] = defaultdict(set)
    for entry in entries:
        if entry.funnel_name != funnel.name or entry.outcome == "excluded":
            continue
        if first_day <= entry.entry_day <= last_day:
            for k in range(1, entry.furthest_step + 1):
                reached[k].add(entry.unit_id)
    return {k: len(units) for k, units in sorted(reached.items())}


def funnel_mart(
    funnel: Funnel, entries: Iterable[Entry], periods: Sequence[str] = PERIODS
) -> list[MartRow]:
    groups: dict[tuple[str, date, str], list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.funnel_name != funnel.name or entry.outcome == "excluded":
            continue
        values = [ALL_VALUES]
        if funnel.breakdown is not None and not _left_out(funnel, entry):
            value = entry.breakdown_value if entry.breakdown_value is not None else NO_VALUE
            if value != ALL_VALUES:  # the overall row's name: such a value counts there only
                values.append(value)
        for period in periods:
            for value in values:
                groups[(period, period_start(period, entry.entry_day), value)].append(entry)
    count = len(funnel.steps)
    rows = []
    for (period, start, value), group in sorted(groups.items()):
        group.sort(key=lambda e: (e.entered_at, e.attempt_number))
        timings = {}
        unit_counts = {}
        for k in range(1, count + 1):
            reaching = [e for e in group if e.furthest_step >= k]
            first_per_unit: dict[str, Entry] = {}
            for entry in reaching:
                first_per_unit.setdefault(entry.unit_id, entry)
            firsts = first_per_unit.values()
            timings[k] = (
                _Timing.of([_seconds_to_step(e, k) for e in firsts]),
                _Timing.of([_seconds_from_previous(e, k) for e in firsts]),
            )
            settled = {e.unit_id for e in reaching if e.outcome != "in_progress"}
            in_progress = {e.unit_id for e in reaching if e.outcome == "in_progress"}
            unit_counts[k] = (len(first_per_unit), len(reaching), len(settled), len(in_progress))
        for k in range(1, count + 1):
            units, attempts, settled, in_progress = unit_counts[k]
            previous = unit_counts[k - 1][2] if k > 1 else None
            first = unit_counts[1][2]
            rows.append(
                MartRow(
                    funnel_name=funnel.name,
                    period=period,
                    period_start=start,
                    breakdown_value=value,
                    step_number=k,
                    units=units,
                    entries=attempts,
                    units_in_progress=in_progress,
                    conversion_from_previous=settled / previous if previous else None,
                    conversion_overall=settled / first if first else None,
                    avg_seconds_to_step=timings[k][0].avg,
                    median_seconds_to_step=timings[k][0].median,
                    p90_seconds_to_step=timings[k][0].p90,
                    avg_seconds_from_previous=timings[k][1].avg,
                    median_seconds_from_previous=timings[k][1].median,
                    p90_seconds_from_previous=timings[k][1].p90,
                    avg_seconds_to_convert=timings[count][0].avg,
                    median_seconds_to_convert=timings[count][0].median,
                    p90_seconds_to_convert=timings[count][0].p90,
                )
            )
    return rows
