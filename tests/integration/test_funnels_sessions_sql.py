"""Funnels over sessions and persons against the reference, on the real PostgreSQL.

`unit: session` (an attempt never leaves its session, as fct_sessions cuts them) and the
breakdowns by a session column and by a person trait as of the event's time: the facts and the
mart must equal retrolytics/semantics/funnels.py, after daily windowed runs, after late events
that merge two sessions or change a trait, and after a rerun of a window.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.loader import store_events
from retrolytics.warehouse import runner
from tests.support.funnels import (
    assert_same,
    compile_declarations,
    custom_definitions,
    iso,
    reference_events,
    reference_facts,
    reference_mart,
    sql_facts,
    sql_mart,
)
from tests.support.paths import REPO, copy_dbt_project
from tests.support.sessions import IPHONE, WINDOWS_CHROME
from tests.support.warehouse import fresh_database

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, tzinfo=UTC)
SESSION_FUNNELS = REPO / "tests" / "funnel_definitions_sessions" / "sessions.yml"


def day(n: int) -> str:
    return iso(START + timedelta(days=n))


@pytest.fixture(scope="module")
def definitions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The letters' event definitions and only the session and person funnels."""
    folder = tmp_path_factory.mktemp("session_funnels") / "definitions"
    shutil.copytree(REPO / "tests" / "funnel_definitions" / "events", folder / "events")
    (folder / "funnels").mkdir()
    shutil.copy(SESSION_FUNNELS, folder / "funnels" / "sessions.yml")
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, definitions: Path) -> Path:
    project = copy_dbt_project(tmp_path_factory.mktemp("session_funnels") / "dbt_project")
    compile_declarations(definitions, project)
    return project


def build(project: Path, database_url: str, **window: str | int) -> None:
    """``dbt build`` (no data tests) of the funnel mart and all it reads, seeds, sessions and
    persons among them."""
    runner.run_dbt(
        [
            "build",
            "--select",
            "+mart_funnel_conversion",
            "--exclude-resource-type",
            "test",
            "--quiet",
        ],
        database_url=database_url,
        project_dir=project,
        window=window,
    )


def document(
    device: str,
    moment: datetime,
    kind: str,
    *,
    path: str = "/",
    utm: str | None = None,
    agent: str | None = None,
    **extra,
) -> dict[str, Any]:
    """A custom event named `kind` (a, b, c, x), or a pageview / identify."""
    context: dict[str, Any] = {"utm": {"source": utm}} if utm else {}
    if agent:
        context["user_agent"] = agent
    doc: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": kind if kind in ("pageview", "identify") else "custom",
        "occurred_at": iso(moment),
        "anonymous_id": device,
        "page": {"url": f"https://shop.test{path}", "path": path},
        "context": context,
        **extra,
    }
    if doc["type"] == "custom":
        doc["name"] = kind
    return doc


def compare(conn: psycopg.Connection, declared, documents: list[dict], what: str) -> None:
    events = reference_events(documents, custom_definitions)
    assert_same(sql_facts(conn), reference_facts(declared, events), f"{what}: facts")
    assert_same(sql_mart(conn), reference_mart(declared, events), f"{what}: mart")


def merge_story() -> tuple[list[dict], list[dict]]:
    """(on time, late): two sessions that a late click merges, a plan that changes late, and a
    device identified a day after its attempt, longer ago than any conversion window."""
    t = START + timedelta(days=1, hours=10)
    on_time = [
        document("kiosk", START + timedelta(hours=2), "b"),
        document("kiosk", START + timedelta(hours=2, minutes=5), "c"),
        document("merge", t, "pageview", path="/landing", utm="ads"),
        document("merge", t + timedelta(minutes=1), "a"),
        document("merge", t + timedelta(minutes=2), "identify", user_id="u1",
                 properties={"plan": "free"}),
        # 38 minutes without events: a new session, whose b and c cannot follow the a above.
        document("merge", t + timedelta(minutes=40), "pageview", path="/second", utm="mail"),
        document("merge", t + timedelta(minutes=41), "b"),
        document("merge", t + timedelta(minutes=42), "c"),
        document("laptop", t + timedelta(hours=2), "a"),
        document("laptop", t + timedelta(hours=2, minutes=1), "identify", user_id="u1"),
        document("laptop", t + timedelta(hours=2, minutes=5), "c"),
    ]  # fmt: skip
    late = [
        # Arrives a day late: merges the two sessions of `merge` into one that converts.
        document("merge", t + timedelta(minutes=20), "x"),
        # The plan changes before the laptop's step c: the person breakdown at c says pro.
        document("other", t + timedelta(hours=2, minutes=3), "identify", user_id="u1",
                 properties={"plan": "pro"}),
        # The kiosk's day-0 attempt at s_plan_device is redone from the beginning, with its
        # person's plan: the next run's window starts on day 1.
        document("kiosk", t + timedelta(days=1), "identify", user_id="u2",
                 properties={"plan": "team"}),
    ]  # fmt: skip
    return on_time, late


