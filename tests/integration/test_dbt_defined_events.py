"""defined_events on the real PostgreSQL: built by dbt from generated shop traffic.

The ``Warehouse`` (a fresh database, a copy of the dbt project and of the definitions) lives in
``tests/support/warehouse.py``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from ingestion import loader
from retrolytics.language import events
from retrolytics.language.check import load_catalog
from tests.support.warehouse import (
    DEFINED_EVENTS,
    Warehouse,
    create_database,
    drop_database,
    new_warehouse,
)

pytestmark = pytest.mark.integration

WINDOW = {"start": "2026-11-20T00:00:00Z", "end": "2026-11-20T12:00:00Z"}
WINDOW_START = datetime(2026, 11, 20, tzinfo=UTC)
WINDOW_END = datetime(2026, 11, 20, 12, tzinfo=UTC)
# A windowed run of defined_events: the matches it joins, built first, then the table.
WINDOWED_DEFINED_EVENTS = ("int_selector_matches", "int_signature_matches", "defined_events")
BUSINESS_COLUMNS = (
    "definition_name, content_hash, event_id, anonymous_id, user_id, session_id, occurred_at, "
    "received_at, type, name, page_url, page_path, page_title, referrer, target_text, "
    "target_href, properties, utm_source, utm_medium, utm_campaign"
)


@pytest.fixture(scope="module")
def built(stack, tmp_path_factory) -> Iterator[tuple[Warehouse, Any]]:
    """One warehouse, built once with `dbt build` (models, data tests, unit tests)."""
    url = create_database(stack.database_url)
    try:
        warehouse = new_warehouse(url, tmp_path_factory.mktemp("built"))
        warehouse.compile()
        result = warehouse.dbt("build", *DEFINED_EVENTS, check=False)
        yield warehouse, result
    finally:
        drop_database(stack.database_url, url)


@pytest.fixture
def warehouse(database_url, tmp_path) -> Warehouse:
    """A warehouse of its own, for tests that change definitions or data."""
    return new_warehouse(database_url, tmp_path)


# -- one build, read only -------------------------------------------------------------------


def test_build_passes_its_data_and_unit_tests(built):
    _, result = built
    statuses = {r.node.unique_id: str(r.status) for r in result.result.results}
    failed = {
        node: status for node, status in statuses.items() if status not in ("pass", "success")
    }
    assert result.success, failed
    assert failed == {}
    unit_tests = [
        node for node in statuses if node.startswith("unit_test.retrolytics.defined_events")
    ]
    kinds = {node.rsplit("defined_events_match_", 1)[1] for node in unit_tests}
    assert kinds == {
        "event_type",
        "event_name",
        "selector",
        "text",
        "href",
        "path",
        "url",
        "properties",
        "or_of_conditions",
    }
    data_tests = [node for node in statuses if node.startswith("test.retrolytics.")]
    assert any("unique_defined_events" in node for node in data_tests)
    assert any("relationships_defined_events" in node for node in data_tests)
    assert any("accepted_values_stg_events_type" in node for node in data_tests)


def test_tables_land_in_their_schemas(built):
    warehouse, _ = built
    relations = set(
        warehouse.query(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('staging', 'intermediate', 'marts')"
        )
    )
    assert {
        ("staging", "stg_events"),
        ("staging", "stg_event_definitions"),
        ("staging", "event_definitions"),
        ("intermediate", "int_event_definition_versions"),
        ("marts", "defined_events"),
        ("marts", "defined_events__versions"),
    } <= relations
    primary_key = warehouse.query(
        "select pg_get_constraintdef(oid) from pg_constraint "
        "where conrelid = 'marts.defined_events'::regclass and contype = 'p'"
    )
    assert primary_key == [("PRIMARY KEY (definition_name, occurred_at, anonymous_id, event_id)",)]


def test_every_shipped_definition_finds_its_events(built):
    warehouse, _ = built
    counts = dict(
        warehouse.query("select definition_name, count(*) from marts.defined_events group by 1")
    )
    shipped = {d.name for d in load_catalog(warehouse.definitions_dir).event_definitions}
    rare = {"searched_without_results", "removed_from_cart", "purchased_shoes"}
    missing = {name for name in shipped - rare if counts.get(name, 0) == 0}
    assert missing == set()
    assert set(counts) <= shipped
    ledger = dict(warehouse.query("select name, content_hash from marts.defined_events__versions"))
    assert set(ledger) == shipped
    assert ledger["added_to_cart"] == warehouse.compiled("added_to_cart")[0].content_hash


def test_added_to_cart_counts_clicks_on_the_button_and_on_its_label(built):
    warehouse, _ = built
    targets = dict(
        warehouse.query(
            "select e.target_tag, count(*) from marts.defined_events d "
            "join staging.stg_events e using (anonymous_id, event_id, occurred_at) "
            "where d.definition_name = 'added_to_cart' group by 1"
        )
    )
    assert set(targets) == {"button", "span"}  # the span.label inside button#add-to-cart


def test_show_predicate_selects_what_the_model_selected(built):
    warehouse, _ = built
    for definition in load_catalog(warehouse.definitions_dir).event_definitions:
        shown = events.describe_compiled(events.compile_definition(definition))
        rows = warehouse.query(f"select event_id from staging.stg_events where {shown}")
        expected = {event_id for (event_id,) in rows}
        got = {event_id for _, event_id in warehouse.defined(definition.name)}
        assert got == expected, definition.name


def test_selector_prefilter_never_hides_a_match(built):
    warehouse, _ = built
    rows = warehouse.query(
        "select c.definition_name, "
        "  count(*) filter (where e.hierarchy ~ c.selector_regex), "
        "  count(*) filter (where strpos(e.hierarchy, c.selector_literal) > 0 "
        "                   and e.hierarchy ~ c.selector_regex) "
        "from staging.stg_event_definitions c cross join staging.stg_events e "
        "where c.selector_literal is not null group by 1"
    )
    assert rows and all(with_regex == with_both for _, with_regex, with_both in rows)
    assert any(with_regex > 0 for _, with_regex, _ in rows)


# -- runs over time -------------------------------------------------------------------------


def snapshot(warehouse: Warehouse) -> list[tuple]:
    return warehouse.query(f"select {BUSINESS_COLUMNS} from marts.defined_events order by 1, 3")


def markers(warehouse: Warehouse) -> dict[tuple[str, uuid.UUID], tuple[str, str, datetime]]:
    """Per row: the transaction that wrote it (xmin), the dbt invocation, the event time."""
    rows = warehouse.query(
        "select definition_name, event_id, xmin::text, invocation_id, occurred_at "
        "from marts.defined_events"
    )
    return {(name, event): (xmin, run, at) for name, event, xmin, run, at in rows}


def inside_window(at: datetime, lookback_hours: float = 0) -> bool:
    return WINDOW_START - timedelta(hours=lookback_hours) <= at < WINDOW_END


def test_rerunning_a_window_changes_nothing(warehouse):
    warehouse.derive()
    full = snapshot(warehouse)
    before = markers(warehouse)
    warehouse.derive(dict(WINDOW, lookback_hours=2))
    assert snapshot(warehouse) == full
    warehouse.derive(dict(WINDOW, lookback_hours=2))
    assert snapshot(warehouse) == full
    # Not even rewritten: a row already present is kept (incremental_strategy insert_missing).
    assert markers(warehouse) == before
    warehouse.derive()  # all history again, the same result
    assert snapshot(warehouse) == full


def test_a_window_run_writes_back_the_rows_its_window_lacks(warehouse):
    warehouse.derive()
    full = snapshot(warehouse)
    before = markers(warehouse)
    lost = [key for key, (_, _, at) in before.items() if inside_window(at)]
    assert lost
    with psycopg.connect(warehouse.database_url) as conn:
        conn.execute(
            "delete from marts.defined_events where occurred_at >= %s and occurred_at < %s",
            (WINDOW_START, WINDOW_END),
        )
    warehouse.derive(WINDOW)
    assert snapshot(warehouse) == full
    after = markers(warehouse)
    assert all(after[key][1] != before[key][1] for key in lost)  # written by this run
    kept = [key for key in before if key not in lost]
    assert kept and all(after[key] == before[key] for key in kept)  # the rest untouched


def test_changing_one_definition_rederives_only_it_over_all_history(warehouse):
    warehouse.derive()
    before = markers(warehouse)
    old_hash = warehouse.compiled("viewed_product")[0].content_hash
    warehouse.edit_definitions("browse.yml", "like: /product/*\n", "like: /product/11*\n")
    new_hash = warehouse.compiled("viewed_product")[0].content_hash
    assert new_hash != old_hash

    warehouse.derive(WINDOW)

    after = markers(warehouse)
    (first_run,) = {run for _, run, _ in before.values()}
    changed = {key: value for key, value in after.items() if key[0] == "viewed_product"}
    expected = warehouse.events_matching("viewed_product")
    assert set(changed) == expected and expected
    assert all(run != first_run for _, run, _ in changed.values())
    assert any(not inside_window(at) for _, _, at in changed.values())  # all history, not W
    assert all(
        (path or "").startswith("/product/11")
        for (path,) in warehouse.query(
            "select page_path from marts.defined_events where definition_name = 'viewed_product'"
        )
    )
    assert warehouse.query(
        "select distinct content_hash from marts.defined_events "
        "where definition_name = 'viewed_product'"
    ) == [(new_hash,)]
    untouched = 0
    for key, (xmin, run, at) in after.items():
        if key[0] == "viewed_product":
            continue
        assert key in before
        if not inside_window(at):
            assert (xmin, run) == before[key][:2]
            untouched += 1
    assert untouched > 100
    assert {k for k in before if k[0] != "viewed_product"} == {
        k for k in after if k[0] != "viewed_product"
    }


def test_removed_definitions_disappear_and_new_ones_cover_all_history(warehouse):
    warehouse.derive()
    assert warehouse.defined("clicked_shop_now")
    path = warehouse.definition_file("browse.yml")
    text = path.read_text()
    start = text.index("  - name: clicked_shop_now")
    end = text.index("  - name: landed_from_campaign")
    path.write_text(text[:start] + text[end:])
    warehouse.definition_file("account_pages.yml").write_text(
        "events:\n"
        "  - name: viewed_login_page\n"
        "    description: The login page was shown.\n"
        "    owner: growth\n"
        "    match:\n"
        "      - type: pageview\n"
        "        path: {starts_with: /login}\n"
    )

    warehouse.derive(WINDOW)

    assert warehouse.defined("clicked_shop_now") == set()
    ledger = {
        name for (name,) in warehouse.query("select name from marts.defined_events__versions")
    }
    assert "clicked_shop_now" not in ledger and "viewed_login_page" in ledger
    added = warehouse.defined("viewed_login_page")
    assert added == warehouse.events_matching("viewed_login_page") and added
    times = [
        at
        for (at,) in warehouse.query(
            "select occurred_at from marts.defined_events "
            "where definition_name = 'viewed_login_page'"
        )
    ]
    assert min(times) < WINDOW_START


def raw_partition_scans(warehouse: Warehouse, window: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(partitions read, partitions in the plan) of defined_events' SELECT for this window."""
    matches = WINDOWED_DEFINED_EVENTS[:-1]  # this window's, as a windowed run builds them first
    warehouse.dbt("run", "--select", *matches, window=window)
    warehouse.dbt("compile", "--select", *WINDOWED_DEFINED_EVENTS, window=window)
    [compiled] = (warehouse.project_dir / "target" / "compiled").rglob("defined_events.sql")
    with psycopg.connect(warehouse.database_url) as conn:
        plan = "\n".join(
            line
            for (line,) in conn.execute(
                f"explain (analyze, costs off, timing off, summary off) {compiled.read_text()}"
            )
        )
    scan = r" on (events_\d{8})(?: \w+)? \((actual rows|never executed)"
    found = re.findall(scan, plan)
    return {name for name, how in found if how == "actual rows"}, {name for name, _ in found}


