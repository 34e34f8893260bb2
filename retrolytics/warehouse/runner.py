"""The one way to run dbt: every caller (the CLI, the demo, pr-check, Dagster, tests) goes here.

A run (``run_dbt``):

1. holds the warehouse lock (``warehouse_lock``, a PostgreSQL advisory lock in the warehouse's
   database), so that two runs on one warehouse take turns instead of building the same tables
   at once (or writing the seeds another run is loading); a run that waits says so;
2. inside it, compiles the declarations of the configured folder into the project's seeds
   (``retrolytics.language.seeds``), when the caller names that folder;
3. sets the environment ``dbt_project/profiles.yml`` reads: ``RETROLYTICS_DATABASE_URL`` (any
   libpq form in, a URL the profile can split out), the password apart, the target, a
   ``statement_timeout`` for every session, and the run's time window (``window_environment``);
4. runs dbt in this process; dbt reports its progress on stdout as usual.

Dagster runs dbt through dagster-dbt (a subprocess streaming events to the asset graph) but
takes steps 1 to 3 from here. Plain dbt users run ``retrolytics definitions compile && dbt build
--project-dir dbt_project --profiles-dir dbt_project`` with ``RETROLYTICS_DATABASE_URL`` set.

The window (``start``, ``end``, ``lookback_hours``) travels as environment variables, which
``macros/retroactive.sql`` reads when no ``--vars`` are given: dbt parses the whole project again
whenever ``--vars`` change, but re-parses only the models that read an environment variable whose
value changed (0.7 s of parsing instead of 3.5 s on each hourly run: benchmarks/RESULTS.md,
section 8). ``--vars`` still work and win.

The ``statement_timeout`` (``RETROLYTICS_DBT_STATEMENT_TIMEOUT``, default 30 minutes) keeps one
pathological row or definition from holding a run forever. dbt-postgres has no profile field for
session settings, so it travels as libpq's ``PGOPTIONS``, which psycopg2 reads when it connects
(the profile must not set ``search_path``: dbt-postgres would then pass its own ``options``, and
libpq ignores ``PGOPTIONS``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from retrolytics.language.seeds import compile_seed
from retrolytics.warehouse import project

log = logging.getLogger("retrolytics.warehouse")

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,40}")
STATEMENT_TIMEOUT_SETTING = "RETROLYTICS_DBT_STATEMENT_TIMEOUT"
DEFAULT_STATEMENT_TIMEOUT = "30min"  # long full builds pass; a runaway statement does not
_DURATION = re.compile(r"[0-9]+(?:us|ms|s|min|h|d)?")  # PostgreSQL's units; a bare number is ms
WAREHOUSE_LOCK_KEY = 7_264_112_002  # an advisory-lock key of this project's; see warehouse_lock
WAITING_MESSAGE = "another dbt run is using this warehouse; waiting for it to finish"
WINDOW_ENV = {
    "start": "RETROLYTICS_WINDOW_START",
    "end": "RETROLYTICS_WINDOW_END",
    "lookback_hours": "RETROLYTICS_WINDOW_LOOKBACK_HOURS",
}


class DbtFailed(RuntimeError):
    """dbt ran and reported failure (a model, a test, or dbt itself)."""


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
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) variables for the block, then restore them; dbt, in this
    process or a subprocess, reads its settings from the environment."""
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


def window_environment(window: Mapping[str, Any] | None) -> dict[str, str | None]:
    """The environment of a run over ``window`` (``start``, ``end``, optional
    ``lookback_hours``); None or an empty window is all history."""
    window = dict(window or {})
    unknown = sorted(set(window) - WINDOW_ENV.keys())
    if unknown:
        raise ValueError(f"a window has start, end and lookback_hours, not {', '.join(unknown)}")
    return {
        variable: None if window.get(key) is None else str(window[key])
        for key, variable in WINDOW_ENV.items()
    }


@contextmanager
def warehouse_lock(
    database_url: str, on_wait: Callable[[str], None] = log.warning
) -> Iterator[psycopg.Connection]:
    """Hold the warehouse's dbt lock for the block; yields the connection that holds it.

    A session-level advisory lock: it is released when the block ends or the process dies.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        got_it = conn.execute("select pg_try_advisory_lock(%s)", (WAREHOUSE_LOCK_KEY,)).fetchone()
        if not got_it[0]:
            on_wait(WAITING_MESSAGE)
            conn.execute("select pg_advisory_lock(%s)", (WAREHOUSE_LOCK_KEY,))
        try:
            yield conn
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (WAREHOUSE_LOCK_KEY,))


def run_dbt(
    args: Sequence[str],
    *,
    database_url: str,
    project_dir: Path | None = None,
    definitions_dir: Path | None = None,
    target: str = "default",
    scratch_schema: str | None = None,
    target_path: Path | None = None,
    window: Mapping[str, Any] | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
    check: bool = True,
) -> Any:
    """Run one dbt command in this process; returns dbt's ``dbtRunnerResult``.

    ``args`` is the command and its own options (``["build", "--select", "x"]``); project,
    profiles, target path and vars are added here. ``project_dir`` defaults to the configured
    project (``project.dbt_project_dir``); with ``definitions_dir`` the declarations there are
    compiled into its seeds first (``DefinitionsInvalid`` lists their problems). ``window``
    limits the windowed models to a time window (``window_environment``); without it they run
    over all history, unless the caller's environment or ``dbt_vars`` name one. Raises
    ``DbtFailed`` when ``check`` and the command did not succeed.
    """
    from dbt.cli.main import dbtRunner

    project_dir = project_dir or project.dbt_project_dir()
    command = [*args, "--project-dir", str(project_dir), "--profiles-dir", str(project_dir)]
    if target_path is not None:
        command += ["--target-path", str(target_path)]
    if dbt_vars:
        import json

        command += ["--vars", json.dumps(dict(dbt_vars))]
    settings = dbt_environment(database_url, target=target, scratch_schema=scratch_schema)
    if window is not None:
        settings |= window_environment(window)
    with warehouse_lock(database_url), environment(settings):
        if definitions_dir is not None:
            compile_seed(definitions_dir, project_dir)
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
