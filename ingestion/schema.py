"""Idempotent bootstrap of the raw schema (and its grants to the job roles), and the single
Citus switch.

The switch is a set of SQL functions in the ``retrolytics`` schema. They ask the database whether
the ``citus`` extension is present and only then call Citus; everything else (this bootstrap, the
dbt macros) calls them unconditionally. Nothing else in the project branches on Citus.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from datetime import date, timedelta

import psycopg
from psycopg import sql

from ingestion import roles
from ingestion.contract import MAX_LATENESS
from ingestion.erasure import ERASURES_SQL
from ingestion.settings import Settings

# The youngest partitions that may become columnar: the contract accepts events up to
# MAX_LATENESS older than their arrival, and a new row cannot enter a columnar partition (see
# retrolytics.columnar_after). The extra day covers a loader that is a day behind.
COLUMNAR_MIN_AGE = MAX_LATENESS + timedelta(days=1)

# A day's partition gets its GIN route index (the hierarchy's trigrams) only once the day ended
# this long ago. The route indexes made a plain COPY of 1M events 2.9 times slower, and the trigram
# index is 204 of their 232 MiB (benchmarks/RESULTS.md section 1); without it on the days being
# loaded, the p99 delay to visible at 20k events/s fell by a fifth (section 2). So the partitions
# the loader fills now go without it, and `index_cooled_partitions` (`retrolytics maintain`;
# Dagster: the daily maintain_raw_events job) builds it once they have cooled, concurrently, so
# that a late event for that day is not held up. Queries are correct either way: a day without the
# index is read by a scan. Nothing builds it if nothing runs maintain.
GIN_AFTER = timedelta(days=1)

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

-- Whether a table's planner statistics are missing or stale: never analyzed, or grown by more
-- than a tenth since its last ANALYZE or VACUUM counted its pages (autovacuum's own threshold for
-- an analyze). Always on Citus: the coordinator's table holds no rows to measure.
create or replace function retrolytics.statistics_stale(relation regclass) returns boolean
language sql stable as $$
    select retrolytics.citus_enabled()
        or reltuples < 0
        or pg_relation_size(oid) > 1.1 * relpages * current_setting('block_size')::bigint
    from pg_class
    where oid = relation
$$;

-- Citus columnar storage for the partitions of raw.events that ended before now() - age,
-- converted one by one, each in its own transaction; returns their names. A no-op without Citus.
-- A columnar table cannot take NEW rows through INSERT ... ON CONFLICT (Citus issue 6298:
-- "columnar_tuple_insert_speculative not implemented"; a duplicate is still skipped), so the
-- loader's batch would fail on a late event for such a day: callers keep age beyond the
-- loader's lateness bound (ingestion.schema.COLUMNAR_MIN_AGE). Call it outside a transaction.
create or replace procedure retrolytics.columnar_after(
    age interval,
    inout converted text[] default null
) language plpgsql as $$
declare
    old_partition record;
begin
    converted := '{}';
    if not retrolytics.citus_enabled() then
        return;
    end if;
    create extension if not exists citus_columnar;
    for old_partition in
        select partition::text as name
        from pg_catalog.time_partitions
        where parent_table = 'raw.events'::regclass
          and access_method is distinct from 'columnar'
          and to_value::timestamptz <= now() - age
        order by to_value::timestamptz
    loop
        perform raw.drop_gin_route_indexes(old_partition.name::regclass);
        perform alter_table_set_access_method(old_partition.name::regclass, 'columnar');
        converted := converted || old_partition.name;
        commit;
    end loop;
end $$;
"""

# The indexes defined_events finds a condition's events by (routed_matches in
# dbt_project/macros/condition_matches.sql), so that a new definition reads only the events that
# can match it instead of all history: a literal its selector needs (trigrams of the hierarchy),
# the exact path, the custom event's name, the type. They live here, not in dbt: only the owner of
# raw.events may index it. pg_trgm ships with PostgreSQL and is a trusted extension (13+): the
# database's owner creates it without being a superuser. On Citus each shard gets the indexes.
#
# Each day's partition gets its own (raw.create_route_indexes), named after it
# (events_20261130_hierarchy_trigrams), rather than raw.events one partitioned index: Citus turns
# old partitions columnar (retrolytics.columnar_after), which drops and re-creates a partition's
# indexes, and an index attached to a partitioned one cannot be dropped; nor can a columnar table
# hold a GIN index, so a columnar partition keeps only the btree ones.
ROUTE_INDEXES = {
    "events_hierarchy_trigrams": "using gin (hierarchy retrolytics.gin_trgm_ops)",
    "events_page_path": "(page_path)",
    "events_custom_name": "(name) where name is not null",
    "events_type": "(type)",
}
GIN_ROUTE_INDEXES = tuple(
    name for name, how in ROUTE_INDEXES.items() if how.startswith("using gin")
)


