"""Running the sessions and persons models on test events and comparing them with the reference.

Events are contract dicts stored straight into raw.events (through the loader's own insert, so
user agents are parsed as on ingest); dbt runs in-process on a copy of the project.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from retrolytics.language.seeds import compile_seed
from retrolytics.semantics import sessions as reference
from retrolytics.warehouse import runner
from tests.support.funnels import assert_same, iso
from tests.support.paths import REPO, copy_dbt_project

MODELS = (
    "+fct_sessions",
    "+mart_sessions_daily",
    "+dim_persons",
    "+dim_devices",
    "+dim_person_traits",
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def prepare_project(destination: Path) -> Path:
    project = copy_dbt_project(destination)
    compile_seed(REPO / "definitions", project)
    return project


def build(
    project: Path,
    database_url: str,
    *,
    full_refresh: bool = False,
    tests: bool = True,
    **window: Any,
) -> None:
    """``dbt build`` of the sessions and persons models (and their data tests, unless not
    ``tests``) over this window (none: all history)."""
    args = ["build" if tests else "run", "--select", *MODELS, "--quiet"]
    if tests:
        args += ["--indirect-selection", "cautious"]
    if full_refresh:
        args.append("--full-refresh")
    runner.run_dbt(args, database_url=database_url, project_dir=project, window=window)


# -- events ----------------------------------------------------------------------------------


def event(
    device: str,
    moment: datetime,
    type_: str = "pageview",
    *,
    path: str = "/",
    received_at: datetime | None = None,
    user_agent: str | None = IPHONE,
    utm: dict[str, str] | None = None,
    referrer: str | None = None,
    **extra: Any,
) -> dict:
    """A contract event; element events get a minimal target."""
    document: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "occurred_at": iso(moment),
        "anonymous_id": device,
        "page": {"url": f"https://shop.example.com{path}", "path": path},
        "context": {},
        **extra,
    }
    if received_at is not None:
        document["received_at"] = iso(received_at)
    if referrer:
        document["page"]["referrer"] = referrer
    if user_agent is not None:
        document["context"]["user_agent"] = user_agent
    if utm:
        document["context"]["utm"] = utm
    if type_ in ("click", "submit", "change", "touch"):
        document["target"] = {"elements": [{"tag": "button"}], "text": "Go"}
    if type_ == "custom":
        document.setdefault("name", "did_something")
    return document


def reference_event(document: dict) -> reference.Event:
    page = document.get("page") or {}
    context = document.get("context") or {}
    utm = context.get("utm") or {}
    agent = context.get("user_agent")
    return reference.Event(
        event_id=uuid.UUID(document["event_id"]),
        anonymous_id=document["anonymous_id"],
        occurred_at=datetime.fromisoformat(document["occurred_at"].replace("Z", "+00:00")),
        type=document["type"],
        user_id=document.get("user_id"),
        client_session_id=document.get("session_id"),
        page_path=page.get("path"),
        referrer=page.get("referrer"),
        utm_source=utm.get("source"),
        utm_medium=utm.get("medium"),
        utm_campaign=utm.get("campaign"),
        user_agent=agent if isinstance(agent, str) else None,
        traits=(document.get("properties") or {}) if document["type"] == "identify" else {},
    )


# -- reading and comparing -------------------------------------------------------------------


def _columns(dataclass_type: type) -> list[str]:
    return [f.name for f in fields(dataclass_type)]


def _read(conn: psycopg.Connection, table: str, columns: list[str]) -> list[dict]:
    # psycopg cannot read 'infinity' timestamps; the reference spells them reference.INFINITY.
    listed = ", ".join(
        f"case when {c} = 'infinity' then null else {c} end as {c}" if c == "valid_to" else c
        for c in columns
    )
    rows = conn.cursor(row_factory=dict_row).execute(f"select {listed} from {table}").fetchall()
    for row in rows:
        if "valid_to" in row and row["valid_to"] is None:
            row["valid_to"] = reference.INFINITY
    return rows


def _rounded(row: dict) -> dict:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}


def _keyed(rows: Iterable[dict], key: tuple[str, ...]) -> dict[tuple, dict]:
    return {tuple(row[k] for k in key): _rounded(row) for row in rows}


TABLES = {
    # table: (reference row type, key columns)
    "marts.fct_sessions": (reference.Session, ("anonymous_id", "session_start")),
    "marts.dim_person_traits": (
        reference.TraitVersion,
        ("person_id", "trait", "valid_from", "set_by_event_id"),
    ),
    "marts.dim_persons": (reference.Person, ("person_id",)),
    "marts.dim_devices": (reference.Device, ("anonymous_id",)),
    "marts.mart_sessions_daily": (reference.Day, ("session_day",)),
}


def sql_state(database_url: str) -> dict[str, dict[tuple, dict]]:
    with psycopg.connect(database_url) as conn:
        return {
            table: _keyed(_read(conn, table, _columns(row_type)), key)
            for table, (row_type, key) in TABLES.items()
        }


def reference_state(documents: Iterable[dict]) -> dict[str, dict[tuple, dict]]:
    events = [reference_event(d) for d in documents]
    sessions = reference.sessions(events)
    rows = {
        "marts.fct_sessions": sessions,
        "marts.dim_person_traits": reference.trait_history(events),
        "marts.dim_persons": reference.persons(events, sessions),
        "marts.dim_devices": reference.devices(events, sessions),
        "marts.mart_sessions_daily": reference.daily(sessions),
    }
    return {
        table: _keyed((asdict(row) for row in rows[table]), TABLES[table][1]) for table in TABLES
    }


def assert_equal_states(actual: dict, expected: dict, what: str) -> None:
    for table in TABLES:
        assert_same(actual[table], expected[table], f"{what}: {table}")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]
