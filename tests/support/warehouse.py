"""A warehouse of a test's own: a fresh database with generated raw events, and private copies
of the dbt project and the definitions, so tests can edit definitions and build without touching
the checkout."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from demo.traffic import generate_events
from ingestion import loader, schema
from retrolytics.language import events
from retrolytics.language.check import load_catalog
from retrolytics.language.seeds import CompiledSeed, compile_seed
from retrolytics.warehouse import runner
from tests.support.paths import REPO, copy_dbt_project

UNTIL = date(2026, 11, 20)  # generated traffic covers 2026-11-18 .. 2026-11-20 (UTC)
DEFINED_EVENTS = ["--select", "+defined_events"]
WITHOUT_TESTS = ["--exclude", "resource_type:test", "resource_type:unit_test"]


@dataclass
class Warehouse:
    """A database with generated raw events, plus private copies of the project's definitions
    and dbt project, so tests can edit definitions and build without touching the checkout."""

    database_url: str
    project_dir: Path
    definitions_dir: Path

    def compile(self) -> CompiledSeed:
        return compile_seed(self.definitions_dir, self.project_dir)

    def dbt(
        self,
        *args: str,
        window: dict[str, Any] | None = None,
        dbt_vars: dict[str, Any] | None = None,
        check: bool = True,
        target_path: Path | None = None,
    ) -> Any:
        return runner.run_dbt(
            list(args),
            database_url=self.database_url,
            project_dir=self.project_dir,
            window=window,
            dbt_vars=dbt_vars,
            check=check,
            target_path=target_path,
        )

    def derive(self, window: dict[str, Any] | None = None) -> Any:
        """Compile the definitions and bring defined_events up to date (no tests)."""
        self.compile()
        return self.dbt("build", *DEFINED_EVENTS, *WITHOUT_TESTS, window=window)

    def query(self, text: str, params: Any = None) -> list[tuple]:
        """Rows of ``text``; without ``params`` a % in it is a percent sign, not a placeholder."""
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(text, params).fetchall()

    def definition_file(self, name: str) -> Path:
        return self.definitions_dir / "events" / name

    def edit_definitions(self, file: str, old: str, new: str) -> None:
        path = self.definition_file(file)
        text = path.read_text()
        assert old in text, f"{old!r} is not in {file}"
        path.write_text(text.replace(old, new, 1))

    def compiled(self, name: str) -> list[events.CompiledCondition]:
        catalog = load_catalog(self.definitions_dir)
        (definition,) = [d for d in catalog.event_definitions if d.name == name]
        return events.compile_definition(definition)

    def events_matching(self, name: str) -> set[tuple[str, uuid.UUID]]:
        """(definition, event_id) pairs selected by the definition's rendered SQL predicate."""
        predicate = events.definition_predicate(self.compiled(name))
        rows = self.query(f"select event_id from staging.stg_events where {predicate}")
        return {(name, row[0]) for row in rows}

    def defined(self, name: str | None = None) -> set[tuple[str, uuid.UUID]]:
        rows = self.query(
            "select definition_name, event_id from marts.defined_events "
            "where %s::text is null or definition_name = %s",
            (name, name),
        )
        return set(rows)


def copy_project(tmp_path: Path) -> tuple[Path, Path]:
    project = copy_dbt_project(tmp_path / "dbt_project")
    definitions = tmp_path / "definitions"
    shutil.copytree(REPO / "definitions", definitions)
    return project, definitions


def create_database(admin_url: str) -> str:
    name = f"rt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(admin_url, dbname=name)


def drop_database(admin_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def load_traffic(database_url: str, count: int = 3000, seed: int = 7) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        schema.bootstrap(conn)
        return loader.store_events(conn, generate_events(count, 3, seed, until=UNTIL))


def new_warehouse(database_url: str, tmp_path: Path) -> Warehouse:
    project, definitions = copy_project(tmp_path)
    load_traffic(database_url)
    return Warehouse(database_url, project, definitions)


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new bootstrapped database of a test (or of a hypothesis example), dropped afterwards."""
    name = f"rt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            schema.bootstrap(conn)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            drop = sql.SQL("drop database if exists {} with (force)")
            admin.execute(drop.format(sql.Identifier(name)))
