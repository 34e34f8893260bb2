"""Erasure: erase, replay the topic, re-derive, and no row of the person is left anywhere."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date

import psycopg
import pytest
from psycopg import sql

from demo.traffic import generate_events
from ingestion import erasure
from ingestion.settings import Settings
from retrolytics.warehouse import runner
from tests.support.erasure import KEY, with_erasure_key
from tests.support.factories import pageview_event
from tests.support.loading import drain, produce_events, scalar, wait_for_rows
from tests.support.paths import REPO

pytestmark = pytest.mark.integration

UNTIL = date(2026, 11, 20)


@pytest.fixture
def keyed(settings: Settings) -> Settings:
    return with_erasure_key(settings)


def occurrences(database_url: str, identities: list[str]) -> dict[str, int]:
    """Rows per table, in every schema, whose text, array or JSON columns mention an identity."""
    found: dict[str, int] = {}
    with psycopg.connect(database_url) as conn:
        columns = conn.execute(
            "select table_schema, table_name, array_agg(column_name::text), "
            "array_agg(data_type::text) "
            "from information_schema.columns join information_schema.tables "
            "using (table_schema, table_name) where table_type = 'BASE TABLE' "
            "and table_schema not in ('pg_catalog', 'information_schema') "
            "and data_type in ('text', 'character varying', 'jsonb', 'ARRAY', 'bytea') "
            "group by 1, 2"
        ).fetchall()
        # An identity as a whole word: "user-1" must not be found inside "user-17".
        pattern = (
            "(^|[^A-Za-z0-9_-])(" + "|".join(map(re.escape, identities)) + ")($|[^A-Za-z0-9_-])"
        )
        for schema, table, names, types in columns:
            tests = sql.SQL(" or ").join(
                sql.SQL("{} ~ {}").format(_as_text(name, kind), sql.Literal(pattern))
                for name, kind in zip(names, types, strict=True)
            )
            count = conn.execute(
                sql.SQL("select count(*) from {} where {}").format(
                    sql.Identifier(schema, table), tests
                )
            ).fetchone()[0]
            if count:
                found[f"{schema}.{table}"] = count
    return found


def _as_text(column: str, data_type: str) -> sql.Composable:
    if data_type == "bytea":  # the bytes as they came, printable characters as themselves
        return sql.SQL("encode({}, 'escape')").format(sql.Identifier(column))
    return sql.SQL("{}::text").format(sql.Identifier(column))


def cli(*args: str, settings: Settings, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROLYTICS_")}
    env |= {
        "RETROLYTICS_DATABASE_URL": settings.database_url,
        "RETROLYTICS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "RETROLYTICS_TOPIC": settings.topic,
        "RETROLYTICS_CONSUMER_GROUP": settings.consumer_group,
        "RETROLYTICS_ERASURE_KEY": KEY,
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "retrolytics.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def per_definition(database_url: str, where: str = "true", params: tuple = ()) -> dict:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            f"select definition_name, count(*) from marts.defined_events where {where} group by 1",
            params,
        ).fetchall()
    return dict(rows)


def test_erase_replay_and_rederive_leave_no_row_of_the_person(keyed: Settings) -> None:
    produce_events(keyed, list(generate_events(3000, 3, seed=11, until=UNTIL)))
    drain(keyed)
    runner.run_dbt(
        ["build", "--quiet"], database_url=keyed.database_url, definitions_dir=REPO / "definitions"
    )
    user = scalar(
        keyed.database_url,
        "select user_id from raw.events where user_id is not null "
        "group by 1 order by count(distinct anonymous_id) desc, 1 limit 1",
    )
    with psycopg.connect(keyed.database_url) as conn:
        devices = [
            d
            for (d,) in conn.execute(
                "select distinct anonymous_id from raw.events where user_id = %s", (user,)
            )
        ]
    identities = [user, *devices]
    assert occurrences(keyed.database_url, identities)  # the person is everywhere at first
    before = per_definition(keyed.database_url)
    theirs = per_definition(
        keyed.database_url, "anonymous_id = any(%s) or user_id = %s", (devices, user)
    )

    erased = cli("erase", "--user", user, "--reason", "test request", settings=keyed)
    assert erased.returncode == 0, erased.stdout + erased.stderr
    assert f"erased user {user!r} ({len(devices)} devices)" in erased.stdout

    # A replay with a new consumer group, and a late event of an erased device: nothing loads.
    produce_events(keyed, [pageview_event(anonymous_id=devices[0], user_id=None)])
    replay = drain(replace(keyed, consumer_group=keyed.consumer_group + "-replay"))
    late = drain(keyed)
    assert replay.erased > 0 and late.erased == 1 and late.loaded == 0
    runner.run_dbt(
        ["build", "--quiet"], database_url=keyed.database_url, definitions_dir=REPO / "definitions"
    )

    assert occurrences(keyed.database_url, identities) == {}
    after = per_definition(keyed.database_url)
    for name, count in before.items():
        assert after.get(name, 0) == count - theirs.get(name, 0), name
    with psycopg.connect(keyed.database_url) as conn:
        log = conn.execute(
            "select subject_kind, reason, (rows_deleted ->> 'raw.events')::int from raw.erasures"
        ).fetchall()
    assert {kind for kind, _, _ in log} == {"user", "device"}
    assert all(reason == "test request" and deleted > 0 for _, reason, deleted in log)


def test_erasing_an_unknown_identity_says_so_and_exits_cleanly(keyed: Settings, raw_db) -> None:
    result = cli("erase", "--device", "nobody-at-all", "--no-rederive", settings=keyed)

    assert result.returncode == 0, result.stderr
    assert "no rows of device 'nobody-at-all' were found" in result.stdout


def test_an_erasure_racing_a_load_loses_nothing_of_others(keyed: Settings, raw_db) -> None:
    env = {
        **os.environ,
        "RETROLYTICS_DATABASE_URL": keyed.database_url,
        "RETROLYTICS_KAFKA_BOOTSTRAP": keyed.kafka_bootstrap,
        "RETROLYTICS_TOPIC": keyed.topic,
        "RETROLYTICS_CONSUMER_GROUP": keyed.consumer_group,
        "RETROLYTICS_ERASURE_KEY": KEY,
    }
    loader = subprocess.Popen(
        [sys.executable, "-m", "retrolytics.cli", "load", "--batch-size", "50"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = "device-victim"
    others = [pageview_event(anonymous_id=f"device-{i % 30}") for i in range(6000)]
    theirs = [pageview_event(anonymous_id=victim) for _ in range(300)]
    try:
        produce_events(keyed, others[:3000] + theirs[:150])
        wait_for_rows(keyed.database_url, at_least=100)
        with psycopg.connect(keyed.database_url, autocommit=True) as conn:
            erasure.erase(conn, KEY.encode(), device=victim)  # while the loader writes
        produce_events(keyed, others[3000:] + theirs[150:])
        wait_for_rows(keyed.database_url, at_least=len(others), timeout=300)
        time.sleep(1)  # anything of the victim still in flight would have landed by now
    finally:
        loader.send_signal(signal.SIGTERM)
        _, err = loader.communicate(timeout=120)
    assert loader.returncode == 0, err
    with psycopg.connect(keyed.database_url) as conn:
        counts = dict(
            conn.execute(
                "select anonymous_id = %s, count(*) from raw.events group by 1", (victim,)
            ).fetchall()
        )
    assert counts == {False: len(others)}


def test_a_loader_with_another_key_refuses_to_load_once_someone_is_erased(
    keyed: Settings, raw_db
) -> None:
    with psycopg.connect(keyed.database_url, autocommit=True) as conn:
        erasure.erase(conn, KEY.encode(), device="gone")
    produce_events(keyed, [pageview_event()])

    result = cli("load", "--drain", settings=keyed, RETROLYTICS_ERASURE_KEY="another key")

    assert result.returncode == 2
    assert "hashed with another RETROLYTICS_ERASURE_KEY" in result.stderr
    assert scalar(keyed.database_url, "select count(*) from raw.events") == 0


def test_the_bi_login_cannot_read_the_erasure_log(stack, raw_db) -> None:
    database = raw_db.info.dbname
    as_bi = psycopg.conninfo.make_conninfo(stack.bi_database_url, dbname=database)
    with psycopg.connect(as_bi) as bi, pytest.raises(psycopg.errors.InsufficientPrivilege):
        bi.execute("select count(*) from raw.erasures")


def test_the_dagster_job_erases_a_batch(
    keyed: Settings, raw_db, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.erasure import erase_subjects_job
    from orchestration.resources import RetrolyticsResource

    produce_events(keyed, [pageview_event(anonymous_id=f"d-{i}") for i in range(4)])
    drain(keyed)
    monkeypatch.setenv(erasure.KEY_SETTING, KEY)

    result = erase_subjects_job.execute_in_process(
        run_config={"ops": {"erase": {"config": {"devices": ["d-0", "d-1"], "rederive": False}}}},
        resources={"retrolytics": RetrolyticsResource(database_url=keyed.database_url)},
    )

    assert result.success
    left = scalar(keyed.database_url, "select array_agg(anonymous_id order by 1) from raw.events")
    assert left == ["d-2", "d-3"]
