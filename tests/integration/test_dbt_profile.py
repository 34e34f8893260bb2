"""dbt's connection comes from RETROLYTICS_DATABASE_URL alone (dbt_project/profiles.yml), and
every dbt session carries a statement_timeout."""

from __future__ import annotations

from pathlib import Path

import pytest
from dbt.cli.main import dbtRunner

from retrolytics.warehouse.runner import (
    DbtFailed,
    compile_seed,
    database_url_for_dbt,
    dbt_environment,
    run_dbt,
)
from tests.support.warehouse import copy_project


@pytest.mark.parametrize(
    ("conninfo", "url", "password"),
    [
        ("postgresql://ann@127.0.0.1:5433/shop", "postgresql://ann@127.0.0.1:5433/shop", None),
        (
            "postgresql://ann:s%40cret@127.0.0.1/shop",
            "postgresql://ann@127.0.0.1:5432/shop",
            "s@cret",
        ),
        (
            "user=ann dbname=shop host=127.0.0.1 port=6000",
            "postgresql://ann@127.0.0.1:6000/shop",
            None,
        ),
        ("postgres://127.0.0.1/shop", "postgresql://127.0.0.1:5432/shop", None),
    ],
)
def test_any_libpq_form_becomes_a_url_the_profile_can_split(conninfo, url, password):
    assert database_url_for_dbt(conninfo) == (url, password)


def test_a_socket_directory_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="one TCP host"):
        database_url_for_dbt("host=/var/run/postgresql dbname=shop")


def test_scratch_schema_names_are_checked():
    with pytest.raises(ValueError, match="scratch schema"):
        dbt_environment("postgresql://a@127.0.0.1/b", scratch_schema="pr'; drop")
    assert (
        dbt_environment("postgresql://a@127.0.0.1/b", scratch_schema="pr_42")[
            "RETROLYTICS_DBT_SCRATCH_SCHEMA"
        ]
        == "pr_42"
    )


@pytest.mark.integration
def test_plain_dbt_connects_with_only_the_database_url(database_url, tmp_path, monkeypatch):
    project, _ = copy_project(tmp_path)
    url, password = database_url_for_dbt(database_url)
    # The stack's passwords are URL-safe, so a plain user writes them into the URL.
    url = url.replace("@", f":{password}@", 1)
    for name in (
        "RETROLYTICS_DATABASE_PASSWORD",
        "RETROLYTICS_DBT_TARGET",
        "RETROLYTICS_DBT_SCRATCH_SCHEMA",
        "RETROLYTICS_DBT_THREADS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RETROLYTICS_DATABASE_URL", url)
    result = dbtRunner().invoke(
        ["debug", "--project-dir", str(project), "--profiles-dir", str(project)]
    )
    assert result.success, result.exception
    monkeypatch.setenv("RETROLYTICS_DATABASE_URL", url.rsplit("/", 1)[0] + "/no_such_database")
    result = dbtRunner().invoke(
        ["debug", "--project-dir", str(project), "--profiles-dir", str(project)]
    )
    assert not result.success


def test_the_statement_timeout_defaults_to_30_minutes_and_keeps_other_options(monkeypatch):
    monkeypatch.delenv("RETROLYTICS_DBT_STATEMENT_TIMEOUT", raising=False)
    monkeypatch.delenv("PGOPTIONS", raising=False)
    url = "postgresql://a@127.0.0.1/b"
    assert dbt_environment(url)["PGOPTIONS"] == "-c statement_timeout=30min"
    monkeypatch.setenv("RETROLYTICS_DBT_STATEMENT_TIMEOUT", "90s")
    monkeypatch.setenv("PGOPTIONS", "-c jit=off")
    assert dbt_environment(url)["PGOPTIONS"] == "-c jit=off -c statement_timeout=90s"
    monkeypatch.setenv("RETROLYTICS_DBT_STATEMENT_TIMEOUT", "30 minutes")
    with pytest.raises(ValueError, match="RETROLYTICS_DBT_STATEMENT_TIMEOUT must be a PostgreSQL"):
        dbt_environment(url)


def show(project: Path, database_url: str, query: str) -> str:
    """The one value ``query`` selects, as ``dbt show --inline`` through the project's runner."""
    result = run_dbt(
        ["show", "--inline", query, "--quiet"], database_url=database_url, project_dir=project
    )
    (row,) = result.result.results[0].agate_table.rows
    return str(row[0])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project, definitions = copy_project(tmp_path)
    compile_seed(definitions, project)
    return project


@pytest.mark.integration
def test_every_dbt_session_carries_the_statement_timeout(project, database_url, monkeypatch):
    monkeypatch.delenv("RETROLYTICS_DBT_STATEMENT_TIMEOUT", raising=False)
    monkeypatch.delenv("PGOPTIONS", raising=False)
    setting = "select current_setting('statement_timeout')"
    assert show(project, database_url, setting) == "30min"
    monkeypatch.setenv("RETROLYTICS_DBT_STATEMENT_TIMEOUT", "45s")
    assert show(project, database_url, setting) == "45s"


@pytest.mark.integration
def test_a_runaway_statement_fails_with_a_clear_error(project, database_url, monkeypatch):
    # A back-reference makes PostgreSQL backtrack: without a timeout this ran 16 s.
    monkeypatch.setenv("RETROLYTICS_DBT_STATEMENT_TIMEOUT", "1s")
    runaway = "select repeat('a', 60000) || 'b' ~ '^(a*)*\\1b$'"
    with pytest.raises(DbtFailed) as failed:
        show(project, database_url, runaway)
    assert "canceling statement due to statement timeout" in str(failed.value)
    assert "longer than RETROLYTICS_DBT_STATEMENT_TIMEOUT=1s" in str(failed.value)
