"""mart_retention against the reference (retrolytics/semantics/retention.py), on the real
PostgreSQL: period boundaries in zones off UTC (a half-hour offset, a DST change, a Sunday
week in the southern hemisphere), first-time and recurring cohorts, returns after the last
period counted and after the data's end, late events (one moving a unit's first-time cohort,
one identifying a device late, which moves an older cohort of its user), and a windowed run
against the full build before it.

One database for the module, parsed and seeded once; each example empties raw.events, builds
over all history, then runs the window of its late events. Late events fall in the last days
of the stream, so a windowed run recomputes some cohorts and must leave the others as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion import schema
from ingestion.loader import store_events
from retrolytics.language.retention import Retention
from tests.support.funnels import assert_same
from tests.support.retention import (
    event,
    prepare,
    reference_mart,
    run,
    seed,
    sql_mart,
    truncate_events,
)
from tests.support.warehouse import create_database, drop_database

pytestmark = pytest.mark.integration

# New York falls back on 2026-11-01 06:00 UTC; the streams span it and the end of October.
START = datetime(2026, 10, 27, 18, tzinfo=UTC)
SPAN_HOURS = 12 * 24
# Late events arrive for the last four days only, as the hourly schedule sees them.
LATE_FROM = START + timedelta(days=8)
LATE_HOURS = 4 * 24
DEVICES = [f"device-{n}" for n in range(6)]
USERS = ["u0", "u1", "u2"]
VALUES = [1, "1", None, "x"]


@pytest.fixture(scope="module")
def warehouse(
    stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, list[Retention], str]]:
    """One database for the module, the project parsed and its seeds loaded once."""
    project, declared = prepare(tmp_path_factory.mktemp("retention"))
    url = create_database(stack.database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        schema.bootstrap(conn)
    seed(project, url)
    yield project, declared, url
    drop_database(stack.database_url, url)


def _store(url: str, documents: list[dict]) -> None:
    if documents:
        with psycopg.connect(url, autocommit=True) as conn:
            store_events(conn, documents)


def stories() -> tuple[list[dict], list[dict]]:
    """(on time, late) events in every example. A late start event older than its unit's first
    start moves the unit's first-time cohort back. A phone identified late as u0 moves its
    events, days before the window, to u0, whose first start (on its laptop) was 9 hours after
    the phone's and more than 5 (the hourly periods) before the phone's next: u0 leaves the
    laptop's hourly cohort, though no event of it is in the window nor near the phone's.
    Returns a week later fall after every hourly and daily period."""
    s = START + timedelta(days=4)
    first = START + timedelta(days=10)
    on_time = [
        event("story-first", first, "a", properties={"p": 1}),
        event("story-first", first + timedelta(hours=1), "b", properties={"p": 1}),
        event("story-first", first + timedelta(days=1), "a", properties={"p": 1}),
        event("story-first", first + timedelta(days=1, hours=1), "c", properties={}),
        event("story-first", first + timedelta(days=1, hours=2), "c", properties={}),
        event("story-phone", s + timedelta(hours=3), "a", properties={"p": "x"}),
        event("story-phone", s + timedelta(days=1, hours=3), "a", properties={"p": "x"}),
        event("story-laptop", s - timedelta(days=2), "identify", user_id="u0", properties={}),
        event("story-laptop", s - timedelta(days=2, hours=-1), "b", properties={"p": "x"}),
        event("story-laptop", s + timedelta(hours=12), "a", properties={"p": "x"}),
        event("story-laptop", s + timedelta(days=7), "c", properties={}),
        event("story-laptop", s + timedelta(days=7, hours=1), "c", properties={}),
    ]
    late = [
        event("story-first", first - timedelta(hours=12), "a", properties={"p": "1"}),
        event(
            "story-phone",
            LATE_FROM + timedelta(days=1),
            "identify",
            user_id="u0",
            properties={"plan": "pro"},
        ),
    ]
    return on_time, late


# Times on a grid of hours and of minutes on and around the half hour (Kolkata's hour
# boundaries) and the hour, so events land exactly on period edges and tie.
def _moments(first: datetime, hours: int) -> st.SearchStrategy[datetime]:
    return st.builds(
        lambda hour, minute: first + timedelta(hours=hour, minutes=minute),
        st.integers(0, hours),
        st.sampled_from([0, 29, 30, 59]),
    )


def _events(moments: st.SearchStrategy[datetime], late: bool) -> st.SearchStrategy[tuple]:
    return st.tuples(
        st.sampled_from(DEVICES),
        moments,
        st.sampled_from(["a", "a", "b", "c", "c", "identify"]),
        st.sampled_from(VALUES),
        st.sampled_from(USERS),
        st.just(late),
    )


one_event = st.one_of(
    _events(_moments(START, SPAN_HOURS), late=False),
    _events(_moments(LATE_FROM, LATE_HOURS), late=True),
)


def _documents(drawn: list[tuple]) -> tuple[list[dict], list[dict]]:
    """Identifies carry a plan trait (or none); the other events a property p and a page."""
    early, late = stories()
    for device, moment, kind, value, user, is_late in drawn:
        if kind == "identify":
            traits = {} if value is None else {"plan": value}
            extra: dict = {"user_id": user, "properties": traits}
        else:
            path = f"/page/{value}"
            extra = {"properties": {}, "page": {"url": f"https://shop.test{path}", "path": path}}
            if value is not None:
                extra["properties"]["p"] = value
        (late if is_late else early).append(event(device, moment, kind, **extra))
    return early, late


def _window(late: list[dict]) -> dict:
    """A window whose start minus its lookback is the first late event and whose end is just
    after the last one: stored events after it must stay as they were."""
    times = sorted(datetime.fromisoformat(d["occurred_at"].replace("Z", "+00:00")) for d in late)
    start = times[0] + timedelta(hours=6)
    end = max(times[-1] + timedelta(seconds=1), start + timedelta(hours=1))
    return {"start": start.isoformat(), "end": end.isoformat(), "lookback_hours": 6}


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=st.lists(one_event, min_size=10, max_size=60))
def test_full_and_windowed_runs_equal_the_reference(
    warehouse: tuple[Path, list[Retention], str], drawn: list[tuple]
) -> None:
    project, declared, url = warehouse
    early, late = _documents(drawn)
    truncate_events(url)
    _store(url, early)
    run(project, url)
    before = sql_mart(url)
    assert_same(before, reference_mart(declared, early), "run over all history")

    _store(url, late)
    run(project, url, **_window(late))
    after = sql_mart(url)
    assert_same(after, reference_mart(declared, early + late), "windowed run after late events")
    # The late start moved story-first's first-time hourly cohort half a day back.
    assert after != before