def test_a_window_run_reads_history_only_for_a_changed_definition(warehouse):
    warehouse.derive()
    read, planned = raw_partition_scans(warehouse, WINDOW)
    assert read == {"events_20261120"}  # the window's day only
    assert len(planned) > 1

    warehouse.edit_definitions("browse.yml", "like: /product/*\n", "like: /product/11*\n")
    warehouse.compile()
    warehouse.dbt("seed", "--select", "event_definitions")
    read, planned = raw_partition_scans(warehouse, WINDOW)
    assert read == planned  # the changed definition is derived over every day


def test_a_late_event_is_picked_up_by_the_lookback(warehouse):
    warehouse.derive()
    late = {
        "event_id": str(uuid.uuid4()),
        "type": "custom",
        "name": "purchase_completed",
        "occurred_at": "2026-11-19T23:00:00Z",  # an hour before the window ...
        "received_at": "2026-11-20T03:00:00Z",  # ... but it arrives inside it
        "anonymous_id": "late-device",
        "page": {"url": "https://shop.example.com/checkout/complete"},
        "properties": {"order_id": "late-1", "category": "shoes", "revenue": 89.0},
    }
    with psycopg.connect(warehouse.database_url, autocommit=True) as conn:
        assert loader.store_events(conn, [late]) == 1
    late_id = uuid.UUID(late["event_id"])

    warehouse.derive(dict(WINDOW, lookback_hours=0))
    assert ("completed_purchase", late_id) not in warehouse.defined()

    warehouse.derive(dict(WINDOW, lookback_hours=2))
    assert {("completed_purchase", late_id), ("purchased_shoes", late_id)} <= warehouse.defined()


@pytest.mark.parametrize("passed_as", ["window", "dbt_vars"])
@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"start": "2026-11-20T00:00:00Z"}, "Give both the window's start and end"),
        ({"start": "yesterday", "end": "2026-11-20T00:00:00Z"}, "must be an ISO 8601 timestamp"),
        (dict(WINDOW, start="2026-11-21T00:00:00Z"), "The window is empty"),
        (
            dict(WINDOW, lookback_hours="-3"),
            "lookback_hours (var 'lookback_hours' or RETROLYTICS_WINDOW_LOOKBACK_HOURS) must be",
        ),
    ],
)
def test_a_bad_window_is_refused_with_a_reason(warehouse, passed_as, window, message):
    """The same reasons whether the window comes as environment variables or as --vars."""
    warehouse.compile()
    given = {passed_as: window}
    result = warehouse.dbt("compile", "--select", "defined_events", check=False, **given)
    assert not result.success
    assert message in failure_text(result)


def failure_text(result: Any) -> str:
    texts = [str(result.exception or "")]
    texts += [str(r.message) for r in getattr(result.result, "results", None) or []]
    return "\n".join(texts)