def _suffix(route_index: str) -> str:
    """What a partition's name takes to name its copy of a route index: `_hierarchy_trigrams`."""
    return route_index.removeprefix("events")


def route_index_name(partition: str, route_index: str) -> str:
    """The name of ``partition``'s copy of ``route_index``: events_20261130_hierarchy_trigrams."""
    return partition + _suffix(route_index)


def _create_route_index_sql(name: str, how: str) -> str:
    """plpgsql: create route index ``name`` on ``partition`` (GIN only where ``takes_gin``)."""
    create = (
        f"execute format('create index if not exists %I on %s {how.replace('%', '%%')}', "
        f"partition_name || {_suffix(name)!r}, partition);"
    )
    return (
        f"    if takes_gin then\n        {create}\n    end if;"
        if name in GIN_ROUTE_INDEXES
        else f"    {create}"
    )


_DROP_GIN_ROUTE_INDEXES_SQL = "\n".join(
    f"    execute format('drop index if exists raw.%I', partition_name || {_suffix(name)!r});"
    for name in GIN_ROUTE_INDEXES
)

ROUTE_INDEXES_SQL = f"""
create extension if not exists pg_trgm with schema retrolytics;

-- Has the day of this partition of raw.events ended more than GIN_AFTER ago (ingestion/schema.py)?
-- A partition named otherwise than events_YYYYMMDD counts as cooled.
create or replace function raw.partition_cooled(partition regclass) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select case
        when relname ~ '^events_[0-9]{{8}}$'
            then (to_date(right(relname, 8), 'YYYYMMDD') + 1)::timestamp at time zone 'UTC'
                 <= now() - interval '{GIN_AFTER.days} days'
        else true
    end
    from pg_class where oid = partition
$$;

-- The route indexes (ingestion/schema.py, ROUTE_INDEXES) of one partition of raw.events; the GIN
-- ones only if `gin`, on a row-based partition that has cooled (GIN_AFTER).
drop function if exists raw.create_route_indexes(regclass);  -- before `gin`
create or replace function raw.create_route_indexes(partition regclass, gin boolean default true)
returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    partition_name text := (select relname from pg_class where oid = partition);
    takes_gin boolean := (
        select gin and coalesce(am.amname <> 'columnar', true) and raw.partition_cooled(partition)
        from pg_class c left join pg_am am on am.oid = c.relam where c.oid = partition
    );
begin
{chr(10).join(_create_route_index_sql(name, how) for name, how in ROUTE_INDEXES.items())}
end $$;

-- Before a partition turns columnar: a columnar table cannot hold a GIN index.
create or replace function raw.drop_gin_route_indexes(partition regclass) returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    partition_name text := (select relname from pg_class where oid = partition);
begin
{_DROP_GIN_ROUTE_INDEXES_SQL}
end $$;
"""
# Each a statement of its own: Citus (13.2) sends an index command on a distributed table to the
# workers with the client's whole query string, which fails there when it holds several commands.
_ROUTE_INDEX_STATEMENTS = (
    # Databases built before the indexes were per partition have them on raw.events. The GIN
    # ones are left to index_cooled_partitions: a build of every partition's, inside the
    # bootstrap's transaction, would hold up the loader.
    *(f"drop index if exists raw.{name}" for name in ROUTE_INDEXES),
    "select raw.create_route_indexes(inhrelid::regclass, gin => false) from pg_inherits "
    "where inhparent = 'raw.events'::regclass",
)

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

-- The loader adds a day's partition when its first event arrives, but only the owner of
-- raw.events may: this function lends the owner's right for exactly that (roles.GRANTS_SQL).
create or replace function raw.create_day_partitions(days date[]) returns date[]
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    day date;
    name text;
    created date[] := '{}';
begin
    perform pg_advisory_xact_lock(7264112001);  -- _BOOTSTRAP_LOCK: one creator at a time
    foreach day in array days loop
        name := 'events_' || to_char(day, 'YYYYMMDD');
        if to_regclass(format('raw.%I', name)) is null then
            execute format(
                'create table raw.%I partition of raw.events for values from (%L) to (%L)',
                name, day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00'
            );
            perform raw.create_route_indexes(format('raw.%I', name)::regclass);
            created := created || day;
        end if;
    end loop;
    return created;
