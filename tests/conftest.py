"""Shared fixtures: one real local stack per test session, a fresh database and topic per test.

Integration tests start PostgreSQL and Kafka through the same code users run
(``ingestion.stack.up``), so a green suite says the stack works on this machine.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

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


def _fresh_topic(bootstrap: str) -> Iterator[str]:
    name = f"test.events.{uuid.uuid4().hex[:12]}"
    ensure_topic(bootstrap, name)
    yield name
    delete_topic(bootstrap, name)


@pytest.fixture
def topic(stack) -> Iterator[str]:
    yield from _fresh_topic(stack.kafka_bootstrap)


@pytest.fixture
def settings(stack, database_url: str, topic: str) -> Settings:
    return Settings(
        database_url=database_url,
        kafka_bootstrap=stack.kafka_bootstrap,
        topic=topic,
        consumer_group=f"test-loader-{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture(scope="session")
def prepared_dbt_project() -> Path:
    """The code location's build-time step, once per session: the declarations compiled into the
    seeds and the dbt manifest parsed (``orchestration.project.prepare``); returns the manifest."""
    from ingestion.stack.layout import exclusive
    from orchestration.project import dbt_project, prepare, require_manifest

    # Under pytest-xdist the first worker prepares and the others wait for it, then read what it
    # wrote: a second prepare would rewrite the manifest while the first worker's tests read it.
    target = dbt_project.project_dir / "target"
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    prepared_by = target / "prepared_by_test_run"
    with exclusive(target / "prepare.lock"):
        if run and prepared_by.is_file() and prepared_by.read_text() == run:
            return require_manifest(dbt_project.manifest_path)
        manifest = prepare()
        if run:
            prepared_by.write_text(run)
        return manifest


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    """An empty Dagster instance folder whose SQLite storage already exists.

    Two Dagster processes that create that storage at the same moment race on its tables
    ("table runs already exists"), so tests that start several processes create it first.
    """
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs()
    return home


# -- Citus: tests marked `citus` run on a local coordinator with two workers ---------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the citus extension (as on CI machines) `citus` tests skip, saying why.

    Only tests in a module about Citus may carry the mark: anywhere else it would skip a
    single-node test on CI (re-marking an imported test function once did exactly that).
    """
    marked = [item for item in items if item.get_closest_marker("citus")]
    misplaced = [item.nodeid for item in marked if "citus" not in item.path.name]
    if misplaced:
        raise pytest.UsageError(
            "tests outside a Citus module carry the `citus` mark, so CI would skip them: "
            + ", ".join(misplaced)
        )
    if not marked:
        return
    from ingestion.stack import citus as citus_nodes

    reason = citus_nodes.absence_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"{reason}; `citus` tests need a local Citus")
    for item in marked:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def citus_stack():  # -> ingestion.stack.CitusStackInfo
    """A coordinator and two workers, started by the code behind `retrolytics stack up --citus`."""
    from ingestion import stack as local_stack
    from ingestion.stack import citus as citus_nodes

    reason = citus_nodes.absence_reason()
    if reason is not None:
        pytest.skip(reason)
    return local_stack.up(citus=True)


@pytest.fixture
def citus_database_url(citus_stack) -> Iterator[str]:
    """A new Citus database (on every node, extension created, workers registered)."""
    from ingestion.stack import citus as citus_nodes

    name = f"rt_{uuid.uuid4().hex[:12]}"
    citus_nodes.prepare_database(citus_stack.cluster, name)
    yield _with_database(citus_stack.database_url, name)
    citus_nodes.drop_database(citus_stack.cluster, name)


@pytest.fixture
def citus_raw_db(citus_database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the coordinator of a fresh, bootstrapped Citus database."""
    with psycopg.connect(citus_database_url, autocommit=True) as conn:
        schema.bootstrap(conn)
        yield conn


@pytest.fixture
def citus_topic(citus_stack) -> Iterator[str]:
    yield from _fresh_topic(citus_stack.kafka_bootstrap)


@pytest.fixture
def citus_settings(citus_stack, citus_database_url: str, citus_topic: str) -> Settings:
    return Settings(
        database_url=citus_database_url,
        kafka_bootstrap=citus_stack.kafka_bootstrap,
        topic=citus_topic,
        consumer_group=f"test-loader-{uuid.uuid4().hex[:8]}",
    )
