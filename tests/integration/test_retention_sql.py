"""mart_retention against the reference (retrolytics/semantics/retention.py), on the real
PostgreSQL: period boundaries in zones off UTC (a half-hour offset, a DST change, a Sunday
week in the southern hemisphere), first-time and recurring cohorts, returns after the last
period counted and after the data's end, late events (one moving a unit's first-time cohort,
one identifying a device late), and windowed runs against full builds.

One database for the module; each example empties raw.events and rebuilds from scratch.
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
    build,
    event,
    prepare,
    reference_mart,
    run,
    sql_mart,
    truncate_events,
)
from tests.support.warehouse import create_database, drop_database

pytestmark = pytest.mark.integration

# New York falls back on 2026-11-01 06:00 UTC; the streams span it and the end of October.
START = datetime(2026, 10, 27, 18, tzinfo=UTC)
SPAN_HOURS = 12 * 24
DEVICES = [f"device-{n}" for n in range(6)]
USERS = ["u0", "u1", "u2"]
VALUES = [1, "1", None, "x"]


@pytest.fixture(scope="module")
def warehouse(
    stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, list[Retention], str]]:
    """One database for the module, its seeds, views and tables built once (no events yet)."""
    project, declared = prepare(tmp_path_factory.mktemp("retention"))
    url = create_database(stack.database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        schema.bootstrap(conn)
    build(project, url)
    yield project, declared, url
    drop_database(stack.database_url, url)


def _store(url: str, documents: list[dict]) -> None:
    if documents:
        with psycopg.connect(url, autocommit=True) as conn:
            store_events(conn, documents)


def stories() -> tuple[list[dict], list[dict]]:
    """(on time, late) events in every example: a late start event older than its unit's first
    start moves the unit's first-time cohort back; a phone identified late moves its earlier
    events to its user; returns a week later fall after every hourly and daily period."""
    t = START + timedelta(days=5)
    on_time = [
        event("story-first", t, "a", properties={"p": 1}),
        event("story-first", t + timedelta(hours=1), "b", properties={"p": 1}),
        event("story-first", t + timedelta(days=1), "a", properties={"p": 1}),
        event("story-first", t + timedelta(days=1, hours=1), "c", properties={}),
        event("story-first", t + timedelta(days=1, hours=2), "c", properties={}),
        event("story-phone", t + timedelta(hours=3), "a", properties={"p": "x"}),
        event("story-phone", t + timedelta(days=1, hours=3), "a", properties={"p": "x"}),
        event("story-laptop", t - timedelta(days=2), "identify", user_id="u0", properties={}),
        event("story-laptop", t - timedelta(days=2, hours=-1), "b", properties={"p": "x"}),
        event("story-laptop", t + timedelta(days=7), "c", properties={}),
        event("story-laptop", t + timedelta(days=7, hours=1), "c", properties={}),
    ]
    late = [
        event("story-first", t - timedelta(days=3), "a", properties={"p": "1"}),
        event(
            "story-phone",
            t + timedelta(days=1, hours=4),
            "identify",
            user_id="u0",
            properties={"plan": "pro"},
        ),
    ]
    return on_time, late


# Times on a grid of hours and of minutes on and around the half hour (Kolkata's hour
# boundaries) and the hour, so events land exactly on period edges and tie.
moments = st.builds(
    lambda hours, minute: START + timedelta(hours=hours, minutes=minute),
    st.integers(0, SPAN_HOURS),
    st.sampled_from([0, 29, 30, 59]),
)
one_event = st.tuples(
    st.sampled_from(DEVICES),
    moments,
    st.sampled_from(["a", "a", "b", "c", "c", "identify"]),
    st.sampled_from(VALUES),
    st.sampled_from(USERS),
    st.booleans(),  # arrives late
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
@given(drawn=st.lists(one_event, min_size=10, max_size=80))
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
    # The late start moved story-first's first-time hourly cohort three days back.
    assert after != before