end $$;

-- One row per distinct User-Agent header, parsed by the loader (ingestion/user_agents.py). The
-- key is md5(user_agent)::uuid: a header may be longer than a btree entry can hold.
create table if not exists raw.user_agents (
    user_agent_md5  uuid        primary key,
    user_agent      text        not null,
    browser_family  text,
    browser_version text,
    os_family       text,
    os_version      text,
    device_family   text,
    device_brand    text,
    device_model    text,
    is_bot          boolean     not null,
    parser          text        not null,
    parsed_at       timestamptz not null default now()
);

select retrolytics.distribute('raw.events');
select retrolytics.make_reference('raw.dead_letters');
select retrolytics.make_reference('raw.user_agents');

-- raw.ingest_offsets stays a plain table on the coordinator, also on Citus: only the loader
-- reads it, through the coordinator, and its rows commit with the batch's rows in the same
-- distributed transaction (Citus' two-phase commit is decided by the coordinator's own commit).
-- As a reference table every offset update would go to every node, and Citus refuses the
-- loader's `on conflict ... do update set updated_at = now()` there (DO UPDATE SET functions
-- must be IMMUTABLE on distributed and reference tables).
"""

_BOOTSTRAP_LOCK = 7_264_112_001  # an arbitrary advisory-lock key owned by this bootstrap
# Changes whenever the bootstrap's SQL does, so a database built by an older version is updated.
SCHEMA_VERSION = hashlib.sha256(
    (
        CITUS_SWITCH_SQL
        + RAW_SCHEMA_SQL
        + ROUTE_INDEXES_SQL
        + ";".join(_ROUTE_INDEX_STATEMENTS)
        + ERASURES_SQL
        + roles.GRANTS_SQL
    ).encode()
).hexdigest()[:16]
_VERSION_SQL = f"""
create or replace function retrolytics.schema_version() returns text
language sql immutable as $$ select '{SCHEMA_VERSION}'::text $$;
"""


class SchemaNotReady(RuntimeError):
    """The raw schema is missing or outdated and this role may not create it."""


def bootstrap(conn: psycopg.Connection) -> None:
    """Create the switch functions, the raw schema and the grants to the job roles; safe to run
    any number of times. Needs the rights of the database's owner."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_BOOTSTRAP_LOCK,))
        conn.execute(CITUS_SWITCH_SQL)
        conn.execute(RAW_SCHEMA_SQL)
        conn.execute(ROUTE_INDEXES_SQL)
        for statement in _ROUTE_INDEX_STATEMENTS:
            conn.execute(statement)
        conn.execute(ERASURES_SQL)
        conn.execute(roles.GRANTS_SQL)
        conn.execute(_VERSION_SQL)


def ensure_ready(conn: psycopg.Connection) -> None:
    """Bootstrap unless the database already has this version of the raw schema.

    A role that may only load (the loader's) cannot bootstrap; it gets a clear error instead.
    """
    exists = conn.execute(
        "select to_regprocedure('retrolytics.schema_version()') is not null"
    ).fetchone()[0]
    if exists and conn.execute("select retrolytics.schema_version()").fetchone()[0] == (
        SCHEMA_VERSION
    ):
        return
    try:
        bootstrap(conn)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise SchemaNotReady(
            f"the raw schema of database {conn.info.dbname!r} is missing or older than this "
            f"version, and role {conn.info.user!r} may not create it ({exc.diag.message_primary}); "
            "run the bootstrap as the database's owner: `retrolytics stack up` on the local "
            "stack, or `retrolytics bootstrap` with RETROLYTICS_DATABASE_URL set to the owner"
        ) from None


def partition_name(day: date) -> str:
    return f"events_{day:%Y%m%d}"


