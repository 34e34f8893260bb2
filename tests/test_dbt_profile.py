"""dbt's connection comes from RETROLYTICS_DATABASE_URL alone (dbt_project/profiles.yml)."""

from __future__ import annotations

import pytest
from dbt.cli.main import dbtRunner

from retrolytics.language.dbt_runner import database_url_for_dbt, dbt_environment
from tests.test_dbt_defined_events import copy_project


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
    url, _ = database_url_for_dbt(database_url)
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
