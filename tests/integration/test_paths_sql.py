"""fct_paths and the path marts against the reference (retrolytics/semantics/paths.py), on the
real PostgreSQL, through daily windowed runs like Dagster's, late events and full rebuilds.

One database for the module: the edge cases are built in two windowed runs (the second after
late events), then generated streams add devices and persons of their own to it, each example in
two windowed runs, and every state is compared with the reference over all events stored.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demo.paths import top_path_lines
from ingestion.loader import store_events
from retrolytics.language.paths import PathDeclaration
from tests.support.funnels import assert_same, iso
from tests.support.path_analyses import build, prepare, reference_state, sql_state
from tests.support.warehouse import fresh_database

pytestmark = pytest.mark.integration

DAY0 = datetime(2026, 11, 20, tzinfo=UTC)


def day(n: int) -> str:
    return iso(DAY0 + timedelta(days=n))


@dataclass
class Warehouse:
    """The module's database, its declarations and every event stored in it."""

    project: Path
    url: str
    paths: list[PathDeclaration]
    known: list[str]
    documents: list[dict] = field(default_factory=list)
    edge_cases: tuple[list[dict], list[dict]] = ([], [])
    states: dict[str, dict] = field(default_factory=dict)

    def store(self, documents: list[dict]) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            store_events(conn, documents)
        self.documents += documents

    def build(self, *, full_refresh: bool = False, **window: Any) -> None:
        """A run over the declarations built already: the tables only, unless a rebuild
        (which drops the tables, and with them the views that read them)."""
        build(
            self.project,
            self.url,
            full_refresh=full_refresh,
            tables_only=not full_refresh,
            **window,
        )

    def assert_reference(self, what: str) -> dict:
        """The tables equal the reference over every stored event; returns their state."""
        actual = sql_state(self.url)
        expected = reference_state(self.paths, self.known, self.documents)
        for table in expected:
            assert_same(actual[table], expected[table], f"{what}: {table}")
        return actual


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, stack) -> Iterator[Warehouse]:
    """The edge cases built as Dagster would: a windowed first run, then, after the late
    events, today's run with a two-day lookback; the state after each run is kept."""
    project, paths, known = prepare(tmp_path_factory.mktemp("paths"))
    early, late = edge_cases()
    with fresh_database(stack.database_url) as url:
        house = Warehouse(project, url, paths, known, edge_cases=(early, late))
        house.store(early)
        build(project, url, start=day(-1), end=day(2), lookback_hours=0)
        house.states["first run"] = sql_state(url)
        house.store(late)
        # The window starts at day 0, after the oldest segments, which the plan must keep or
        # redo as their units need.
        house.build(start=day(2), end=day(3), lookback_hours=48)
        house.states["late events"] = sql_state(url)
        yield house


def event(device: str, moment: datetime, what: str, **extra: Any) -> dict:
    """A custom event named ``what`` (a, b, c, d, x), or a pageview of ``/<what>`` when it
    starts with a slash, or an identify / click."""
    document: dict[str, Any] = {
        "event_id": str(extra.pop("event_id", uuid.uuid4())),
        "occurred_at": iso(moment),
        "anonymous_id": device,
        "page": {"url": "https://shop.test/", "path": "/"},
        **extra,
    }
    if what.startswith("/"):
        document.update(type="pageview", page={"url": f"https://shop.test{what}", "path": what})
    elif what in ("identify", "click"):
        document["type"] = what
        if what == "click":
            document["target"] = {"elements": [{"tag": "button"}], "text": "Go"}
    else:
        document.update(type="custom", name=what)
    return document


