"""Running the path models on test events and comparing them with the reference.

Declarations: the letters definitions of the funnel tests (tests/funnel_definitions/events) and
the path analyses of tests/path_definitions/paths; events are stored straight into raw.events
and dbt runs in-process on a copy of the project.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from retrolytics.language.check import load_catalog
from retrolytics.language.paths import PathDeclaration
from retrolytics.language.seeds import compile_seed
from retrolytics.semantics import paths as reference
from retrolytics.semantics.funnels import Event
from retrolytics.warehouse import runner
from tests.support.funnels import custom_definitions, reference_events
from tests.support.paths import REPO, copy_dbt_project

MODELS = ("+mart_path_edges", "+mart_path_top")
SEGMENT_KEY = ("path_name", "unit_id", "segment_start", "anonymous_id")
SEGMENT_FIELDS = (*SEGMENT_KEY, "segment_end", "event_count", "steps", "step_times")
EDGE_KEY = ("path_name", "step_index", "source", "target")
TOP_KEY = ("path_name", "rank")


def prepare(tmp: Path) -> tuple[Path, list[PathDeclaration], list[str]]:
    """A project copy with the test declarations compiled: (project, paths, definition names)."""
    definitions = tmp / "definitions"
    shutil.copytree(REPO / "tests" / "funnel_definitions" / "events", definitions / "events")
    shutil.copytree(REPO / "tests" / "path_definitions" / "paths", definitions / "paths")
    project = copy_dbt_project(tmp / "dbt_project")
    compile_seed(definitions, project)
    catalog = load_catalog(definitions)
    return project, catalog.paths, [d.name for d in catalog.event_definitions]


def build(
    project: Path,
    database_url: str,
    *,
    full_refresh: bool = False,
    tables_only: bool = False,
    **window: Any,
) -> None:
    """``dbt build`` of the path models and what they read, without data or unit tests. With
    ``tables_only``, not the seeds and views either: a later run over the same declarations,
    where they exist already and read no window (a build costs about half as much)."""
    args = ["build", "--select", *MODELS, "--exclude-resource-type", "test", "unit_test"]
    if tables_only:
        args += ["seed", "--exclude", "config.materialized:view"]
    args.append("--quiet")
    if full_refresh:
        args.append("--full-refresh")
    runner.run_dbt(args, database_url=database_url, project_dir=project, window=window)


def _rows(conn: psycopg.Connection, query: str) -> list[dict]:
    return conn.cursor(row_factory=dict_row).execute(query).fetchall()


def _keyed(rows: Iterable[dict], key: Sequence[str], fields: Sequence[str]) -> dict:
    return {
        tuple(row[k] for k in key): {f: tuple(row[f]) if isinstance(row[f], list | tuple) else
                                     row[f] for f in fields}
        for row in rows
    }  # fmt: skip


def sql_state(database_url: str) -> dict[str, dict]:
    with psycopg.connect(database_url) as conn:
        segments = _rows(conn, "select * from marts.fct_paths")
        edges = _rows(conn, "select * from marts.mart_path_edges")
        top = _rows(conn, "select * from marts.mart_path_top")
    return _state(segments, edges, top)


def _state(segments: Iterable[dict], edges: Iterable[dict], top: Iterable[dict]) -> dict:
    return {
        "fct_paths": _keyed(segments, SEGMENT_KEY, SEGMENT_FIELDS),
        "mart_path_edges": _keyed(
            edges, EDGE_KEY, (*EDGE_KEY, "paths", "units", "median_seconds_between")
        ),
        "mart_path_top": _keyed(top, TOP_KEY, (*TOP_KEY, "steps", "step_count", "paths", "units")),
    }


def events_of(documents: Iterable[dict]) -> list[Event]:
    return reference_events(documents, custom_definitions)


def reference_state(
    declared: Sequence[PathDeclaration], known: Sequence[str], documents: Iterable[dict]
) -> dict[str, dict]:
    events = events_of(documents)
    segments, edges, top = [], [], []
    for declaration in declared:
        rows = reference.segments(declaration, events, known)
        segments += [asdict(r) for r in rows]
        edges += [asdict(e) for e in reference.edges(declaration, rows)]
        top += [
            {**asdict(t), "step_count": t.step_count}
            for t in reference.top_paths(declaration, rows)
        ]
    return _state(segments, edges, top)
