"""defined_events after any sequence of definition edits equals a full rebuild, row for row.

Each condition reaches its events through one route (a literal of its selector over the trigram
index, an exact path, a custom event's name, its types, or every event: see routed_matches in
dbt_project/macros/condition_matches.sql); a window run joins by hashing, its selector conditions
through the hierarchies int_selector_matches found matching. Hypothesis draws sequences of adds,
edits and removals over conditions of every route, each followed by a windowed run (or one over
all history), and after every run compares the table with what each current definition's
rendered predicate selects from all history; at the end, with a `--full-refresh` build, column
for column.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ingestion import loader
from retrolytics.language import events
from retrolytics.language.check import load_catalog
from tests.integration.test_dbt_defined_events import snapshot
from tests.support.factories import BASE_TIME, click_event, iso
from tests.support.paths import REPO
from tests.support.warehouse import (
    DEFINED_EVENTS,
    WITHOUT_TESTS,
    Warehouse,
    copy_project,
    create_database,
    drop_database,
    load_traffic,
)

pytestmark = pytest.mark.integration

# An id whose literal needs every LIKE escape: the hierarchy writes it `#promo\.banner_50%`.
TRICKY_ID = "promo.banner_50%"

# Matches an analyst might write, one or more per route.
MATCHES: list[list[dict[str, Any]]] = [
    [{"type": "click", "selector": "div.product-card a.product-link"}],  # selector literal
    [{"type": "click", "selector": "#add-to-cart", "text": {"contains": "cart"}}],
    [{"selector": "form#cart button.checkout"}],  # no type: the literal still routes it
    [{"type": "click", "selector": r"div#promo\.banner_50\% a"}],  # LIKE escapes
    [{"type": "click", "selector": "a.account-link, a.login-link"}],  # a list: no literal
    [{"type": "pageview", "path": "/cart"}],  # exact path
    [{"path": "/products"}],  # exact path, any type
    [{"type": "pageview", "path": {"like": "/product/1*"}}],  # by type
    [{"type": "custom", "name": "purchase_completed", "properties": {"category": "shoes"}}],
    [{"name": "search_performed"}],  # custom name, any type
    [{"type": ["submit", "change"]}],  # several types
    [{"type": "identify"}],
    [{"url": {"contains": "utm_campaign="}}],  # nothing to route by: every event
    [  # an OR over routes
        {"type": "pageview", "path": "/checkout"},
        {"type": "click", "selector": "#place-order"},
        {"type": "custom", "name": "signup_completed"},
    ],
]
# Windows a daily or hourly partition run passes (None: all history).
WINDOWS: list[dict[str, Any] | None] = [
    {"start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z", "lookback_hours": 24},
    {"start": "2026-11-20T06:00:00Z", "end": "2026-11-20T07:00:00Z", "lookback_hours": 0},
    {"start": "2026-11-18T00:00:00Z", "end": "2026-11-19T00:00:00Z", "lookback_hours": 2},
    None,
]

_names = st.sampled_from([f"edited_{i}" for i in range(4)])
_matches = st.integers(0, len(MATCHES) - 1)
_edit = st.one_of(
    st.tuples(st.just("put"), _names, _matches),  # add, or replace the match of
    st.tuples(st.just("remove"), _names, st.just(0)),
    st.tuples(st.just("remove_shipped"), st.integers(0, 30), st.just(0)),
)
_step = st.tuples(st.lists(_edit, min_size=1, max_size=3), st.integers(0, len(WINDOWS) - 1))


def tricky_clicks() -> list[dict]:
    """Clicks inside a div whose id needs escaping, on each day; and one inside a look-alike."""
    clicks = []
    for days, element_id in ((0, TRICKY_ID), (1, TRICKY_ID), (2, TRICKY_ID), (0, "promoXbanner")):
        at = BASE_TIME - timedelta(days=days)
        event = click_event(occurred_at=iso(at), received_at=iso(at + timedelta(seconds=1)))
        event["target"]["elements"] = [
            {"tag": "a", "nth_child": 1, "attributes": {"href": "/sale"}},
            {"tag": "div", "id": element_id, "nth_child": 1},
            {"tag": "body", "nth_child": 2},
            {"tag": "html", "nth_child": 1},
        ]
        clicks.append(event)
    return clicks


@pytest.fixture(scope="module")
def edited_warehouse(stack, tmp_path_factory) -> Any:
    url = create_database(stack.database_url)
    try:
        project, definitions = copy_project(tmp_path_factory.mktemp("edits"))
        for analyses in ("funnels", "retention", "paths"):  # their steps name definitions
            shutil.rmtree(definitions / analyses, ignore_errors=True)
        load_traffic(url)
        with psycopg.connect(url, autocommit=True) as conn:
            assert loader.store_events(conn, tricky_clicks()) == 4
        yield Warehouse(url, project, definitions)
    finally:
        drop_database(stack.database_url, url)


def shipped_items(definitions: Path) -> list[dict]:
    items: list[dict] = []
    for path in sorted((definitions / "events").glob("*.yml")):
        items.extend(yaml.safe_load(path.read_text())["events"])
    return items


def write_items(warehouse: Warehouse, items: dict[str, dict]) -> None:
    folder = warehouse.definitions_dir / "events"
    for path in folder.glob("*.yml"):
        path.unlink()
    document = {"events": list(items.values())}
    (folder / "all.yml").write_text(yaml.safe_dump(document, sort_keys=False))


def apply(items: dict[str, dict], edit: tuple[str, Any, int]) -> None:
    action, name, match = edit
    if action == "put":
        items[name] = {
            "name": name,
            "description": "Drawn by the test.",
            "owner": "tests",
            "match": MATCHES[match],
        }
    elif len(items) > 1:  # an empty folder is a declaration error, not an edit
        items.pop(name if action == "remove" else sorted(items)[name % len(items)], None)


def expected_rows(warehouse: Warehouse) -> set[tuple[str, str, uuid.UUID]]:
    """(definition, content hash, event) for every event each current definition's rendered
    predicate selects over all history: what a full rebuild holds."""
    expected = set()
    for definition in load_catalog(warehouse.definitions_dir).event_definitions:
        compiled = events.compile_definition(definition)
        predicate = events.definition_predicate(compiled)
        rows = warehouse.query(f"select event_id from staging.stg_events where {predicate}")
        expected |= {(definition.name, compiled[0].content_hash, event_id) for (event_id,) in rows}
    return expected


def held_rows(warehouse: Warehouse) -> set[tuple[str, str, uuid.UUID]]:
    rows = warehouse.query(
        "select definition_name, content_hash, event_id from marts.defined_events"
    )
    return set(rows)


def full_build(warehouse: Warehouse, *extra: str) -> None:
    warehouse.compile()
    warehouse.dbt("build", *DEFINED_EVENTS, *WITHOUT_TESTS, *extra)


# Each example runs dbt a few times: no shrinking (it would take many minutes); a failure
# prints the sequence of edits and the window.
@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(_step, min_size=1, max_size=3))
def test_any_sequence_of_edits_leaves_what_a_full_rebuild_builds(edited_warehouse, steps):
    warehouse = edited_warehouse
    items = {item["name"]: item for item in shipped_items(REPO / "definitions")}
    write_items(warehouse, items)
    full_build(warehouse, "--full-refresh")
    for edits, window in steps:
        for edit in edits:
            apply(items, edit)
        write_items(warehouse, items)
        warehouse.derive(WINDOWS[window])
        assert held_rows(warehouse) == expected_rows(warehouse), (edits, WINDOWS[window])
    incremental = snapshot(warehouse)
    full_build(warehouse, "--full-refresh")
    assert snapshot(warehouse) == incremental


def test_an_escaped_selector_literal_finds_its_events(edited_warehouse):
    """The literal `#promo\\.banner_50%` reaches LIKE escaped: three clicks, not the look-alike."""
    warehouse = edited_warehouse
    items = {"promo": {"name": "promo", "description": "d", "owner": "o", "match": MATCHES[3]}}
    write_items(warehouse, items)
    full_build(warehouse, "--full-refresh")
    assert len(warehouse.defined("promo")) == 3
    assert held_rows(warehouse) == expected_rows(warehouse)
