"""Erasure: forget a person or a device everywhere, and keep them forgotten through replays.

``retrolytics erase --user ID | --device ID`` (``erase``):

1. records the request in ``raw.erasures``: a keyed hash of each erased identity (HMAC-SHA256
   with ``RETROLYTICS_ERASURE_KEY``, which never enters the database), who asked, when, why and
   how many rows went from each table. A user's erasure also records every device that user was
   seen on, so that the device's anonymous events go too;
2. deletes their rows from every table of every warehouse schema that has an ``anonymous_id``
   or ``user_id`` column (raw events and dead letters included), whatever models exist;
3. the caller then re-derives the models (``retrolytics erase`` runs ``dbt build``), so marts
   that aggregate without identity columns drop the erased units as well.

The loader consults ``raw.erasures`` in every batch (``erased_hashes``), so a replay of the
topic, a new consumer group or a late event of an erased device adds nothing. An erasure and a
loader batch never interleave: the erasure holds an exclusive advisory lock for its transaction,
every batch a shared one, so a batch either commits before the erasure deletes (and its rows go)
or reads the erasure list after it (and skips them).

The topic itself still holds the messages until Kafka's retention drops them (see the README).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

ERASURE_LOCK = 7_264_112_003  # advisory-lock key: erasures exclusive, loader batches shared
KEY_SETTING = "RETROLYTICS_ERASURE_KEY"
IDENTITY_COLUMNS = ("anonymous_id", "user_id")
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", "retrolytics")

ERASURES_SQL = """
create table if not exists raw.erasures (
    subject_hash  text        primary key,  -- hmac-sha256 of '<kind>:<id>'; never the id itself
    subject_kind  text        not null check (subject_kind in ('user', 'device')),
    request_hash  text        not null,     -- the erased subject the request named
    key_check     text        not null,     -- which key hashed it (hmac of a fixed text)
    requested_at  timestamptz not null default now(),
    requested_by  text        not null default current_user,
    reason        text,
    rows_deleted  jsonb       not null default '{}'
);
"""


class ErasureKeyMissing(RuntimeError):
    """No key to hash identities with."""


def erasure_key(environ: dict[str, str] | None = None) -> bytes:
    key = (environ or os.environ).get(KEY_SETTING, "")
    if not key:
        raise ErasureKeyMissing(
            f"{KEY_SETTING} is not set: the erasure list holds identities only as hashes keyed "
            "with it (the local stack makes one; `retrolytics stack status` prints it)"
        )
    return key.encode()


def subject_hash(key: bytes, kind: str, identity: str) -> str:
    return hmac.new(key, f"{kind}:{identity}".encode(), hashlib.sha256).hexdigest()


def key_check(key: bytes) -> str:
    """Names the key without revealing it: a loader with another key must not load."""
    return subject_hash(key, "key", "retrolytics erasure key check")


@dataclass
class ErasureReport:
    kind: str
    identity: str
    devices: list[str] = field(default_factory=list)
    rows_deleted: dict[str, int] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return any(self.rows_deleted.values())

    def summary(self) -> str:
        if not self.found:
            return (
                f"no rows of {self.kind} {self.identity!r} were found; it is on the erasure list "
                "all the same, so nothing of it will load later"
            )
        total = sum(self.rows_deleted.values())
        tables = ", ".join(f"{t} {n}" for t, n in sorted(self.rows_deleted.items()) if n)
        return (
            f"erased {self.kind} {self.identity!r} ({len(self.devices)} devices): "
            f"{total} rows deleted ({tables})"
        )


def erase(
    conn: psycopg.Connection,
    key: bytes,
    *,
    user: str | None = None,
    device: str | None = None,
    reason: str | None = None,
) -> ErasureReport:
    """Record the erasure and delete the subject's rows from every table this login may change.

    ``conn`` must be in autocommit mode; everything happens in one transaction.
    """
    if (user is None) == (device is None):
        raise ValueError("erase exactly one of a user or a device")
    kind, identity = ("user", user) if user is not None else ("device", device)
    report = ErasureReport(kind, identity)
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (ERASURE_LOCK,))
        users = [user] if user is not None else []
        report.devices = _devices_of(conn, user) if user is not None else [device]
        report.rows_deleted = delete_rows(conn, users, report.devices)
        request = subject_hash(key, kind, identity)
        subjects = [("user", u) for u in users] + [("device", d) for d in report.devices]
        with conn.cursor() as cur:
            cur.executemany(
                "insert into raw.erasures (subject_hash, subject_kind, request_hash, key_check, "
                "reason, rows_deleted) values (%s, %s, %s, %s, %s, %s) "
                "on conflict (subject_hash) do update "
                "set rows_deleted = raw.erasures.rows_deleted || excluded.rows_deleted",
                [
                    (
                        subject_hash(key, k, i),
                        k,
                        request,
                        key_check(key),
                        reason,
                        json.dumps(report.rows_deleted),
                    )
                    for k, i in subjects
                ],
            )
    return report


def _devices_of(conn: psycopg.Connection, user: str) -> list[str]:
    rows = conn.execute(
        "select distinct anonymous_id from raw.events where user_id = %s order by 1", (user,)
    ).fetchall()
    return [row[0] for row in rows]


def identity_tables(conn: psycopg.Connection) -> Iterator[tuple[str, str, list[str]]]:
    """(schema, table, identity columns) of every table outside the system schemas."""
    rows = conn.execute(
        "select c.table_schema, c.table_name, "
        "array_agg(c.column_name::text order by c.column_name) "
        "from information_schema.columns c join information_schema.tables t "
        "using (table_schema, table_name) "
        "where t.table_type = 'BASE TABLE' and c.column_name = any(%s) "
        "and c.table_schema <> all(%s) group by 1, 2 order by 1, 2",
        (list(IDENTITY_COLUMNS), list(SYSTEM_SCHEMAS)),
    ).fetchall()
    yield from rows


def delete_rows(conn: psycopg.Connection, users: list[str], devices: list[str]) -> dict[str, int]:
    """Delete the subject's rows from every identity table this login may change; rows per table.

    Tables of another owner (dbt's, when this is the owner of raw) are left to that login's own
    call and to the re-derivation. Dead letters are matched on their key and payload.
    """
    deleted: dict[str, int] = {}
    for schema, table, columns in identity_tables(conn):
        allowed = conn.execute(
            "select has_table_privilege(format('%%I.%%I', %s::text, %s::text), 'DELETE')",
            (schema, table),
        ).fetchone()[0]
        if not allowed:
            continue
        tests = []
        if "anonymous_id" in columns and devices:
            tests.append(sql.SQL("anonymous_id = any({})").format(sql.Literal(devices)))
        if "user_id" in columns and users:
            tests.append(sql.SQL("user_id = any({})").format(sql.Literal(users)))
        if not tests:
            continue
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("delete from {} where {}").format(
                    sql.Identifier(schema, table), sql.SQL(" or ").join(tests)
                )
            )
            deleted[f"{schema}.{table}"] = cur.rowcount
    deleted["raw.dead_letters"] = _delete_dead_letters(conn, users + devices)
    return deleted


def _delete_dead_letters(conn: psycopg.Connection, identities: list[str]) -> int:
    """A dead letter keeps the bytes it came as: match its key and search its payload."""
    if not identities:
        return 0
    encoded = [identity.encode() for identity in identities]
    with conn.cursor() as cur:
        cur.execute(
            "delete from raw.dead_letters where message_key = any(%s) or exists "
            "(select 1 from unnest(%s::bytea[]) i where position(i in payload) > 0)",
            (encoded, encoded),
        )
        return cur.rowcount


@dataclass(frozen=True)
class ErasureList:
    hashes: frozenset[str]
    key_checks: frozenset[str]

    def require(self, key: bytes | None) -> bytes:
        """The key, if it is the one the list was hashed with; else a clear refusal."""
        if key is None:
            raise ErasureKeyMissing(
                f"raw.erasures lists {len(self.hashes)} erased identities, but this loader has "
                f"no {KEY_SETTING} to recognise them; it loads nothing until it has the key"
            )
        if self.key_checks != {key_check(key)}:
            raise ErasureKeyMissing(
                f"raw.erasures was hashed with another {KEY_SETTING} than this loader's; with "
                "it the loader could not recognise erased identities, so it loads nothing"
            )
        return key


def erased_hashes(conn: psycopg.Connection) -> ErasureList:
    """Inside a loader batch's transaction: wait for a running erasure, then read the list."""
    conn.execute("select pg_advisory_xact_lock_shared(%s)", (ERASURE_LOCK,))
    rows = conn.execute("select subject_hash, key_check from raw.erasures").fetchall()
    return ErasureList(frozenset(r[0] for r in rows), frozenset(r[1] for r in rows))


def is_erased(
    hashes: frozenset[str], key: bytes | None, anonymous_id: str, user_id: str | None
) -> bool:
    if not hashes or key is None:
        return False
    if subject_hash(key, "device", anonymous_id) in hashes:
        return True
    return user_id is not None and subject_hash(key, "user", user_id) in hashes
