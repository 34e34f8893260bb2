"""The funnel_walk function (the SQL state machine) against the reference, on random streams.

The dbt tests run whole pipelines on a few data sets; this one calls the function directly,
hundreds of times, on small streams where every minute can hold several events: windows hit
exactly, steps tie, repeat and overlap. The stream is prepared as the semantics say (order,
step masks, hold_constant groups), the function walks it, and each attempt must equal the
reference's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import jinja2
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from retrolytics.language.funnels import Breakdown, EventRef, Exclusion, Funnel, Step
from retrolytics.semantics.funnels import Event, funnel_entries, json_key, jsonb_text
from tests.support.funnel_cases import T0
from tests.support.paths import REPO

pytestmark = pytest.mark.integration

MACRO = REPO / "dbt_project/macros/funnels/funnel_walk.sql"
LETTERS = "abcde"
ENTRIES = ("sequential", "every_entry")
BROKEN_BY = ("step_events", "any_event")


@pytest.fixture(scope="module")
def walk_db(stack) -> Iterator[psycopg.Connection]:
    """A database holding only the walk function, rendered from its dbt macro."""
    name = f"rt_walk_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(stack.database_url, dbname=name)
    template = jinja2.Environment().from_string(
        MACRO.read_text() + "{{ funnel_walk_function('walk.funnel_walk') }}"
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create schema walk")
            conn.execute(template.render())
            yield conn
    finally:
        with psycopg.connect(stack.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


@st.composite
def funnels(
    draw: st.DrawFn, months: bool = False, every_entry: bool = False, until_step: bool = False
) -> Funnel:
    """A random funnel; with ``months`` its window is 1 to 3 calendar months (``within`` in
    days then), else 1 to 8 minutes; with ``every_entry`` always that (ordered or strict).
    ``until_step``: an ordered or unordered funnel with exclusions watched after the deadline,
    and a window of 1 to 3 minutes (so that the 12 minutes of a stream hold steps and
    exclusions after it), steps of a, b or c only."""
    letters = "abc" if until_step else LETTERS
    count = draw(st.integers(2, 4))
    if every_entry:
        orders = ["ordered", "strict"]
    elif until_step:
        orders = ["ordered", "unordered"]
    else:
        orders = ["ordered", "strict", "unordered"]
    order = draw(st.sampled_from(orders))
    window = 0 if months else draw(st.integers(1, 3 if until_step else 8)) * 60
    within_unit, within_most = (86_400, 28) if months else (60, window // 60)
    steps = []
    for index in range(count):
        within = None
        if index and order != "unordered" and draw(st.booleans()):
            within = draw(st.integers(1, within_most)) * within_unit
        steps.append(Step(EventRef(definition=f"did_{draw(st.sampled_from(letters))}"), within))
    exclusions = []
    if until_step or draw(st.booleans()):
        # Unordered: only the whole funnel, and no step may be the excluded event.
        first = 1 if order == "unordered" else draw(st.integers(1, count - 1))
        last = count if order == "unordered" else draw(st.integers(first + 1, count))
        inside = range(1, last + 1) if order == "unordered" else range(first + 1, last + 1)
        if all(steps[k - 1].event.definition != "did_x" for k in inside):
            exclusions.append(Exclusion(EventRef(definition="did_x"), first, last))
        if order != "unordered" and draw(st.booleans()):  # a second, over another range
            first = draw(st.integers(1, count - 1))
            last = draw(st.integers(first + 1, count))
            other = f"did_{letters[-1]}"
            if all(steps[k - 1].event.definition != other for k in range(first + 1, last + 1)):
                exclusions.append(Exclusion(EventRef(definition=other), first, last))
    attribution = draw(st.sampled_from(["first_touch", "last_touch", "step", "all_events"]))
    # every_entry goes with every order the validator accepts it with (ordered, strict).
    if every_entry:
        entries = "every_entry"
    elif until_step or order == "unordered":
        entries = "sequential"
    else:
        entries = draw(st.sampled_from(ENTRIES))
    # until_step: with exclusions, on ordered and unordered funnels entered sequentially (as the
    # validator accepts).
    watchable = exclusions and order != "strict" and entries == "sequential"
    scopes = ["window", "until_step"] if watchable else ["window"]
    return Funnel(
        name="f",
        description="d",
        owner="o",
        steps=tuple(steps),
        conversion_window_seconds=window,
        conversion_window_months=draw(st.integers(1, 3)) if months else 0,
        order=order,
        exclusion_scope="until_step" if until_step else draw(st.sampled_from(scopes)),
        exclusions=tuple(exclusions),
        hold_constant=("p",) if draw(st.booleans()) else (),
        breakdown=Breakdown(
            property_name="b",
            attribution=attribution,
            attribution_step=draw(st.integers(1, count)) if attribution == "step" else None,
        ),
        entries=entries,
        # broken_by goes with strict funnels only (as the validator accepts), in every walk.
        broken_by=draw(st.sampled_from(BROKEN_BY)) if order == "strict" else "step_events",
    )


# Month windows: entries at the ends of long months (a leap February among them), steps
# 28 to 61 days later give or take a minute, so deadlines fall on clamped days.
MONTH_ENDS = [datetime(2027, 1, 31, 10, tzinfo=UTC), datetime(2028, 1, 30, 23, 59, tzinfo=UTC)]
MONTH_ENDS += [datetime(2027, 3, 31, tzinfo=UTC), datetime(2027, 12, 31, 12, tzinfo=UTC)]
MONTH_OFFSETS = [
    timedelta(days=d, minutes=m) for d in (0, 28, 29, 30, 31, 59, 61) for m in (-1, 0, 1)
]


@st.composite
def month_times(draw: st.DrawFn) -> datetime:
    return draw(st.sampled_from(MONTH_ENDS)) + draw(st.sampled_from(MONTH_OFFSETS))


@st.composite
def streams(
    draw: st.DrawFn, times: st.SearchStrategy[datetime] | None = None, letters: str = LETTERS
) -> list[Event]:
    if times is None:
        times = st.integers(0, 12).map(lambda minutes: T0 + timedelta(minutes=minutes))
    events = []
    for number in range(draw(st.integers(0, 14))):
        # "y" matches no step or exclusion of any funnel drawn: an event of another kind, in the
        # stream of a broken_by: any_event funnel only (as may be a letter its steps do not use).
        matched = draw(st.sets(st.sampled_from(letters + "xy"), min_size=1, max_size=2))
        # Breakdown values, empty ones among them (first and last touch skip those).
        properties = {"b": draw(st.sampled_from(["u", "v", 7, "", None]))}
        if properties["b"] is None and draw(st.booleans()):
            del properties["b"]
        value = draw(st.sampled_from([1, 2, None, "absent"]))
        if value != "absent":
            properties["p"] = value
        events.append(
            Event(
                event_id=uuid.UUID(int=draw(st.integers(1, 40)) * 1000 + number),
                anonymous_id="device",
                occurred_at=draw(times),
                type="custom",
                properties=properties,
                definitions=frozenset(f"did_{letter}" for letter in matched),
            )
        )
    return events


def walk_in_sql(
    conn: psycopg.Connection, funnel: Funnel, events: list[Event], data_end: datetime | None
) -> list[tuple]:
    """Prepare the stream as documented and let the SQL function walk it."""
    count = len(funnel.steps)
    rows = []
    for event in events:
        steps = [i for i, s in enumerate(funnel.steps) if s.event.definition in event.definitions]
        exclusions = [
            i for i, x in enumerate(funnel.exclusions) if x.event.definition in event.definitions
        ]
        if steps or exclusions or funnel.broken_by == "any_event":
            rows.append((event, steps, exclusions))
    rows.sort(key=lambda r: (r[0].occurred_at, r[1][0] if r[1] else count, r[0].event_id))
    holds: dict = {}
    for event, _, _ in rows:
        holds.setdefault(tuple(json_key(event.properties.get(p)) for p in funnel.hold_constant), 0)
    for group, key in enumerate(sorted(holds, key=repr)):
        holds[key] = group
    breakdown = funnel.breakdown
    assert breakdown is not None
    result = conn.execute(
        "select entry_event_id, entered_at, entry_step, step_reached_at, furthest_step, outcome,"
        " ended_at, deadline_at, breakdown_value from walk.funnel_walk("
        "%s, %s, %s * interval '1 second' + %s * interval '1 month', %s::interval[],"
        " %s::integer[], %s::integer[], %s, %s,"
        " %s::timestamptz[], %s::integer[], %s::integer[], %s::integer[], %s::uuid[],"
        " %s::text[], %s::text[], %s::text[], %s::timestamptz, %s, %s, %s)",
        (
            count,
            funnel.order,
            funnel.conversion_window_seconds,
            funnel.conversion_window_months,
            [
                timedelta(seconds=s.within_seconds) if s.within_seconds else None
                for s in funnel.steps
            ],
            [x.from_step for x in funnel.exclusions],
            [x.to_step for x in funnel.exclusions],
            breakdown.attribution,
            breakdown.attribution_step,
            [e.occurred_at for e, _, _ in rows],
            [sum(1 << i for i in steps) for _, steps, _ in rows],
            [sum(1 << i for i in excl) for _, _, excl in rows],
            [
                holds[tuple(json_key(e.properties.get(p)) for p in funnel.hold_constant)]
                for e, _, _ in rows
            ],
            [e.event_id for e, _, _ in rows],
            [e.anonymous_id for e, _, _ in rows],
            [e.user_id for e, _, _ in rows],
            [jsonb_text(e.properties.get("b")) for e, _, _ in rows],
            data_end,
            funnel.entries,
            funnel.exclusion_scope,
            funnel.broken_by,
        ),
    )
    return [(*r[:3], list(r[3]), *r[4:]) for r in result]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(funnel=funnels(), events=streams())
def test_the_walk_equals_the_reference(walk_db: psycopg.Connection, funnel: Funnel, events) -> None:
    assert_walk_equals_the_reference(walk_db, funnel, events)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(funnel=funnels(every_entry=True), events=streams())
def test_every_entry_windows_in_the_walk_equal_the_reference(
    walk_db: psycopg.Connection, funnel: Funnel, events
) -> None:
    """Overlapping windows, each with the hold values, exclusions, strict breaks and
    attributions of the draw."""
    assert_walk_equals_the_reference(walk_db, funnel, events)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(funnel=funnels(months=True), events=streams(month_times()))
def test_month_windows_in_the_walk_equal_the_reference(
    walk_db: psycopg.Connection, funnel: Funnel, events
) -> None:
    """Calendar months: the SQL adds the interval in UTC, the reference clamps the day."""
    walk_db.execute("set timezone = 'America/New_York'")  # the session's zone must not matter
    assert_walk_equals_the_reference(walk_db, funnel, events)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(funnel=funnels(until_step=True), events=streams(letters="abc"))
def test_exclusions_after_the_deadline_in_the_walk_equal_the_reference(
    walk_db: psycopg.Connection, funnel: Funnel, events
) -> None:
    """``exclusion_scope: until_step``: the watch of dropped-off attempts, on streams longer
    than the window."""
    assert_walk_equals_the_reference(walk_db, funnel, events)


def assert_walk_equals_the_reference(
    walk_db: psycopg.Connection, funnel: Funnel, events: list[Event]
) -> None:
    # The end of the data: the latest event, so attempts alive at the end may be in progress.
    data_end = max((e.occurred_at for e in events), default=None)
    expected = [
        (
            e.entry_event_id,
            e.entered_at,
            e.entry_step,
            list(e.step_reached_at),
            e.furthest_step,
            e.outcome,
            e.ended_at,
            e.deadline_at,
            e.breakdown_value,
        )
        for e in funnel_entries(funnel, events, data_end)
    ]
    assert walk_in_sql(walk_db, funnel, events, data_end) == expected


def test_every_entry_in_sql_takes_the_window_of_a_later_step_one(
    walk_db: psycopg.Connection,
) -> None:
    """windowFunnel's answer where the sequential walk gives less: a, a, then b and c that fit
    only the second a's window (10 minutes)."""
    funnel = Funnel(
        name="f",
        description="d",
        owner="o",
        steps=tuple(Step(EventRef(definition=f"did_{letter}")) for letter in "abc"),
        conversion_window_seconds=600,
        breakdown=Breakdown(property_name="b"),
    )
    events = [
        Event(
            event_id=uuid.UUID(int=number + 1),
            anonymous_id="device",
            occurred_at=T0 + timedelta(minutes=minutes),
            type="custom",
            definitions=frozenset({f"did_{letter}"}),
        )
        for number, (minutes, letter) in enumerate([(0, "a"), (8, "a"), (12, "b"), (15, "c")])
    ]
    sequential = walk_in_sql(walk_db, funnel, events, None)
    assert [(row[4], row[5]) for row in sequential] == [(1, "dropped_off")]
    every = Funnel(**{**funnel.__dict__, "entries": "every_entry"})
    (row,) = walk_in_sql(walk_db, every, events, None)
    assert row[0] == uuid.UUID(int=2) and (row[4], row[5]) == (3, "converted")
    assert row[3] == [T0 + timedelta(minutes=m) for m in (8, 12, 15)]
