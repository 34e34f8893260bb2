"""The retention reference on hand-worked cases: each figure here is counted by hand."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from retrolytics.language.funnels import EventRef
from retrolytics.language.retention import Retention
from retrolytics.semantics.funnels import Event
from retrolytics.semantics.retention import (
    cohorts,
    data_end_of,
    period_of,
    retention_mart,
)

A = EventRef(event_type="custom", event_name="a")
B = EventRef(event_type="custom", event_name="b")
DAY1 = datetime(2026, 11, 2, 12, tzinfo=UTC)  # a Monday


def declared(**options) -> Retention:
    settings = {"start_event": A, "return_event": B, "period": "day", "periods": 3}
    settings.update(options)
    return Retention(name="r", description="d", owner="o", **settings)


def ev(device: str, moment: datetime, name: str, **properties) -> Event:
    return Event(
        event_id=uuid.uuid4(),
        anonymous_id=device,
        occurred_at=moment,
        type="custom",
        name=name,
        properties=properties,
    )


def table(retention: Retention, events: list[Event], data_end: datetime | None = None) -> dict:
    end = data_end or data_end_of([retention], events)
    return {
        (row.cohort_period.date().isoformat(), row.breakdown_value, row.period_offset): (
            row.returned_units,
            row.cumulative_returned_units,
            row.is_complete,
        )
        for row in retention_mart(retention, events, end)
    }


def test_first_time_counts_the_first_start_only_and_recurring_every_one() -> None:
    events = [
        ev("d", DAY1, "a"),
        ev("d", DAY1 + timedelta(days=1), "b"),
        ev("d", DAY1 + timedelta(days=2), "a"),
        ev("d", DAY1 + timedelta(days=3), "b"),
        ev("d", DAY1 + timedelta(days=9), "b"),  # offset 9 of day 1: after the last period
    ]
    first = table(declared(), events)
    assert first == {
        ("2026-11-02", "(all)", 0): (1, 1, True),
        ("2026-11-02", "(all)", 1): (1, 1, True),
        ("2026-11-02", "(all)", 2): (0, 1, True),
        ("2026-11-02", "(all)", 3): (1, 1, True),
    }
    recurring = table(declared(cohorting="recurring"), events)
    assert recurring[("2026-11-04", "(all)", 1)] == (1, 1, True)
    assert recurring[("2026-11-04", "(all)", 2)] == (0, 0, True)
    assert len(recurring) == 8


def test_a_unit_that_started_before_is_in_no_later_first_time_cohort() -> None:
    events = [
        ev("old", DAY1 - timedelta(days=30), "a"),
        ev("old", DAY1, "a"),
        ev("new", DAY1, "a"),
        ev("new", DAY1 + timedelta(days=1), "b"),
    ]
    members = cohorts(declared(), events)
    assert {period.start.date().isoformat(): units for (period, _), units in members.items()} == {
        "2026-10-03": {"old"},
        "2026-11-02": {"new"},
    }


def test_periods_after_the_end_of_the_data_are_unknown_not_zero() -> None:
    events = [ev("d", DAY1, "a"), ev("d", DAY1 + timedelta(days=2), "b")]
    rows = table(declared(), events)
    # Data ends during offset 2 (day 3): counted so far, not complete; offset 3 not begun.
    assert rows[("2026-11-02", "(all)", 1)] == (0, 1, True)
    assert rows[("2026-11-02", "(all)", 2)] == (1, 1, False)
    assert rows[("2026-11-02", "(all)", 3)] == (None, None, False)
    assert table(declared(), events, data_end=DAY1)[("2026-11-02", "(all)", 0)] == (1, 1, False)


def test_period_boundaries_follow_the_time_zone_and_the_week_start() -> None:
    # 03:59 UTC on Sunday 1 November is still Saturday 31 October in New York (EDT, -4).
    moment = datetime(2026, 11, 1, 3, 59, tzinfo=UTC)
    assert period_of(declared(time_zone="America/New_York"), moment).start == datetime(2026, 10, 31)
    assert period_of(declared(period="month", time_zone="America/New_York"), moment).start == (
        datetime(2026, 10, 1)
    )
    sunday = datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert period_of(declared(period="week"), sunday).start == datetime(2026, 10, 26)
    assert period_of(declared(period="week", week_start="sunday"), sunday).start == (
        datetime(2026, 11, 1)
    )
    # Kolkata is 5:30 ahead: 10:29 and 10:31 UTC are 15:59 and 16:01 there, two hours.
    hourly = declared(period="hour", time_zone="Asia/Kolkata")
    before, after = (period_of(hourly, datetime(2026, 11, 2, 10, m, tzinfo=UTC)) for m in (29, 31))
    assert (before.start.hour, after.start.hour, after.index - before.index) == (15, 16, 1)


def test_a_breakdown_return_counts_only_with_the_same_value() -> None:
    events = [
        ev("d", DAY1, "a", p=1),
        ev("d", DAY1 + timedelta(days=1), "b", p=2),
        ev("e", DAY1, "a"),
        ev("e", DAY1 + timedelta(days=1), "b"),
    ]
    rows = table(declared(breakdown_property="p"), events)
    assert rows[("2026-11-02", "1", 1)] == (0, 0, False)
    assert rows[("2026-11-02", "(none)", 1)] == (1, 1, False)
    assert rows[("2026-11-02", "(all)", 1)] == (2, 2, False)


def test_min_occurrences_per_return_period() -> None:
    events = [
        ev("d", DAY1, "a"),
        ev("d", DAY1 + timedelta(days=1), "b"),
        ev("d", DAY1 + timedelta(days=2), "b"),
        ev("d", DAY1 + timedelta(days=2, hours=1), "b"),
        ev("d", DAY1 + timedelta(days=4), "a"),
    ]
    rows = table(declared(min_occurrences=2), events)
    assert rows[("2026-11-02", "(all)", 1)] == (0, 1, True)
    assert rows[("2026-11-02", "(all)", 2)] == (1, 1, True)
    assert rows[("2026-11-02", "(all)", 3)] == (0, 0, True)


def identify(device: str, moment: datetime, user: str, **traits) -> Event:
    return Event(
        event_id=uuid.uuid4(),
        anonymous_id=device,
        occurred_at=moment,
        type="identify",
        user_id=user,
        properties=traits,
    )


def test_a_person_trait_is_read_as_of_the_start_and_any_return_counts() -> None:
    events = [
        identify("d", DAY1 - timedelta(hours=1), "u", plan="free"),
        ev("d", DAY1, "a", p=1),
        ev("d", DAY1 + timedelta(days=1), "b", p=2),  # another p: counts all the same
        identify("d", DAY1 + timedelta(days=1, hours=2), "u", plan="pro"),
        ev("d", DAY1 + timedelta(days=1, hours=3), "a"),
        ev("d", DAY1 + timedelta(days=2), "b"),
    ]
    rows = table(declared(breakdown_person="plan", cohorting="recurring", unit="user"), events)
    assert rows[("2026-11-02", "free", 1)] == (1, 1, True)
    assert rows[("2026-11-03", "pro", 1)] == (1, 1, False)
    assert ("2026-11-03", "free", 1) not in rows
