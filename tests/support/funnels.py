"""Running the funnel models on test data and comparing them with the reference.

A test gets its own copy of the dbt project (so its seeds never touch the real ones), a
definitions folder, and events stored straight into raw.events; dbt runs in-process.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from demo.traffic import generate_events
from ingestion.loader import store_events
from retrolytics.language import funnels
from retrolytics.language.check import load_catalog
from retrolytics.language.funnels import Funnel
from retrolytics.language.seeds import compile_seed
from retrolytics.semantics.funnels import (
    Entry,
    Event,
    MartRow,
    data_end_of,
    funnel_entries,
    funnel_mart,
)
from retrolytics.warehouse import runner
from tests.support.paths import REPO, copy_dbt_project
from tests.support.warehouse import fresh_database

BREAKDOWN_FIELDS = funnels.BREAKDOWN_FIELDS
SHOP_UNTIL = date(2026, 11, 23)  # the shipped-shop warehouses' last day of traffic


@contextmanager
def shipped_shop(
    owner_url: str, folder: Path, *, events: int, seed: int
) -> Iterator[tuple[str, Path, list[Funnel]]]:
    """Four days of shop traffic in a new database (dropped afterwards), derived with the
    shipped declarations in a copy of the dbt project under ``folder``: its URL, the project
    and the declared funnels."""
    with fresh_database(owner_url) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            store_events(conn, generate_events(events, 4, seed=seed, until=SHOP_UNTIL))
        project = copy_dbt_project(folder / "dbt_project")
        declared = compile_declarations(REPO / "definitions", project)
        run(project, url)
        yield url, project, declared


def compile_declarations(definitions_dir: Path, project_dir: Path) -> list[Funnel]:
    """``retrolytics definitions compile`` into the project copy; returns the funnels."""
    compile_seed(definitions_dir, project_dir)
    return load_catalog(definitions_dir).declarations["funnels"]


def run(project_dir: Path, database_url: str, *, tests: bool = False, **window: Any) -> None:
    """``dbt build`` (seeds and models; data tests too when ``tests``) over this window (none:
    all history)."""
    skip_tests = [] if tests else ["--exclude-resource-type", "test", "--quiet"]
    runner.run_dbt(
        ["build", *skip_tests],
        database_url=database_url,
        project_dir=project_dir,
        window=window,
    )


# -- reading and comparing -------------------------------------------------------------------

FACT_FIELDS = [f for f in Entry.__dataclass_fields__]
MART_FIELDS = [f for f in MartRow.__dataclass_fields__]
MART_KEY = ("funnel_name", "period", "period_start", "breakdown_value", "step_number")


def sql_facts(conn: psycopg.Connection) -> dict[tuple, dict[str, Any]]:
    columns = ", ".join(FACT_FIELDS)
    rows = conn.cursor(row_factory=dict_row).execute(
        f"select {columns}, entry_day from marts.fct_funnel_entries"
    )
    return {(r["funnel_name"], r["unit_id"], r["attempt_number"]): r for r in rows}


def reference_facts(declared: Sequence[Funnel], events: Sequence[Event]) -> dict[tuple, dict]:
    facts = {}
    data_end = data_end_of(declared, events)
    for funnel in declared:
        for entry in funnel_entries(funnel, events, data_end):
            row = asdict(entry)
            row["step_reached_at"] = list(entry.step_reached_at)
            row["entry_day"] = entry.entry_day
            facts[(entry.funnel_name, entry.unit_id, entry.attempt_number)] = row
    return facts


def sql_mart(conn: psycopg.Connection) -> dict[tuple, dict[str, Any]]:
    columns = ", ".join(MART_FIELDS)
    rows = conn.cursor(row_factory=dict_row).execute(
        f"select {columns} from marts.mart_funnel_conversion"
    )
    return {tuple(r[k] for k in MART_KEY): r for r in rows}


def sql_unit_steps(conn: psycopg.Connection) -> dict[tuple, tuple]:
    """mart_funnel_unit_steps by (funnel, unit, attempt, step): (entry day, in progress)."""
    rows = conn.execute(
        "select funnel_name, unit_id, attempt_number, step_number, entry_day, in_progress"
        " from marts.mart_funnel_unit_steps"
    )
    return {tuple(row[:4]): tuple(row[4:]) for row in rows}


def reference_unit_steps(facts: dict[tuple, dict]) -> dict[tuple, tuple]:
    """The same, from reference facts: every step 1 to furthest_step of each attempt that is not
    excluded."""
    return {
        (*key, step): (row["entry_day"], row["outcome"] == "in_progress")
        for key, row in facts.items()
        if row["outcome"] != "excluded"
        for step in range(1, row["furthest_step"] + 1)
    }


def reference_mart(declared: Sequence[Funnel], events: Sequence[Event]) -> dict[tuple, dict]:
    mart = {}
    data_end = data_end_of(declared, events)
    for funnel in declared:
        for row in funnel_mart(funnel, funnel_entries(funnel, events, data_end)):
            values = asdict(row)
            mart[tuple(values[k] for k in MART_KEY)] = values
    return mart


def assert_same(actual: dict[tuple, dict], expected: dict[tuple, dict], what: str) -> None:
    """Every row equal, field by field; the message lists the first differences."""
    problems = []
    for key in sorted(set(actual) | set(expected), key=repr):
        if key not in actual:
            problems.append(f"missing in SQL: {key}: {expected[key]}")
        elif key not in expected:
            problems.append(f"only in SQL: {key}: {actual[key]}")
        else:
            differing = {
                field: (actual[key][field], value)
                for field, value in expected[key].items()
                if not _equal(actual[key][field], value)
            }
            if differing:
                problems.append(f"{key}: (sql, reference) {differing}")
    assert not problems, f"{what}: {len(problems)} differences, e.g.\n" + "\n".join(problems[:8])


def _equal(actual: Any, expected: Any) -> bool:
    # Means are sums divided in another order than PostgreSQL's: equal to the last few bits.
    if isinstance(actual, float) and isinstance(expected, float):
        return math.isclose(actual, expected, rel_tol=1e-12, abs_tol=1e-9)
    return actual == expected


# -- events ----------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def reference_events(documents: Iterable[dict], definitions_of) -> list[Event]:
    """Contract dicts as the reference sees them; ``definitions_of(doc)`` says what matches."""
    events = []
    for doc in documents:
        page = doc.get("page") or {}
        utm = (doc.get("context") or {}).get("utm") or {}
        fields = {
            "type": doc["type"],
            "name": doc.get("name"),
            "page_url": page.get("url"),
            "page_path": page.get("path"),
            "page_title": page.get("title"),
            "referrer": page.get("referrer"),
            "target_text": None,
            "target_href": None,
            "utm_source": utm.get("source"),
            "utm_medium": utm.get("medium"),
            "utm_campaign": utm.get("campaign"),
        }
        events.append(
            Event(
                event_id=uuid.UUID(doc["event_id"]),
                anonymous_id=doc["anonymous_id"],
                occurred_at=datetime.fromisoformat(doc["occurred_at"].replace("Z", "+00:00")),
                type=doc["type"],
                name=doc.get("name"),
                user_id=doc.get("user_id"),
                properties=doc.get("properties") or {},
                fields=fields,
                definitions=frozenset(definitions_of(doc)),
                user_agent=_text((doc.get("context") or {}).get("user_agent")),
            )
        )
    return events


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


NAMES = ("a", "b", "c", "d", "x")
# "(all)": the overall row's name; "": an empty value (first and last touch skip it).
PROPERTY_VALUES = (1, 2, "1", 1.0, None, "missing", "(all)", "")


def edge_case_events(seed: int, start: datetime, days: int = 3, devices: int = 16) -> list[dict]:
    """Small, dense traffic full of funnel edge cases.

    Times sit on a whole-minute grid inside short bursts, so events tie on the timestamp and
    land exactly on 3- and 10-minute windows; steps repeat and come out of order; devices share
    users (several devices per person, and a device used by two people); properties mix 1, 1.0,
    "1", null and missing.
    """
    rng = random.Random(seed)
    users = [f"user-{i}" for i in range(devices // 3)]
    documents = []

    def event(device: str, moment: datetime, kind: str, **extra: Any) -> dict:
        path = rng.choice(["/p/1", "/p/2", "/home"])
        document: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "type": kind,
            "occurred_at": iso(moment),
            "received_at": iso(moment + timedelta(seconds=1)),
            "anonymous_id": device,
            "session_id": f"{device}-s",
            "page": {"url": f"https://shop.test{path}", "path": path, "title": "Page"},
            "context": {"utm": {"source": rng.choice(["ads", "mail", "social"])}}
            if rng.random() < 0.6
            else {},
        }
        document.update(extra)
        return document

    for number in range(devices):
        device = f"device-{number:02d}"
        for _ in range(rng.randint(2, 5)):  # bursts
            burst = start + timedelta(minutes=rng.randrange(days * 24 * 60 - 30))
            for _ in range(rng.randint(3, 14)):
                moment = burst + timedelta(minutes=rng.randint(0, 16))
                roll = rng.random()
                if roll < 0.06:
                    documents.append(event(device, moment, "identify", user_id=rng.choice(users)))
                elif roll < 0.16:
                    documents.append(event(device, moment, "pageview"))
                else:
                    properties: dict[str, Any] = {"q": rng.choice(["red", "blue"])}
                    value = rng.choice(PROPERTY_VALUES)
                    if value != "missing":
                        properties["p"] = value
                    name = rng.choices(NAMES, weights=(5, 4, 3, 2, 1))[0]
                    extra: dict[str, Any] = {"name": name, "properties": properties}
                    if rng.random() < 0.2:
                        extra["user_id"] = rng.choice(users)
                    documents.append(event(device, moment, "custom", **extra))
    return documents


def custom_definitions(doc: dict) -> set[str]:
    """What the test definitions (tests/funnel_definitions) match, decided in Python."""
    name = doc.get("name") if doc["type"] == "custom" else None
    if name is None:
        return set()
    matched = {f"did_{name}"}
    if name in ("a", "b"):
        matched.add("did_a_or_b")
    return matched
