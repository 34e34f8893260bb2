"""User-Agent headers are parsed once per distinct header, on ingest, into raw.user_agents."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingestion import user_agents
from ingestion.loader import store_events

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def parsed(header: str) -> dict:
    return dict(zip(user_agents.COLUMNS, user_agents.parse(header), strict=True))


def test_the_parser_names_browser_os_device_and_bots() -> None:
    iphone = parsed(IPHONE)
    assert (iphone["browser_family"], iphone["browser_version"]) == ("Mobile Safari", "17.4")
    assert (iphone["os_family"], iphone["device_family"], iphone["is_bot"]) == (
        "iOS",
        "iPhone",
        False,
    )
    edge = parsed(EDGE)
    assert (edge["browser_family"], edge["os_family"], edge["device_family"]) == (
        "Edge",
        "Windows",
        None,
    )
    assert parsed(GOOGLEBOT)["is_bot"] is True
    nothing = parsed("")
    assert nothing["browser_family"] is None and nothing["is_bot"] is False


def test_key_is_the_md5_postgresql_computes(raw_db: psycopg.Connection) -> None:
    header = IPHONE + " ünïcode"
    assert raw_db.execute("select md5(%s)::uuid", (header,)).fetchone()[0] == user_agents.key(
        header
    )


def event(device: str, context: dict, minute: int) -> dict:
    moment = datetime(2026, 11, 20, 10, tzinfo=UTC) + timedelta(minutes=minute)
    return {
        "event_id": str(uuid.uuid4()),
        "type": "pageview",
        "occurred_at": moment.isoformat(),
        "anonymous_id": device,
        "page": {"url": "https://shop.example.com/"},
        "context": context,
    }


@pytest.mark.integration
def test_the_loader_stores_each_header_once(raw_db: psycopg.Connection) -> None:
    huge = "Mozilla/5.0 " + "x" * 20_000  # longer than a btree entry may be
    store_events(
        raw_db,
        [
            event("d1", {"user_agent": IPHONE}, 0),
            event("d1", {"user_agent": IPHONE}, 1),
            event("d2", {"user_agent": EDGE}, 2),
            event("d3", {"user_agent": 42}, 3),  # not a string: not a header
            event("d4", {}, 4),
            event("d5", {"user_agent": huge}, 5),
        ],
    )
    store_events(raw_db, [event("d6", {"user_agent": IPHONE}, 6), event("d7", {}, 7)])
    rows = raw_db.execute(
        "select user_agent, browser_family, os_family, parser from raw.user_agents"
    ).fetchall()
    by_header = {row[0]: row[1:] for row in rows}
    assert sorted(by_header) == sorted([IPHONE, EDGE, huge])
    assert len(rows) == 3
    assert by_header[IPHONE] == ("Mobile Safari", "iOS", user_agents.PARSER)
    assert by_header[EDGE][:2] == ("Edge", "Windows")
