"""Hostile definitions: every literal either matches literally or is refused; nothing runs.

Definitions reach dbt as seed data and ``show`` renders them through ``sql.py``, the one place
that escapes literals. Here names, texts, selectors, regexes, properties and prose full of
quotes, ``'; drop table``, backslashes and ``$$`` go all the way through a real dbt build.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from ingestion import loader
from retrolytics.language import events, sql
from retrolytics.language.check import check, load_catalog
from tests.support.warehouse import DEFINED_EVENTS, Warehouse, copy_project, load_traffic

DROP_RAW = "'; drop table raw.events; --"
DROP_SEED = "Robert'); DROP TABLE staging.event_definitions;--"
BACKSLASH = "back\\slash \\' and \\\\ E'\\x41'"
DOLLARS = "$$ dollar $$ quoted $tag$ body $tag$"
QUOTES = 'double "quotes"; semicolons; and -- comments /* */'

HOSTILE = [
    {
        "name": "hostile_text",
        "description": 'It\'s a "test"; drop table raw.events; --',
        "owner": "o'neil; $$",
        "match": [{"type": "click", "text": DROP_RAW}],
    },
    {
        "name": "hostile_text_contains",
        "description": "d",
        "owner": "o",
        "match": [{"type": "click", "text": {"contains": "drop table raw"}}],
    },
    {
        "name": "hostile_href",
        "description": "d",
        "owner": "o",
        "match": [{"href": {"starts_with": BACKSLASH}}],
    },
    {
        "name": "hostile_selector",
        "description": "d",
        "owner": "o",
        "match": [{"selector": 'a[data-x="\'; drop table raw.events; --"]'}],
    },
    {
        "name": "hostile_selector_dollars",
        "description": "d",
        "owner": "o",
        "match": [{"selector": "button[data-y='$$ dollar $$'] span"}],
    },
    {
        "name": "hostile_regex",
        "description": "d",
        "owner": "o",
        "match": [{"text": {"regex": r"^Robert'\); DROP TABLE [a-z_.]+;--$"}}],
    },
    {
        "name": "hostile_properties",
        "description": "d",
        "owner": "o",
        "match": [{"type": "custom", "name": DOLLARS, "properties": {"k'; drop": QUOTES}}],
    },
    {
        "name": "hostile_path_like",
        "description": "d",
        "owner": "o",
        "match": [{"path": {"like": "/it's/*/$$"}}],
    },
]


def click(text: str, elements: list[dict], **extra: object) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "click",
        "occurred_at": "2026-11-20T10:00:00Z",
        "received_at": "2026-11-20T10:00:01Z",
        "anonymous_id": "hostile-device",
        "page": {"url": "https://shop.example.com/x", "path": extra.pop("path", "/x")},
        "target": {"elements": elements, "text": text},
        **extra,
    }


def element(tag: str, **attributes: str) -> dict:
    return {"tag": tag, "attributes": attributes}


BODY = [element("body"), element("html")]
HOSTILE_EVENTS = {
    "drop_raw_text": click(DROP_RAW, [element("a"), *BODY]),
    "drop_seed_text": click(DROP_SEED, [element("a"), *BODY]),
    "backslash_href": click("x", [element("a", href=BACKSLASH + " tail"), *BODY]),
    "drop_raw_attribute": click("x", [element("a", **{"data-x": DROP_RAW}), *BODY]),
    "dollar_attribute": click(
        "x", [element("span"), element("button", **{"data-y": "$$ dollar $$"}), *BODY]
    ),
    "dollar_custom": {
        "event_id": str(uuid.uuid4()),
        "type": "custom",
        "name": DOLLARS,
        "occurred_at": "2026-11-20T10:00:00Z",
        "received_at": "2026-11-20T10:00:01Z",
        "anonymous_id": "hostile-device",
        "properties": {"k'; drop": QUOTES, "other": 1},
    },
    "quoted_path": click("x", [element("a"), *BODY], path="/it's/42/$$"),
    # near misses: a literal comparison must not be fooled by SQL-looking text
    "near_text": click(DROP_RAW.upper(), [element("a"), *BODY]),
    "near_attribute": click("x", [element("a", **{"data-x": "'; drop table raw"}), *BODY]),
    "near_property": {
        "event_id": str(uuid.uuid4()),
        "type": "custom",
        "name": DOLLARS,
        "occurred_at": "2026-11-20T10:00:00Z",
        "received_at": "2026-11-20T10:00:01Z",
        "anonymous_id": "hostile-device",
        "properties": {"k'; drop": QUOTES + " "},
    },
}
EXPECTED = {
    "hostile_text": {"drop_raw_text"},
    "hostile_text_contains": {"drop_raw_text"},
    "hostile_href": {"backslash_href"},
    "hostile_selector": {"drop_raw_attribute"},
    "hostile_selector_dollars": {"dollar_attribute"},
    "hostile_regex": {"drop_seed_text"},
    "hostile_properties": {"dollar_custom"},
    "hostile_path_like": {"quoted_path"},
}


def write_definitions(definitions_dir: Path, definitions: list[dict]) -> None:
    path = definitions_dir / "events" / "hostile.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"events": definitions}, allow_unicode=True, sort_keys=False))


def test_hostile_definitions_are_valid_and_compile_to_escaped_literals(tmp_path):
    write_definitions(tmp_path, HOSTILE)
    catalog = check(tmp_path)
    assert catalog.problems == []
    rows = events.compile_all(catalog.event_definitions)
    by_name = {row.definition_name: row for row in rows}
    assert by_name["hostile_text"].text_value == DROP_RAW  # kept as written, as data
    predicate = events.definition_predicate([by_name["hostile_text"]])
    assert "target_text = '''; drop table raw.events; --'" in predicate
    backslashes = events.definition_predicate([by_name["hostile_href"]])
    assert "starts_with(target_href, E'back\\\\slash \\\\'' and" in backslashes


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x'; drop table raw.events; --", "snake_case"),
        ("robert_tables\x00", "snake_case"),
        ("$$", "snake_case"),
    ],
)
def test_hostile_names_are_refused(tmp_path, name, message):
    write_definitions(tmp_path, [dict(HOSTILE[0], name=name)])
    problems = check(tmp_path).problems
    assert problems and all(p.line == 2 for p in problems)
    assert any(message in p.message for p in problems)


def test_nul_is_refused_wherever_it_appears(tmp_path):
    for key, value in [("text", "a\x00b"), ("selector", "a[data-x='\x00']")]:
        write_definitions(tmp_path, [dict(HOSTILE[0], match=[{"type": "click", key: value}])])
        (problem,) = check(tmp_path).problems
        assert "NUL character" in problem.message
    with pytest.raises(sql.UnsafeLiteral, match="NUL character"):
        sql.quote_literal("a\x00b")


@pytest.mark.integration
def test_hostile_definitions_match_literally_and_the_tables_survive(raw_db, database_url, tmp_path):
    project, definitions = copy_project(tmp_path)
    write_definitions(definitions, HOSTILE)
    load_traffic(database_url, count=500)
    assert loader.store_events(raw_db, HOSTILE_EVENTS.values()) == len(HOSTILE_EVENTS)
    raw_count = raw_db.execute("select count(*) from raw.events").fetchone()[0]
    warehouse = Warehouse(database_url, project, definitions)
    warehouse.compile()

    warehouse.dbt("build", *DEFINED_EVENTS)

    assert raw_db.execute("select count(*) from raw.events").fetchone()[0] == raw_count
    ids = {uuid.UUID(event["event_id"]): key for key, event in HOSTILE_EVENTS.items()}
    catalog = load_catalog(definitions)
    for definition in catalog.event_definitions:
        if not definition.name.startswith("hostile_"):
            continue
        defined = {
            ids.get(event_id, "traffic") for _, event_id in warehouse.defined(definition.name)
        }
        assert defined == EXPECTED[definition.name], definition.name
        shown = events.describe_compiled(events.compile_definition(definition))
        selected = {
            ids.get(event_id, "traffic")
            for (event_id,) in warehouse.query(
                f"select event_id from staging.stg_events where {shown}"
            )
        }
        assert selected == EXPECTED[definition.name], definition.name
    stored = dict(
        warehouse.query(
            "select definition_name, description from staging.stg_event_definitions "
            "where definition_name in ('hostile_text', 'hostile_selector')"
        )
    )
    assert stored["hostile_text"] == HOSTILE[0]["description"]
    texts = warehouse.query(
        "select text_value, selector from staging.stg_event_definitions "
        "where definition_name in ('hostile_text', 'hostile_selector') order by definition_name"
    )
    assert texts == [(None, HOSTILE[3]["match"][0]["selector"]), (DROP_RAW, None)]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select to_regclass('staging.event_definitions')").fetchone()[0]
