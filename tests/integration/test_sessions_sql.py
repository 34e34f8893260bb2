"""fct_sessions, the person and device dimensions and the trait history against the reference
(retrolytics/semantics/sessions.py), on the real PostgreSQL, through windowed runs like
Dagster's and full rebuilds."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demo.sessions import session_summary_lines
from ingestion import erasure
from ingestion.loader import store_events
from retrolytics.warehouse import runner
from tests.support.sessions import (
    GOOGLEBOT,
    WINDOWS_CHROME,
    assert_equal_states,
    build,
    event,
    iso,
    prepare_project,
    reference_state,
    sql_state,
    utc,
)
from tests.support.warehouse import fresh_database

pytestmark = pytest.mark.integration

DAY0 = utc(2026, 11, 20)


def day(n: int) -> str:
    return iso(DAY0 + timedelta(days=n))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_project(tmp_path_factory.mktemp("sessions") / "dbt_project")


def edge_cases() -> tuple[list[dict], list[dict]]:
    """(events stored first, late events stored after the first runs)."""
    at = DAY0.replace
    later = timedelta(days=1)
    early: list[dict] = [
        # Exactly 30 minutes apart: a new session; a microsecond less: the same one.
        event("exact", at(hour=10), session_id="c1"),
        event("exact", at(hour=10, minute=30), session_id="c1"),
        event("exact", at(hour=10, minute=59, second=59, microsecond=999_999), session_id="c2"),
        # Across midnight, which is also the edge of the daily partitions.
        event("midnight", at(hour=23, minute=50), path="/late-night"),
        event("midnight", at(hour=23, minute=55) + timedelta(minutes=15), path="/after"),
        event("midnight", at(hour=23, minute=55) + timedelta(minutes=40), "click"),
        # Two sessions that a late event will merge, and two it will not.
        event("merge", at(hour=10) + later),
        event("merge", at(hour=10, minute=40) + later, path="/second"),
        event("apart", at(hour=9) + later),
        event("apart", at(hour=13) + later),
        # A campaign change inside a session does not split it; the landing's campaign counts.
        event(
            "campaign",
            at(hour=12),
            path="/product/1",
            referrer="https://www.Google.com/search?q=shoes",
            utm={"source": "google", "medium": "cpc", "campaign": "shoes"},
            user_agent=WINDOWS_CHROME,
        ),
        event(
            "campaign",
            at(hour=12, minute=5),
            path="/cart",
            utm={"source": "newsletter", "medium": "email", "campaign": "weekly"},
            user_agent=WINDOWS_CHROME,
        ),
        event("campaign", at(hour=12, minute=6), "click", path="/cart"),
        # No pageview: the first event lands, and a click alone is no bounce.
        event("clicks", at(hour=15), "click", path="/restored"),
        event("clicks", at(hour=15, minute=1), "custom", path="/restored"),
        event("bounce", at(hour=16), path="/only"),
        event("crawler", at(hour=17), user_agent=GOOGLEBOT),
        event("no-agent", at(hour=18), user_agent=None),
        # Identity: anonymous browsing, then a login with traits; the plan changes twice, once
        # on another device; the phone identifies again (already stitched) with a new trait.
        event("phone", at(hour=8)),
        event("phone", at(hour=9) + later),
        event("phone", at(hour=9, minute=1) + later, "identify", user_id="u1",
              properties={"plan": "free", "country": "DE"}),
        event("laptop", at(hour=18) + later, user_agent=WINDOWS_CHROME),
        event("laptop", at(hour=18, minute=2) + later, "identify", user_id="u1",
              properties={"plan": "pro"}),
        event("phone", at(hour=20) + later, "identify", user_id="u1",
              properties={"plan": "pro", "team": "x"}),
        event("phone", at(hour=8) + 2 * later, "identify", user_id="u1",
              properties={"plan": "enterprise", "country": None}),
        # One session the day before the first run; its device logs in for the first time two
        # days later (a late event below): the session is redone with its person, though it
        # lies before that run's window.
        event("tablet", at(hour=8) - later),
        # A shared device: one user, then another.
        event("kiosk", at(hour=11), "identify", user_id="u2"),
        event("kiosk", at(hour=14), "identify", user_id="u3"),
        event("kiosk", at(hour=14, minute=5)),
        # Two devices of one user identify at the same instant with different values.
        event("twin-a", at(hour=19), "identify", user_id="u4", properties={"plan": "free"}),
        event("twin-b", at(hour=19), "identify", user_id="u4", properties={"plan": "pro"}),
    ]  # fmt: skip
    arrival = DAY0 + 2 * later + timedelta(hours=1)
    late = [
        event("merge", at(hour=10, minute=20) + later, "click", received_at=arrival),
        event("apart", at(hour=11) + later, received_at=arrival),
        event("midnight", at(hour=23, minute=59), received_at=arrival),
        event("tablet", at(minute=30) + 2 * later, "identify", user_id="u5", received_at=arrival),
    ]
    return early, late


def test_windowed_runs_late_events_and_a_rebuild_equal_the_reference(
    project: Path, database_url: str, raw_db: psycopg.Connection
) -> None:
    early, late = edge_cases()
    random.Random(15).shuffle(early)  # arrival order is not event order
    store_events(raw_db, early)
    for n in range(3):
        build(project, database_url, start=day(n), end=day(n + 1), lookback_hours=24)
    assert_equal_states(sql_state(database_url), reference_state(early), "daily runs")

    store_events(raw_db, late)
    # The late events are a day old: the hourly run of day 2 picks them up by its lookback.
    build(project, database_url, start=day(2), end=day(3), lookback_hours=48)
    windowed = sql_state(database_url)
    expected = reference_state(early + late)
    assert_equal_states(windowed, expected, "after the late events")
    sessions = windowed["marts.fct_sessions"]
    assert [k for k in sessions if k[0] == "merge"] == [
        ("merge", DAY0 + timedelta(days=1, hours=10))
    ]
    assert len([k for k in sessions if k[0] == "apart"]) == 3
    assert len([k for k in sessions if k[0] == "exact"]) == 2

    # Rerunning a window changes nothing; a rebuild from scratch gives the same rows.
    build(project, database_url, start=day(1), end=day(2), lookback_hours=24)
    assert sql_state(database_url) == windowed
    build(project, database_url, full_refresh=True)
    assert sql_state(database_url) == windowed

    # The demo's summary reads the daily mart.
    days = expected["marts.mart_sessions_daily"]
    with psycopg.connect(database_url) as conn:
        lines = session_summary_lines(conn)
    total = sum(row["sessions"] for row in days.values())
    assert lines[0].startswith(f"sessions: {total} over {len(days)} days")
    assert [line.split()[0] for line in lines[1:]] == [f"{d:%Y-%m-%d}" for (d,) in sorted(days)]

    # Without its plan in the same invocation a windowed run would miss the window: refused.
    with pytest.raises(runner.DbtFailed, match="needs its plan int_sessions_plan"):
        runner.run_dbt(
            ["run", "--select", "fct_sessions"],
            database_url=database_url,
            project_dir=project,
            window={"start": day(1), "end": day(2)},
        )
    assert sql_state(database_url) == windowed


# -- generated streams -----------------------------------------------------------------------

GAPS = st.sampled_from(
    [
        timedelta(0),
        timedelta(seconds=1),
        timedelta(minutes=29, seconds=59, microseconds=999_999),
        timedelta(minutes=30),
        timedelta(minutes=31),
        timedelta(hours=3),
        timedelta(hours=9),
    ]
)
KINDS = st.sampled_from(["pageview", "pageview", "click", "custom", "identify"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[dict], list[dict]]:
    """A few devices' events over at most three days: (stored first, arriving late)."""
    early, late = [], []
    for device in draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=3, unique=True)):
        moment = DAY0 + timedelta(hours=draw(st.integers(0, 20)))
        for gap, kind, is_late in draw(
            st.lists(st.tuples(GAPS, KINDS, st.booleans()), min_size=1, max_size=6)
        ):
            moment += gap
            extra: dict = {"session_id": f"c-{device}"}
            if kind == "identify":
                extra["user_id"] = draw(st.sampled_from(["u1", "u2"]))
                extra["properties"] = {"plan": draw(st.sampled_from(["free", "pro"]))}
            path = f"/p{draw(st.integers(0, 3))}"
            document = event(f"dev-{device}", moment, kind, path=path, **extra)
            (late if is_late else early).append(document)
    return early, late


