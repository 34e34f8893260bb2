"""Database roles: each process gets the privileges its job needs, none is a superuser.

- ``retrolytics_loader`` (``retrolytics load``): insert into ``raw``, move its offsets, add daily
  partitions (through ``raw.create_day_partitions``), read the erasure list; nothing else.
- ``retrolytics_transform`` (dbt: ``retrolytics dbt``, Dagster): read ``raw``, create and own the
  schemas dbt builds.
- ``retrolytics_bi`` (BI tools): read ``marts`` (granted by dbt's ``create_bi_role``).

The owner of the database (``retrolytics`` on the local stack) runs the bootstrap
(``ingestion.schema``), which grants these groups their privileges in that database. A login
gets a job by membership, e.g. ``create role loader login password '…' in role
retrolytics_loader``; the local stack makes one login per group (``ingestion.stack``).
"""

from __future__ import annotations

LOADER = "retrolytics_loader"
TRANSFORM = "retrolytics_transform"
BI = "retrolytics_bi"
GROUPS = (LOADER, TRANSFORM, BI)

# Run by the bootstrap as the database's owner, after the raw schema exists. A group that does
# not exist in this cluster is skipped: a single-role deployment still works.
GRANTS_SQL = f"""
do $grants$
begin
    if exists (select 1 from pg_roles where rolname = '{LOADER}') then
        grant usage on schema raw, retrolytics to {LOADER};
        grant select, insert on raw.events, raw.dead_letters, raw.user_agents to {LOADER};
        grant select, insert, update on raw.ingest_offsets to {LOADER};
        grant select on raw.erasures to {LOADER};
        grant execute on function raw.create_day_partitions(date[]) to {LOADER};
        execute format('grant connect, temporary on database %I to {LOADER}', current_database());
    end if;
    if exists (select 1 from pg_roles where rolname = '{TRANSFORM}') then
        grant usage on schema raw, retrolytics to {TRANSFORM};
        grant select on all tables in schema raw to {TRANSFORM};
        execute format(
            'grant connect, temporary, create on database %I to {TRANSFORM}', current_database()
        );
    end if;
    if exists (select 1 from pg_roles where rolname = '{BI}') then
        execute format('grant connect on database %I to {BI}', current_database());
    end if;
end
$grants$;
-- Nobody else: PUBLIC may not execute the partition maker nor the route indexes' (they run with
-- the owner's rights).
revoke execute on function raw.create_day_partitions(date[]) from public;
revoke execute on function raw.create_route_indexes(regclass, boolean) from public;
revoke execute on function raw.drop_gin_route_indexes(regclass) from public;
"""
