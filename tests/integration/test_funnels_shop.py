"""The shipped funnels over synthetic shop traffic, and the read-only role BI tools use.

Here the reference reads which definitions each event matched from marts.defined_events (the
event definitions are tested on their own); everything after that (identity, attempts, the
mart) it computes itself from the raw events.
"""

from __future__ import annotations

from collections import defaultdict

import psycopg
import pytest
from psycopg.rows import dict_row

from retrolytics.semantics.funnels import Event
from retrolytics.warehouse import runner
from tests.support.funnels import (
    assert_same,
    reference_facts,
    reference_mart,
    shipped_shop,
    sql_facts,
    sql_mart,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shop(stack, tmp_path_factory: pytest.TempPathFactory):
    """Four days of shop traffic in a database of this module, built with the shipped
    definitions and funnels (once: both tests only read it, or add a role they remove)."""
    folder = tmp_path_factory.mktemp("shop")
    with (
        shipped_shop(stack.database_url, folder, events=6000, seed=3) as (url, project, declared),
        psycopg.connect(url, autocommit=True) as conn,
    ):
        yield conn, url, project, declared


def events_as_stored(conn: psycopg.Connection) -> list[Event]:
    matched: dict[tuple, set[str]] = defaultdict(set)
    for row in conn.execute(
        "select anonymous_id, event_id, occurred_at, definition_name from marts.defined_events"
    ):
        matched[row[:3]].add(row[3])
    events = []
    for row in conn.cursor(row_factory=dict_row).execute("select * from raw.events"):
        utm = row["context"].get("utm") or {}
        fields = {
            name: row[name]
            for name in ("type", "name", "page_url", "page_path", "page_title", "referrer")
        }
        fields |= {"target_text": row["target_text"], "target_href": row["target_href"]}
        fields |= {f"utm_{k}": utm.get(k) for k in ("source", "medium", "campaign")}
        key = (row["anonymous_id"], row["event_id"], row["occurred_at"])
        agent = row["context"].get("user_agent")
        events.append(
            Event(
                event_id=row["event_id"],
                anonymous_id=row["anonymous_id"],
                occurred_at=row["occurred_at"],
                type=row["type"],
                name=row["name"],
                user_id=row["user_id"],
                properties=row["properties"],
                fields=fields,
                definitions=frozenset(matched.get(key, ())),
                user_agent=agent if isinstance(agent, str) else None,
            )
        )
    return events


def test_the_shop_funnels_equal_the_reference(shop) -> None:
    conn, _url, _project, declared = shop
    events = events_as_stored(conn)
    assert_same(sql_facts(conn), reference_facts(declared, events), "fct_funnel_entries")
    assert_same(sql_mart(conn), reference_mart(declared, events), "mart_funnel_conversion")
    converted = dict(
        conn.execute(
            "select funnel_name, count(*) filter (where converted) "
            "from marts.fct_funnel_entries group by 1"
        ).fetchall()
    )
    assert {"browse_to_purchase", "signup", "search_to_cart"} <= converted.keys()
    assert converted["browse_to_purchase"] > 0 and converted["search_to_cart"] > 0
    # search_to_click (strict, broken by any event): some searches are followed by a click at
    # once, and others are broken by an event of another kind (no step) in between.
    broken = conn.execute(
        "select count(*) from marts.fct_funnel_entries as facts"
        " inner join intermediate.int_funnel_step_events as other"
        " on other.funnel_name = facts.funnel_name and other.anonymous_id = facts.unit_id"
        " and other.occurred_at = facts.ended_at and other.step_mask = 0"
        " where facts.funnel_name = 'search_to_click' and facts.outcome = 'broken_order'"
    ).fetchone()[0]
    assert converted["search_to_click"] > 0 and broken > 0
    persons = conn.execute(
        "select count(distinct unit_id) from marts.fct_funnel_entries "
        "where unit = 'user' and unit_id like 'user:%'"
    ).fetchone()[0]
    assert persons > 0
    # The session funnel (visit_to_cart): its units are sessions, several per device for some
    # devices, broken down by more than one landing page.
    sessions, devices, landings = conn.execute(
        "select count(distinct unit_id), count(distinct anonymous_id),"
        " count(distinct breakdown_value) from marts.fct_funnel_entries"
        " where funnel_name = 'visit_to_cart' and unit_id like 'session:%'"
    ).fetchone()
    assert sessions > devices > 0 and landings > 1
    assert converted["visit_to_cart"] > 0


def test_the_bi_role_reads_the_marts_and_nothing_else(shop, stack) -> None:
    _conn, url, project, _declared = shop
    runner.run_dbt(["run-operation", "create_bi_role"], database_url=url, project_dir=project)
    # A table the next run creates (a full refresh of the mart) is readable too.
    runner.run_dbt(
        ["build", "--select", "mart_funnel_conversion", "--full-refresh", "--quiet"],
        database_url=url,
        project_dir=project,
    )
    # The stack's BI login, a member of retrolytics_bi, in this test's database.
    database = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    as_bi = psycopg.conninfo.make_conninfo(stack.bi_database_url, dbname=database)
    with psycopg.connect(as_bi, autocommit=True) as bi:
        assert bi.execute("select count(*) from marts.mart_funnel_conversion").fetchone()[0] > 0
        assert bi.execute("select count(*) from marts.fct_funnel_entries").fetchone()[0] > 0
        for forbidden in ("raw.events", "staging.stg_events", "intermediate.int_device_persons"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                bi.execute(f"select 1 from {forbidden} limit 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bi.execute("delete from marts.mart_funnel_conversion")