def days_after_day0(iso_day: str) -> int:
    return (utc(*map(int, iso_day.split("-"))) - DAY0).days


@settings(
    max_examples=2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams(), rerun_order=st.randoms(use_true_random=False))
def test_generated_streams_windowed_equal_reference_and_rebuild(
    project: Path, stack, stream: tuple[list[dict], list[dict]], rerun_order: random.Random
) -> None:
    early, late = stream
    with fresh_database(stack.database_url) as url, psycopg.connect(url, autocommit=True) as conn:
        store_events(conn, early)
        last_day = max((d["occurred_at"][:10] for d in early + late), default=day(0)[:10])
        for n in range(days_after_day0(last_day) + 1):
            build(project, url, tests=False, start=day(n), end=day(n + 1))
        store_events(conn, late)
        # Each day with late events runs again, in any order: the backfill of a partition.
        late_days = sorted({(d["occurred_at"][:10]) for d in late})
        rerun_order.shuffle(late_days)
        for late_day in late_days:
            n = days_after_day0(late_day)
            build(project, url, tests=False, start=day(n), end=day(n + 1))
        windowed = sql_state(url)
        assert_equal_states(windowed, reference_state(early + late), "windowed runs")
        build(project, url, tests=False, full_refresh=True)
        assert sql_state(url) == windowed


def test_after_an_erasure_the_others_still_equal_the_reference(
    project: Path, database_url: str, raw_db: psycopg.Connection
) -> None:
    early, late = edge_cases()
    documents = early + late
    store_events(raw_db, documents)
    build(project, database_url, full_refresh=True, tests=False)
    victim = "kiosk"  # shared by two users: their persons and traits must survive

    erasure.erase(raw_db, b"a key", device=victim)
    build(project, database_url, full_refresh=True, tests=False)

    remaining = [d for d in documents if d["anonymous_id"] != victim]
    assert len(remaining) < len(documents)
    assert_equal_states(sql_state(database_url), reference_state(remaining), "after the erasure")
