"""Idempotent bootstrap of the raw schema, and the single Citus switch.

The switch is a set of SQL functions in the ``retrolytics`` schema. They ask the database whether
the ``citus`` extension is present and only then call Citus; everything else (this bootstrap, the
dbt macros) calls them unconditionally. Nothing else in the project branches on Citus.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import psycopg
from psycopg import sql

CITUS_SWITCH_SQL = """
create schema if not exists retrolytics;

create or replace function retrolytics.citus_enabled() returns boolean
language sql stable as $$
    select exists (select 1 from pg_extension where extname = 'citus')
$$;

-- Distribute a table on its device column, colocated with raw.events; a no-op without Citus
-- and for a table that is already distributed. Call it on an EMPTY table, then INSERT ... SELECT.
create or replace function retrolytics.distribute(
    relation regclass,
    distribution_column text default 'anonymous_id',
    colocate_with text default 'raw.events'
) returns void language plpgsql as $$
begin
    if not retrolytics.citus_enabled() then
        return;
    end if;
    if exists (select 1 from pg_dist_partition where logicalrelid = relation) then
        return;
    end if;
    if relation = 'raw.events'::regclass then
        colocate_with := 'default';
    end if;
    perform create_distributed_table(relation, distribution_column, colocate_with => colocate_with);
end $$;

-- Small tables every node needs in full (compiled definitions, offsets); a no-op without Citus.
create or replace function retrolytics.make_reference(relation regclass) returns void
language plpgsql as $$
begin
    if not retrolytics.citus_enabled() then
        return;
    end if;
    if exists (select 1 from pg_dist_partition where logicalrelid = relation) then
        return;
    end if;
    perform create_reference_table(relation);
end $$;
"""

RAW_SCHEMA_SQL = """
create schema if not exists raw;

create table if not exists raw.events (
    event_id         uuid        not null,
    anonymous_id     text        not null,
    occurred_at      timestamptz not null,
    received_at      timestamptz not null,
    loaded_at        timestamptz not null default now(),
    type             text        not null,
    name             text,
    user_id          text,
    session_id       text,
    page_url         text,
    page_path        text,
    page_title       text,
    referrer         text,
    target_tag       text,
    target_id        text,
    target_classes   text[],
    target_text      text,
    target_href      text,
    hierarchy        text,
    properties       jsonb       not null default '{}',
    context          jsonb       not null default '{}',
    extra            jsonb       not null default '{}',
    source_partition integer,
    source_offset    bigint,
    -- The partition key must be part of every unique key of a partitioned table, and the
    -- distribution column of every unique key on Citus: a retried event has the same
    -- event_id, device and client timestamp, so this still stores it once.
    primary key (anonymous_id, event_id, occurred_at)
) partition by range (occurred_at);

create table if not exists raw.dead_letters (
    topic       text        not null,
    partition   integer     not null,
    "offset"    bigint      not null,
    message_key bytea,
    payload     bytea,
    reason      text        not null,
    failed_at   timestamptz not null default now(),
    primary key (topic, partition, "offset")
);

create table if not exists raw.ingest_offsets (
    consumer_group text        not null,
    topic          text        not null,
    partition      integer     not null,
    next_offset    bigint      not null,
    updated_at     timestamptz not null default now(),
    primary key (consumer_group, topic, partition)
);

select retrolytics.distribute('raw.events');
select retrolytics.make_reference('raw.dead_letters');
select retrolytics.make_reference('raw.ingest_offsets');
"""

_BOOTSTRAP_LOCK = 7_264_112_001  # an arbitrary advisory-lock key owned by this bootstrap


def bootstrap(conn: psycopg.Connection) -> None:
    """Create the switch functions and the raw schema; safe to run any number of times."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_BOOTSTRAP_LOCK,))
        conn.execute(CITUS_SWITCH_SQL)
        conn.execute(RAW_SCHEMA_SQL)


def partition_name(day: date) -> str:
    return f"events_{day:%Y%m%d}"


def ensure_partitions(conn: psycopg.Connection, days: Iterable[date]) -> list[date]:
    """Create the daily partitions of raw.events that are missing; return the days created.

    Runs in its own transaction before a batch is written: a new partition is harmless if the
    batch then fails, and Citus prefers DDL outside the transaction that writes.
    """
    wanted = sorted(set(days))
    if not wanted:
        return []
    existing = {
        row[0]
        for row in conn.execute(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
            "where i.inhparent = 'raw.events'::regclass"
        )
    }
    missing = [d for d in wanted if partition_name(d) not in existing]
    with conn.transaction():
        if missing:
            conn.execute("select pg_advisory_xact_lock(%s)", (_BOOTSTRAP_LOCK,))
        for day in missing:
            conn.execute(
                sql.SQL(
                    "create table if not exists raw.{} partition of raw.events "
                    "for values from ({}) to ({})"
                ).format(
                    sql.Identifier(partition_name(day)),
                    sql.Literal(f"{day.isoformat()} 00:00:00+00"),
                    sql.Literal(f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00"),
                )
            )
    return missing
