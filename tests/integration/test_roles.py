"""Least privilege on the local stack: each job's login can do its job and nothing more, no
login is a superuser, and loopback connections must prove a password (scram)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from ingestion import schema
from ingestion.loader import Loader
from ingestion.settings import Settings
from retrolytics.language.seeds import compile_seed
from retrolytics.warehouse import runner
from tests.support.factories import BASE_TIME, click_event, iso, many_events, produce
from tests.support.loading import drain, produce_events
from tests.support.warehouse import copy_project, load_traffic

pytestmark = pytest.mark.integration


def in_database(login_url: str, database_url: str) -> str:
    """``login_url``'s login and password, in the database of ``database_url``."""
    database = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    return psycopg.conninfo.make_conninfo(login_url, dbname=database)


def refused(url: str, statement: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return True
    return False


def test_no_login_is_a_superuser(stack) -> None:
    urls = [
        stack.database_url,
        stack.loader_database_url,
        stack.dbt_database_url,
        stack.bi_database_url,
    ]
    for url in urls:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "select rolname, rolsuper, rolcreaterole from pg_roles where rolname = current_user"
            ).fetchone()
        assert row[1:] == (False, False), row


@pytest.mark.parametrize("password", [None, "wrong"], ids=["no password", "a wrong one"])
@pytest.mark.parametrize("login", ["retrolytics", "postgres", "loader"])
def test_loopback_connections_need_the_password(stack, login: str, password: str | None) -> None:
    url = psycopg.conninfo.make_conninfo(stack.database_url, user=login, password=password or "")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(url, connect_timeout=10).close()


def test_the_loader_login_loads_and_may_do_nothing_else(
    stack, raw_db: psycopg.Connection, settings: Settings
) -> None:
    as_loader = in_database(stack.loader_database_url, settings.database_url)
    late = click_event(occurred_at=iso(BASE_TIME.replace(day=1)), received_at=iso(BASE_TIME))
    produce_events(settings, [*many_events(200), late])
    produce(settings.kafka_bootstrap, settings.topic, [b'{"type": "not an event"}'])

    stats = drain(replace(settings, loader_database_url=as_loader))

    assert (stats.loaded, stats.dead_letters) == (201, 1)  # a new day's partition, a dead letter
    for statement in (
        "delete from raw.events",
        "update raw.events set name = 'x'",
        "truncate raw.dead_letters",
        "drop table raw.ingest_offsets",
        "create table raw.mine (x int)",
        "create schema mine",
        "alter table raw.events add column x int",
    ):
        assert refused(as_loader, statement), statement


def test_the_partition_maker_is_the_loaders_alone(stack, raw_db: psycopg.Connection) -> None:
    database_url = raw_db.info.dsn
    as_bi = in_database(stack.bi_database_url, database_url)
    assert refused(as_bi, "select raw.create_day_partitions(array[date '2020-01-01'])")


def test_only_the_partition_maker_indexes_partitions(stack, raw_db: psycopg.Connection) -> None:
    database_url = raw_db.info.dsn
    raw_db.execute("select raw.create_day_partitions(array[date '2020-01-01'])")
    for login in (stack.bi_database_url, stack.loader_database_url):
        login_here = in_database(login, database_url)
        for function in ("create_route_indexes", "drop_gin_route_indexes"):
            statement = f"select raw.{function}('raw.events_20200101'::regclass)"
            assert refused(login_here, statement), statement
    indexes = {
        name
        for (name,) in raw_db.execute(
            "select indexname from pg_indexes where tablename = 'events_20200101'"
        )
    }
    assert {"events_20200101_hierarchy_trigrams", "events_20200101_type"} <= indexes


def test_the_loader_cannot_create_the_raw_schema_and_says_so(stack, settings: Settings) -> None:
    as_loader = in_database(stack.loader_database_url, settings.database_url)
    with pytest.raises(schema.SchemaNotReady, match="run the bootstrap as the database's owner"):
        Loader(replace(settings, loader_database_url=as_loader)).close()


def test_the_dbt_login_builds_the_models_and_cannot_write_raw(
    stack, database_url: str, tmp_path: Path
) -> None:
    project, definitions = copy_project(tmp_path)
    load_traffic(database_url, count=1000)  # as the owner: bootstrap and raw events
    as_dbt = in_database(stack.dbt_database_url, database_url)
    compile_seed(definitions, project)

    runner.run_dbt(
        ["build", "--select", "+defined_events", "--quiet"],
        database_url=as_dbt,
        project_dir=project,
    )

    with psycopg.connect(as_dbt) as conn:
        assert conn.execute("select count(*) from marts.defined_events").fetchone()[0] > 0
        owners = conn.execute(
            "select distinct tableowner from pg_tables where schemaname in ('staging', 'marts')"
        ).fetchall()
    assert owners == [("dbt",)]
    for statement in (
        "insert into raw.events (event_id) values (gen_random_uuid())",
        "delete from raw.events",
        "update raw.ingest_offsets set next_offset = 0",
        "drop table raw.events",
    ):
        assert refused(as_dbt, statement), statement