def test_a_late_event_merging_two_sessions_rederives_their_attempts(
    raw_db: psycopg.Connection, database_url: str, project: Path, definitions: Path
) -> None:
    declared = compile_declarations(definitions, project)
    on_time, late = merge_story()
    store_events(raw_db, on_time)
    build(project, database_url, start=day(1), end=day(2))
    compare(raw_db, declared, on_time, "the day's run")
    sessions_before = {
        row[0]
        for row in raw_db.execute(
            "select unit_id from marts.fct_funnel_entries where funnel_name = 's_session'"
        )
    }
    assert len(sessions_before) == 2  # the a, and the b-c of the second session

    store_events(raw_db, late)
    # The next day's run picks the late events up by its lookback.
    build(project, database_url, start=day(2), end=day(3), lookback_hours=24)
    compare(raw_db, declared, on_time + late, "after the late events")
    merged = raw_db.execute(
        "select unit_id, outcome, breakdown_value from marts.fct_funnel_entries"
        " where funnel_name = 's_session' and anonymous_id = 'merge'"
    ).fetchall()
    first = next(d["event_id"] for d in on_time if d["anonymous_id"] == "merge")
    assert merged == [(f"session:{first}", "converted", "free")]

    before = sql_facts(raw_db), sql_mart(raw_db)
    build(project, database_url, start=day(1), end=day(2), lookback_hours=24)
    after = sql_facts(raw_db), sql_mart(raw_db)
    for old, new in zip(before, after, strict=True):
        for rows in (old, new):
            for row in rows.values():
                row.pop("derived_at", None)
        assert old == new


# -- generated streams -----------------------------------------------------------------------

GAPS = st.sampled_from(
    [
        timedelta(0),
        timedelta(minutes=1),
        timedelta(minutes=29, seconds=59, microseconds=999_999),
        timedelta(minutes=30),
        timedelta(minutes=45),
        timedelta(hours=5),
    ]
)
KINDS = st.sampled_from(["a", "a", "b", "b", "c", "c", "x", "pageview", "identify"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[dict], list[dict]]:
    """A few devices' events over at most two days: (stored first, arriving late)."""
    early, late = [], []
    for device in draw(st.lists(st.sampled_from("pqr"), min_size=1, max_size=3, unique=True)):
        moment = START + timedelta(hours=draw(st.integers(0, 30)))
        for gap, kind, is_late in draw(
            st.lists(st.tuples(GAPS, KINDS, st.booleans()), min_size=2, max_size=9)
        ):
            moment += gap
            extra: dict[str, Any] = {}
            if kind == "identify":
                extra["user_id"] = draw(st.sampled_from(["u1", "u2"]))
                extra["properties"] = {"plan": draw(st.sampled_from(["free", "pro", None]))}
            path = draw(st.sampled_from(["/", "/p1", "/p2"]))
            utm = draw(st.sampled_from([None, "ads", "mail"]))
            agent = draw(st.sampled_from([None, IPHONE, WINDOWS_CHROME]))
            doc = document(f"dev-{device}", moment, kind, path=path, utm=utm, agent=agent, **extra)
            (late if is_late else early).append(doc)
    return early, late


def days_of(documents: list[dict]) -> list[int]:
    return sorted({(datetime.fromisoformat(d["occurred_at"][:10]) - START.replace(tzinfo=None)).days
                   for d in documents})  # fmt: skip


# One example per run keeps this file near a minute (each example is two dbt builds); the
# merge story above is the fixed case.
@settings(
    max_examples=1,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams())
def test_generated_streams_windowed_equal_the_reference(
    project: Path, definitions: Path, stack, stream: tuple[list[dict], list[dict]]
) -> None:
    early, late = stream
    declared = compile_declarations(definitions, project)
    with fresh_database(stack.database_url) as url, psycopg.connect(url, autocommit=True) as conn:
        store_events(conn, early)
        build(project, url, start=day(0), end=day(max(days_of(early + late)) + 1))
        store_events(conn, late)
        if late:
            # The backfill of the partitions with late events, as one windowed run.
            late_days = days_of(late)
            build(project, url, start=day(late_days[0]), end=day(late_days[-1] + 1))
        compare(conn, declared, early + late, "windowed runs")
