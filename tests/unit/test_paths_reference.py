"""The path reference (retrolytics/semantics/paths.py) on small hand-made streams."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from retrolytics.language.funnels import EventRef
from retrolytics.language.paths import PathDeclaration
from retrolytics.semantics import paths
from retrolytics.semantics.funnels import Event

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
BASE = PathDeclaration(
    name="p", description="d", owner="o", anchor=EventRef(definition="a"), anchor_at="start",
    steps=3, definitions=("a", "b", "c", "x"),
)  # fmt: skip


def ev(minute: float, *labels: str, device: str = "d1", page: str | None = None, **kw) -> Event:
    kind = "pageview" if page else kw.pop("type", "custom")
    return Event(
        event_id=kw.pop("event_id", uuid.uuid4()),
        anonymous_id=device,
        occurred_at=T0 + timedelta(minutes=minute),
        type=kind,
        definitions=frozenset(labels),
        fields={"page_path": page},
        **kw,
    )


def walked(declaration: PathDeclaration, events: list[Event]) -> list[tuple[str, ...]]:
    rows = paths.segments(declaration, events, ["a", "b", "c", "x", "z"])
    return [r.steps for r in sorted(rows, key=lambda r: (r.unit_id, r.segment_start))]


def test_a_gap_of_exactly_the_limit_starts_a_new_segment() -> None:
    events = [ev(0, "a"), ev(29.99, "b"), ev(59.99, "a"), ev(60, "c")]
    assert walked(BASE, events) == [("a", "b"), ("a", "c")]
    assert walked(replace(BASE, gap_minutes=31), events) == [("a", "b", "a")]


def test_repeats_collapse_or_not_and_one_path_per_segment() -> None:
    events = [ev(0, "b"), ev(1, "a"), ev(2, "a"), ev(3, "b"), ev(4, "b"), ev(5, "a"), ev(6, "c")]
    assert walked(BASE, events) == [("a", "b", "a")]
    assert walked(replace(BASE, collapse_repeats=False), events) == [("a", "a", "b")]
    assert walked(replace(BASE, steps=10), events) == [("a", "b", "a", "c")]


def test_an_end_anchor_takes_the_steps_before_its_first_occurrence() -> None:
    events = [ev(0, "a"), ev(1, "b"), ev(2, "x"), ev(3, "c"), ev(4, "b"), ev(5, "c")]
    end_c = replace(BASE, anchor=EventRef(definition="c"), anchor_at="end")
    assert walked(end_c, events) == [("b", "x", "c")]
    assert walked(replace(end_c, exclude=(EventRef(definition="x"),)), events) == [("a", "b", "c")]
    # A segment without the anchor has no path, but is a segment all the same.
    assert walked(end_c, [ev(0, "a"), ev(1, "b")]) == [()]


def test_precedence_ties_and_pages() -> None:
    low, high = uuid.UUID(int=1), uuid.UUID(int=2)
    events = [ev(1, "c", event_id=high), ev(1, "b", event_id=low), ev(0, "a", "b"), ev(2, "z")]
    # a is the anchor whatever else matches; at one instant the lower event_id comes first.
    assert walked(BASE, events) == [("a", "b", "c")]
    # Without a list every definition is a step, alphabetical: "b" before "x" for a "b"+"x" event.
    every = replace(BASE, definitions=None, steps=5)
    assert walked(every, [ev(0, "a"), ev(1, "x", "b"), ev(2, "z")]) == [("a", "b", "z")]
    both = replace(BASE, step_kind="both", definitions=("b",), steps=5)
    pages = [ev(0, "a"), ev(1, page="/p"), ev(2, "b", page="/q"), ev(3, page=None, type="click")]
    assert walked(both, pages) == [("a", "/p", "b")]
    assert walked(replace(both, step_kind="pageviews", definitions=None), pages) == [
        ("a", "/p", "/q")
    ]


def test_users_stitch_devices_and_sessions_split_them() -> None:
    events = [
        ev(0, "a", device="phone"),
        ev(5, "b", device="laptop"),
        ev(6, device="laptop", type="identify", user_id="u1"),
        ev(7, "c", device="phone"),
        ev(8, device="phone", type="identify", user_id="u1"),
    ]
    by_user = replace(BASE, unit="user")
    rows = paths.segments(by_user, events, [])
    assert [(r.unit_id, r.steps) for r in rows] == [("user:u1", ("a", "b", "c"))]
    by_session = replace(by_user, gap_minutes=None)
    rows = sorted(paths.segments(by_session, events, []), key=lambda r: r.anonymous_id)
    assert [(r.anonymous_id, r.steps) for r in rows] == [("laptop", ()), ("phone", ("a", "c"))]


def test_edges_and_top_paths_count_paths_and_units() -> None:
    events = [ev(0, "a"), ev(2, "b"), ev(100, "a"), ev(101, "b"), ev(0, "a", device="d2"),
              ev(4, "b", device="d2"), ev(5, "c", device="d2")]  # fmt: skip
    rows = paths.segments(BASE, events, [])
    edges = {(e.step_index, e.source, e.target): e for e in paths.edges(BASE, rows)}
    assert (edges[(1, "a", "b")].paths, edges[(1, "a", "b")].units) == (3, 2)
    assert edges[(1, "a", "b")].median_seconds_between == 120.0
    assert edges[(2, "b", "c")].paths == 1
    top = paths.top_paths(replace(BASE, top_paths=1), rows)
    assert [(t.rank, t.steps, t.paths, t.units) for t in top] == [(1, ("a", "b"), 2, 1)]