def ensure_partitions(conn: psycopg.Connection, days: Iterable[date]) -> list[date]:
    """Create the daily partitions of raw.events that are missing; return the days created.

    Runs in its own transaction before a batch is written: a new partition is harmless if the
    batch then fails, and Citus prefers DDL outside the transaction that writes. The loader's
    role does not own raw.events, so the creation goes through ``raw.create_day_partitions``.
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
    if not missing:
        return []
    with conn.transaction():
        row = conn.execute("select raw.create_day_partitions(%s::date[])", (missing,)).fetchone()
    return list(row[0])


def _check_columnar_age(older_than: timedelta) -> None:
    if older_than < COLUMNAR_MIN_AGE:
        raise ValueError(
            f"partitions younger than {COLUMNAR_MIN_AGE.days} days must stay row-based (asked "
            f"for {older_than.days} days): the loader still accepts events up to "
            f"{MAX_LATENESS.days} days late, and a columnar partition cannot take new rows"
        )


def convert_old_partitions_to_columnar(
    conn: psycopg.Connection, older_than: timedelta
) -> list[str]:
    """Move the partitions of raw.events that ended more than ``older_than`` ago to Citus
    columnar storage; returns the partitions converted now (none without Citus).

    ``conn`` must be in autocommit mode: every partition is converted in its own transaction.
    """
    _check_columnar_age(older_than)
    bootstrap(conn)  # the procedure is current, whatever version created the database
    row = conn.execute("call retrolytics.columnar_after(%s)", (older_than,)).fetchone()
    return list(row[0]) if row else []


# The GIN route indexes missing, or left invalid by a failed concurrent build, on the row-based
# partitions of raw.events that have cooled (GIN_AFTER).
_MISSING_GIN_ROUTE_INDEXES_SQL = """
select c.relname as partition, wanted.route_index, index.indisvalid is false as invalid
from pg_inherits as inherits
join pg_class as c on c.oid = inherits.inhrelid
join pg_am as am on am.oid = c.relam
cross join unnest(%s::text[], %s::text[]) as wanted (route_index, suffix)
left join pg_class as existing
    on existing.relnamespace = c.relnamespace
    and existing.relname = c.relname || wanted.suffix
left join pg_index as index on index.indexrelid = existing.oid
where inherits.inhparent = 'raw.events'::regclass
  and am.amname = 'heap'
  and raw.partition_cooled(c.oid::regclass)
  and (existing.oid is null or not index.indisvalid)
order by c.relname
"""
_INDEXING_LOCK = 7_264_112_002  # one index_cooled_partitions at a time (maintain, Dagster)


def index_cooled_partitions(conn: psycopg.Connection) -> list[str]:
    """Build the GIN route indexes of the partitions that have cooled since the loader created
    them (GIN_AFTER); returns those partitions.

    ``conn`` (autocommit, the owner of raw.events) builds each with CREATE INDEX CONCURRENTLY:
    the loader goes on writing, late events for that day included.
    """
    ensure_ready(conn)
    conn.execute("select pg_advisory_lock(%s)", (_INDEXING_LOCK,))
    try:
        suffixes = [_suffix(name) for name in GIN_ROUTE_INDEXES]
        missing = conn.execute(
            _MISSING_GIN_ROUTE_INDEXES_SQL, (list(GIN_ROUTE_INDEXES), suffixes)
        ).fetchall()
        for partition, route_index, invalid in missing:
            name = sql.Identifier("raw", route_index_name(partition, route_index))
            if invalid:
                conn.execute(sql.SQL("drop index concurrently if exists {}").format(name))
            conn.execute(
                sql.SQL("create index concurrently if not exists {} on {} {}").format(
                    sql.Identifier(route_index_name(partition, route_index)),
                    sql.Identifier("raw", partition),
                    sql.SQL(ROUTE_INDEXES[route_index]),
                )
            )
        return sorted({f"raw.{partition}" for partition, _, _ in missing})
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (_INDEXING_LOCK,))


def maintain(settings: Settings, *, columnar_after_days: int | None = None) -> int:
    """The ``retrolytics maintain`` command: on Citus, old partitions to columnar storage (when
    asked); then the GIN route indexes of the partitions that have cooled."""
    older_than = None if columnar_after_days is None else timedelta(days=columnar_after_days)
    if older_than is not None:
        try:
            _check_columnar_age(older_than)
        except ValueError as exc:
            print(f"retrolytics maintain: --columnar-after-days: {exc}", file=sys.stderr)
            return 2
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        if older_than is not None:
            _report_columnar(conn, older_than)
        indexed = index_cooled_partitions(conn)
    if indexed:
        print(f"built the GIN route indexes of {len(indexed)} partitions: {', '.join(indexed)}")
    else:
        print("every partition that has cooled already has its GIN route indexes")
    return 0


def _report_columnar(conn: psycopg.Connection, older_than: timedelta) -> None:
    converted = convert_old_partitions_to_columnar(conn, older_than)
    citus = conn.execute("select retrolytics.citus_enabled()").fetchone()
    if not (citus and citus[0]):
        print("no citus extension in this database: every partition stays row-based")
    elif converted:
        print(f"moved {len(converted)} partitions to columnar storage: {', '.join(converted)}")
    else:
        print(f"no row-based partition of raw.events ended more than {older_than.days} days ago")
