"""Parsed user agents: one row per distinct User-Agent header in ``raw.user_agents``.

The loader parses each header it has not stored yet with ua-parser (the maintained Python port
of uap-core's rules) in the same transaction as the batch that brought it, so a session's
device, browser and OS are known as soon as its events are.

Why a lookup table rather than parsed columns on every event: the raw events never change
after loading, while uap-core's rules are updated every few weeks, and each row here names the
parser that made it, so a newer parser can redo the few thousand headers without touching the
events. And a batch of hundreds of events carries a handful of distinct headers: the loader
parses a header once (about 0.25 ms) instead of looking it up per event.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from importlib.metadata import version

import psycopg
import ua_parser

PARSER = f"ua-parser {version('ua-parser')}, rules {version('ua-parser-builtins')}"

# raw.user_agents is created by the bootstrap (ingestion.schema); these are its columns.
COLUMNS = (
    "user_agent_md5",
    "user_agent",
    "browser_family",
    "browser_version",
    "os_family",
    "os_version",
    "device_family",
    "device_brand",
    "device_model",
    "is_bot",
    "parser",
)


def key(user_agent: str) -> uuid.UUID:
    """The table's key, ``md5(user_agent)::uuid`` in SQL: a header may outgrow a btree entry."""
    return uuid.UUID(hashlib.md5(user_agent.encode()).hexdigest())


def _version(*parts: str | None) -> str | None:
    present = [part for part in parts if part]
    return ".".join(present) or None


def parse(user_agent: str) -> tuple:
    """The ``raw.user_agents`` row for a header, in ``COLUMNS`` order."""
    result = ua_parser.parse(user_agent)
    browser, os, device = result.user_agent, result.os, result.device
    return (
        key(user_agent),
        user_agent,
        browser.family if browser else None,
        _version(browser.major, browser.minor) if browser else None,
        os.family if os else None,
        _version(os.major, os.minor) if os else None,
        device.family if device else None,
        device.brand if device else None,
        device.model if device else None,
        # uap-core's convention: crawlers and other bots are the device family "Spider".
        bool(device and device.family == "Spider"),
        PARSER,
    )


def record_new(cur: psycopg.Cursor, headers: Iterable[str]) -> int:
    """Parse and store the headers of the loader's batch not stored yet; returns rows added.

    Two plain queries rather than a join, so that on Citus the loader's rows never meet the
    reference table ``raw.user_agents`` in one statement.
    """
    headers = sorted(set(headers))
    if not headers:
        return 0
    cur.execute(
        "select user_agent_md5 from raw.user_agents where user_agent_md5 = any(%s)",
        ([key(header) for header in headers],),
    )
    stored = {stored_key for (stored_key,) in cur.fetchall()}
    rows = [parse(header) for header in headers if key(header) not in stored]
    if rows:
        placeholders = ", ".join(["%s"] * len(COLUMNS))
        cur.executemany(
            f"insert into raw.user_agents ({', '.join(COLUMNS)}) values ({placeholders}) "
            "on conflict do nothing",
            rows,
        )
    return len(rows)


def headers_of(contexts: Iterable[str]) -> set[str]:
    """The User-Agent headers in rows' ``context`` JSON (each distinct context read once)."""
    headers = set()
    for context in set(contexts):
        header = json.loads(context).get("user_agent")
        if isinstance(header, str):
            headers.add(header)
    return headers
