"""Running the dbt project from Python: compile the definitions seed first, then dbt in-process.

Every entry point (the CLI, the demo, tests, Dagster) goes through ``compile_seed`` before dbt
runs, so the ``event_definitions`` seed always matches ``definitions/events``. Plain dbt users
run ``retrolytics definitions compile && dbt build --project-dir dbt_project --profiles-dir
dbt_project`` with ``RETROLYTICS_DATABASE_URL`` set.

dbt reads its connection from ``RETROLYTICS_DATABASE_URL`` alone (``dbt_project/profiles.yml``);
this module sets it for the run, from the caller's URL (any libpq form: a URL or ``key=value``
words) or the local stack's settings.

Every dbt session carries a ``statement_timeout`` (``RETROLYTICS_DBT_STATEMENT_TIMEOUT``, default
30 minutes), so one pathological row or definition cannot hold a run forever. dbt-postgres has no
profile field for session settings, so it travels as libpq's ``PGOPTIONS``, which psycopg2 reads
when it connects (the profile must not set ``search_path``: dbt-postgres would then pass its own
``options``, and libpq ignores ``PGOPTIONS``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

from ingestion.settings import PROJECT_ROOT
from retrolytics.language.check import KINDS, load_catalog

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
DEFINITIONS_DIR = PROJECT_ROOT / "definitions"
SEED_RELATIVE_PATH = Path("seeds") / "event_definitions.csv"
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,40}")
STATEMENT_TIMEOUT_SETTING = "RETROLYTICS_DBT_STATEMENT_TIMEOUT"
DEFAULT_STATEMENT_TIMEOUT = "30min"  # long full builds pass; a runaway statement does not
_DURATION = re.compile(r"[0-9]+(?:us|ms|s|min|h|d)?")  # PostgreSQL's units; a bare number is ms


class DbtFailed(RuntimeError):
    """dbt ran and reported failure (a model, a test, or dbt itself)."""


@dataclass(frozen=True)
class CompiledSeed:
    path: Path  # the event_definitions seed
    definitions: int
    conditions: int
    paths: tuple[Path, ...] = ()  # every seed written, of every declaration kind


def compile_seed(
    definitions_dir: Path = DEFINITIONS_DIR, project_dir: Path = DBT_PROJECT_DIR
) -> CompiledSeed:
    """Validate the declarations and write the seeds of every kind; raises
    ``DefinitionsInvalid`` listing ``file:line: problem`` when any declaration is bad.

    A file is only rewritten when its content changes, so dbt's state comparison (and its
    partial parsing) sees a change exactly when a declaration changed.
    """
    catalog = load_catalog(definitions_dir)
    seed_dir = project_dir / SEED_RELATIVE_PATH.parent
    seed_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        if kind.seeds is None:
            continue
        for name, text in kind.seeds(catalog).items():
            path = seed_dir / name
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
            written.append(path)
    conditions = sum(len(d.conditions) for d in catalog.event_definitions)
    return CompiledSeed(
        project_dir / SEED_RELATIVE_PATH,
        len(catalog.event_definitions),
        conditions,
        tuple(written),
    )


def database_url_for_dbt(conninfo: str) -> tuple[str, str | None]:
    """A ``postgresql://`` URL the profile's Jinja can split, and the password kept apart.

    The profile cannot undo %-escaping, so the password travels in
    ``RETROLYTICS_DATABASE_PASSWORD`` instead of inside the URL.
    """
    parts = conninfo_to_dict(conninfo)
    user = parts.get("user") or ""
    host = parts.get("host") or "127.0.0.1"
    port = parts.get("port") or "5432"
    database = parts.get("dbname") or user or "postgres"
    if "," in host or host.startswith("/"):
        raise ValueError(
            f"dbt needs one TCP host in RETROLYTICS_DATABASE_URL, not {host!r} (a socket "
            "directory or a host list)"
        )
    auth = f"{quote(user, safe='')}@" if user else ""
    url = f"postgresql://{auth}{host}:{port}/{quote(database, safe='')}"
    return url, parts.get("password")


@contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def statement_timeout() -> str:
    """The ``statement_timeout`` of dbt's sessions, from ``RETROLYTICS_DBT_STATEMENT_TIMEOUT``."""
    value = os.environ.get(STATEMENT_TIMEOUT_SETTING, "").strip() or DEFAULT_STATEMENT_TIMEOUT
    if not _DURATION.fullmatch(value):
        raise ValueError(
            f"{STATEMENT_TIMEOUT_SETTING} must be a PostgreSQL duration such as 30min, 90s, "
            f"2h or 0 (no limit), not {value!r}"
        )
    return value


def session_options(timeout: str) -> str:
    """libpq's ``PGOPTIONS`` for dbt's sessions: the caller's own options, then the timeout."""
    own = os.environ.get("PGOPTIONS", "")
    return f"{own} -c statement_timeout={timeout}".strip()


def dbt_environment(
    database_url: str, *, target: str = "default", scratch_schema: str | None = None
) -> dict[str, str | None]:
    url, password = database_url_for_dbt(database_url)
    if scratch_schema is not None and not SCHEMA_NAME.fullmatch(scratch_schema):
        raise ValueError(
            f"the scratch schema {scratch_schema!r} must be lower-case letters, digits and "
            "underscores, starting with a letter or underscore, at most 41 characters"
        )
    return {
        "RETROLYTICS_DATABASE_URL": url,
        "RETROLYTICS_DATABASE_PASSWORD": password,
        "RETROLYTICS_DBT_TARGET": target,
        "RETROLYTICS_DBT_SCRATCH_SCHEMA": scratch_schema,
        "PGOPTIONS": session_options(statement_timeout()),
    }


def run_dbt(
    args: Sequence[str],
    *,
    database_url: str,
    project_dir: Path = DBT_PROJECT_DIR,
    target: str = "default",
    scratch_schema: str | None = None,
    target_path: Path | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
    check: bool = True,
) -> Any:
    """Run one dbt command in this process; returns dbt's ``dbtRunnerResult``.

    ``args`` is the command and its own options (``["build", "--select", "x"]``); project,
    profiles, target path and vars are added here. Raises ``DbtFailed`` when ``check`` and the
    command did not succeed.
    """
    from dbt.cli.main import dbtRunner

    command = [*args, "--project-dir", str(project_dir), "--profiles-dir", str(project_dir)]
    if target_path is not None:
        command += ["--target-path", str(target_path)]
    if dbt_vars:
        import json

        command += ["--vars", json.dumps(dict(dbt_vars))]
    environment = dbt_environment(database_url, target=target, scratch_schema=scratch_schema)
    with _environment(environment):
        result = dbtRunner().invoke(command)
    if check and not result.success:
        raise DbtFailed(_failure_summary(args, result))
    return result


def _failure_summary(args: Sequence[str], result: Any) -> str:
    lines = [f"dbt {' '.join(args)} failed"]
    if result.exception is not None:
        lines.append(f"  {result.exception}")
    for node in getattr(result.result, "results", None) or []:
        status = str(getattr(node, "status", ""))
        if status in ("error", "fail"):
            lines.append(f"  {status}: {node.node.unique_id}: {node.message}")
    if any("statement timeout" in line for line in lines):
        lines.append(
            f"  a statement ran longer than {STATEMENT_TIMEOUT_SETTING}="
            f"{statement_timeout()}; raise it if the run is legitimately that long"
        )
    return "\n".join(lines)