def edge_cases() -> tuple[list[dict], list[dict]]:
    """(stored first, arriving late)."""
    at = DAY0.replace
    one = timedelta(days=1)
    arrival = {"received_at": iso(DAY0 + 2 * one + timedelta(hours=1))}
    # Two events of one instant: the lower event_id comes first.
    low, high = uuid.UUID(int=1, version=4), uuid.UUID(int=2**120, version=4)
    early = [
        # A path a -> c that a late b lands in the middle of.
        event("mid", at(hour=10), "a"),
        event("mid", at(hour=10, minute=10), "c"),
        # Two segments (40 minutes apart) that a late event joins, after one the day before
        # that the windowed run keeps as it is.
        event("join", at(hour=10) - one, "a"),
        event("join", at(hour=10, minute=5) - one, "b"),
        event("join", at(hour=10) + one, "a"),
        event("join", at(hour=10, minute=20) + one, "b"),
        event("join", at(hour=11) + one, "c"),
        # Exactly 30 minutes: a new segment.
        event("exact", at(hour=9), "a"),
        event("exact", at(hour=9, minute=30), "c"),
        # Ties, repeats and exclusions.
        event("tie", at(hour=12), "c", event_id=high),
        event("tie", at(hour=12), "a", event_id=low),
        event("tie", at(hour=12, minute=1), "b"),
        event("tie", at(hour=12, minute=2), "b"),
        event("tie", at(hour=12, minute=3), "x"),
        event("tie", at(hour=12, minute=4), "c"),
        # Pages around d and b, sessions, a click excluded from the page paths.
        event("pages", at(hour=14), "/home"),
        event("pages", at(hour=14, minute=1), "d"),
        event("pages", at(hour=14, minute=2), "/p/1"),
        event("pages", at(hour=14, minute=2), "click"),
        event("pages", at(hour=14, minute=3), "/p/1"),
        event("pages", at(hour=14, minute=4), "b"),
        event("pages", at(hour=14, minute=40), "/cart"),
        # Across midnight, the partitions' edge.
        event("night", at(hour=23, minute=50), "b"),
        event("night", at(hour=23, minute=55) + timedelta(minutes=10), "c"),
        # A device identified a day later (late): its paths move to the person, also the one
        # before the run's window.
        event("phone", at(hour=8) - one, "a"),
        event("phone", at(hour=8), "b"),
        event("phone", at(hour=8, minute=5), "c"),
        event("laptop", at(hour=8) + one, "identify", user_id="u1"),
        event("laptop", at(hour=8, minute=1) + one, "a"),
        event("laptop", at(hour=8, minute=2) + one, "c"),
        # A device identified late as a person whose segment its first event continues (4
        # minutes after the person's last event, gap 10): the person is redone from that
        # segment's start, and a -> b -> c is one path.
        event("tablet", at(hour=9, minute=59) - one, "identify", user_id="u2"),
        event("tablet", at(hour=10) - one, "a"),
        event("tablet", at(hour=10, minute=5) - one, "b"),
        event("watch", at(hour=10, minute=9) - one, "c"),
    ]
    late = [
        event("mid", at(hour=10, minute=5), "b", **arrival),
        event("join", at(hour=10, minute=40) + one, "d", **arrival),
        event("phone", at(hour=9) + 2 * one, "identify", user_id="u1", **arrival),
        event("watch", at(hour=9) + 2 * one, "identify", user_id="u2", **arrival),
        event("night", at(hour=23, minute=58), "a", **arrival),
    ]
    return early, late


def test_a_windowed_first_run_equals_the_reference(warehouse: Warehouse) -> None:
    early, _ = warehouse.edge_cases
    expected = reference_state(warehouse.paths, warehouse.known, early)
    for table, rows in expected.items():
        assert_same(warehouse.states["first run"][table], rows, f"the first run: {table}")


