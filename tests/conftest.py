"""Shared fixtures: one real local stack per test session, a fresh database and topic per test.

Integration tests start PostgreSQL and Kafka through the same code users run
(``ingestion.stack.up``), so a green suite says the stack works on this machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from ingestion import schema
from ingestion.settings import Settings
from ingestion.topics import delete_topic, ensure_topic


@pytest.fixture(scope="session")
def stack():  # -> ingestion.stack.StackInfo
    from ingestion import stack as local_stack

    return local_stack.up()


def _with_database(url: str, database: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=database)


@pytest.fixture
def database_url(stack) -> Iterator[str]:
    """A new, empty database on the local stack, dropped after the test."""
    name = f"rt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(stack.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    yield _with_database(stack.database_url, name)
    with psycopg.connect(stack.database_url, autocommit=True) as admin:
        drop = sql.SQL("drop database if exists {} with (force)")
        admin.execute(drop.format(sql.Identifier(name)))


@pytest.fixture
def raw_db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database whose raw schema is bootstrapped."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        schema.bootstrap(conn)
        yield conn


@pytest.fixture
def topic(stack) -> Iterator[str]:
    name = f"test.events.{uuid.uuid4().hex[:12]}"
    ensure_topic(stack.kafka_bootstrap, name)
    yield name
    delete_topic(stack.kafka_bootstrap, name)


@pytest.fixture
def settings(stack, database_url: str, topic: str) -> Settings:
    return Settings(
        database_url=database_url,
        kafka_bootstrap=stack.kafka_bootstrap,
        topic=topic,
        consumer_group=f"test-loader-{uuid.uuid4().hex[:8]}",
    )
