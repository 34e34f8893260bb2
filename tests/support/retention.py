"""Running the retention models on test data and comparing them with the reference.

The declarations are the funnel tests' letter definitions (custom events a, b, c) plus
``tests/retention_definitions/retention``; events go straight into raw.events and dbt runs
in-process on a private copy of the project.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from retrolytics.language.check import load_catalog
from retrolytics.language.retention import Retention
from retrolytics.language.seeds import compile_seed
from retrolytics.semantics.funnels import Event
from retrolytics.semantics.retention import MartRow, data_end_of, retention_mart
from retrolytics.warehouse import runner
from tests.support.funnels import custom_definitions, reference_events
from tests.support.paths import REPO, copy_dbt_project

DEFINITIONS = REPO / "tests" / "retention_definitions"
EVENTS = REPO / "tests" / "funnel_definitions" / "events"
# What events change: every table between raw.events and the mart (not the views and seeds).
TABLES = ["+mart_retention", "--exclude", "config.materialized:view", "resource_type:seed"]
MART_FIELDS = list(MartRow.__dataclass_fields__)


def prepare(tmp: Path) -> tuple[Path, list[Retention]]:
    """A project copy with the test declarations compiled into its seeds; the retentions."""
    definitions = tmp / "definitions"
    shutil.copytree(EVENTS, definitions / "events")
    shutil.copytree(DEFINITIONS / "retention", definitions / "retention")
    project = copy_dbt_project(tmp / "dbt_project")
    compile_seed(definitions, project)
    return project, load_catalog(definitions).declarations["retention"]


def seed(project: Path, database_url: str) -> None:
    """Parse the project and load its seeds (the declarations): what every example shares."""
    runner.run_dbt(["seed", "--quiet"], database_url=database_url, project_dir=project, window={})


def run(project: Path, database_url: str, **window: Any) -> None:
    """``dbt run`` over this window of the tables events change; without a window (all
    history), of the views the retention models read too."""
    selection = TABLES if window else ["+mart_retention"]
    args = ["run", "--select", *selection, "--quiet"]
    runner.run_dbt(args, database_url=database_url, project_dir=project, window=window)


def sql_mart(database_url: str) -> dict[tuple, dict]:
    with psycopg.connect(database_url) as conn:
        rows = conn.cursor(row_factory=dict_row).execute(
            f"select {', '.join(MART_FIELDS)} from marts.mart_retention"
        )
        return {_key(r): r for r in rows}


def reference_mart(declared: Sequence[Retention], documents: list[dict]) -> dict[tuple, dict]:
    events: list[Event] = reference_events(documents, custom_definitions)
    data_end = data_end_of(declared, events)
    mart = {}
    for retention in declared:
        for row in retention_mart(retention, events, data_end):
            mart[_key(asdict(row))] = asdict(row)
    return mart


def _key(row: dict) -> tuple:
    return (
        row["retention_name"],
        row["cohort_period"],
        row["breakdown_value"],
        row["period_offset"],
    )


def event(device: str, moment: datetime, kind: str, **extra: Any) -> dict:
    """A contract event: ``kind`` is a custom event's name, or ``identify``."""
    document: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": "identify" if kind == "identify" else "custom",
        "occurred_at": moment.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "anonymous_id": device,
        **extra,
    }
    if kind != "identify":
        document["name"] = kind
    return document


def truncate_events(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("truncate raw.events")