def test_late_events_in_a_windowed_run_equal_the_reference(warehouse: Warehouse) -> None:
    early, late = warehouse.edge_cases
    expected = reference_state(warehouse.paths, warehouse.known, early + late)
    state = warehouse.states["late events"]
    for table, rows in expected.items():
        assert_same(state[table], rows, f"after the late events: {table}")
    segments = state["fct_paths"]
    # The late b is in the middle of mid's path (an anchor repeat, collapsed); the late d
    # joined join's two segments.
    mid = segments[("after_a", "mid", DAY0.replace(hour=10), "mid")]
    assert (mid["event_count"], mid["steps"]) == (3, ("did_a_or_b", "did_c"))
    assert sorted(k[2] for k in segments if k[:2] == ("after_a", "join")) == [
        DAY0.replace(hour=10) - timedelta(days=1),
        DAY0.replace(hour=10) + timedelta(days=1),
    ]
    # The phone's paths belong to its person now, beside the laptop's.
    persons = {k[1] for k in segments if k[0] == "before_c"}
    assert "user:u1" in persons and "device:phone" not in persons
    # The watch's c, days before the window, joined the tablet's segment of the same person.
    joined = [v for k, v in segments.items() if k[:2] == ("before_c", "user:u2")]
    assert [(v["event_count"], v["steps"]) for v in joined] == [
        (3, ("did_a_or_b", "did_b", "did_c"))
    ]


def test_the_demo_prints_a_declarations_top_paths_from_the_mart(warehouse: Warehouse) -> None:
    with psycopg.connect(warehouse.url) as reader:
        lines = top_path_lines(reader, "after_a", limit=3)
    top = sorted(
        (v for k, v in sql_state(warehouse.url)["mart_path_top"].items() if k[0] == "after_a"),
        key=lambda row: row["rank"],
    )[:3]
    assert top, "the edge cases have after_a paths"
    assert [line.split() for line in lines[1:]] == [
        [f"{row['rank']}.", str(row["paths"]), "paths", str(row["units"]), "units",
         " → ".join(row["steps"])][:5] + " → ".join(row["steps"]).split()
        for row in top
    ]  # fmt: skip


def test_a_rerun_changes_nothing_and_a_rebuild_equals_the_reference(
    warehouse: Warehouse,
) -> None:
    before = sql_state(warehouse.url)
    warehouse.build(start=day(1), end=day(2), lookback_hours=24)
    assert sql_state(warehouse.url) == before
    warehouse.build(full_refresh=True)
    assert warehouse.assert_reference("a rebuild from scratch") == before


# -- generated streams -----------------------------------------------------------------------

GAPS = st.sampled_from(
    [timedelta(0), timedelta(minutes=1), timedelta(minutes=9, seconds=59), timedelta(minutes=10),
     timedelta(minutes=29), timedelta(minutes=30), timedelta(hours=5)]
)  # fmt: skip
WHAT = st.sampled_from(["a", "b", "c", "d", "x", "/p/1", "/p/2", "click", "identify"])


EXAMPLES = itertools.count()


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[dict], list[dict]]:
    """A few devices' events over about two days: (stored first, arriving late). Each example
    has devices and users of its own, beside those already in the module's database."""
    example = f"g{next(EXAMPLES)}"
    early, late = [], []
    for device in draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True)):
        moment = DAY0 + timedelta(hours=draw(st.integers(0, 30)))
        for gap, what, is_late in draw(
            st.lists(st.tuples(GAPS, WHAT, st.booleans()), min_size=2, max_size=9)
        ):
            moment += gap
            users = [f"{example}-u1", f"{example}-u2"]
            extra = {"user_id": draw(st.sampled_from(users))} if what == "identify" else {}
            # Late events fall inside the second run's window (from day 1): the plan decides
            # what of the stored day 0 it redoes.
            is_late = is_late and moment >= DAY0 + timedelta(days=1)
            document = event(f"{example}-dev-{device}", moment, what, **extra)
            (late if is_late else early).append(document)
    return early, late


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams())
def test_generated_streams_in_windowed_runs_equal_the_reference(
    warehouse: Warehouse, stream: tuple[list[dict], list[dict]]
) -> None:
    early, late = stream
    # The first window holds every early event (the edge cases' days too, so their units are
    # planned again); the second only the late ones' days.
    warehouse.store(early)
    warehouse.build(start=day(-1), end=day(4), lookback_hours=0)
    warehouse.store(late)
    warehouse.build(start=day(1), end=day(4), lookback_hours=0)
    warehouse.assert_reference("a windowed run after late events")
