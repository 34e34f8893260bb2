"""The stream loader rides out PostgreSQL and Kafka outages by itself.

These tests stop and start the local stack's own PostgreSQL and Kafka under a running loader
process, then count rows: nothing lost, nothing duplicated, and the loader still running.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from ingestion import stack as local_stack
from ingestion.loader import GAVE_UP_EXIT_CODE
from ingestion.settings import Settings
from ingestion.stack import kafka, postgres
from ingestion.stack.layout import StackPaths
from tests.support.factories import many_events
from tests.support.loading import loader_process, produce_events, scalar, wait_for_rows

pytestmark = pytest.mark.integration


def _counts(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("select count(*), count(distinct event_id) from raw.events").fetchone()


def _stop_then_restart(stop: callable, down_for_s: float) -> None:
    paths = StackPaths.current()
    assert stop(paths), "the component was not running"
    time.sleep(down_for_s)
    local_stack.up()  # starts whatever part of the stack is not running


@pytest.fixture
def running_loader(settings: Settings) -> Iterator[subprocess.Popen]:
    process = loader_process(
        settings, "--batch-size", "100", "--max-failures", "40", "--max-backoff-s", "2"
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def _finish(process: subprocess.Popen) -> str:
    """SIGTERM the loader, assert a clean exit, return its log."""
    assert process.poll() is None, "the loader exited during the outage"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return err


def test_a_postgres_restart_under_the_stream_loader_loses_and_duplicates_nothing(
    settings: Settings, running_loader: subprocess.Popen
) -> None:
    events = many_events(20_000, devices=50)
    produce_events(settings, events)
    before = wait_for_rows(settings.database_url, at_least=1)

    _stop_then_restart(postgres.stop, down_for_s=3)

    wait_for_rows(settings.database_url, at_least=len(events), timeout=300)
    log = _finish(running_loader)
    assert before < len(events), "the loader finished before the outage"
    assert _counts(settings.database_url) == (len(events), len(events))
    assert "retrying in" in log and "resumed from the stored offsets" in log, log


def test_a_kafka_restart_under_the_stream_loader_loses_and_duplicates_nothing(
    settings: Settings, running_loader: subprocess.Popen
) -> None:
    first, second = many_events(3000, devices=30), many_events(3000, devices=31)
    produce_events(settings, first)
    wait_for_rows(settings.database_url, at_least=len(first), timeout=300)

    _stop_then_restart(kafka.stop, down_for_s=3)
    produce_events(settings, second)  # only the restarted broker has these

    wait_for_rows(settings.database_url, at_least=len(first) + len(second), timeout=300)
    _finish(running_loader)
    total = len(first) + len(second)
    assert _counts(settings.database_url) == (total, total)


def test_an_outage_longer_than_the_retry_policy_ends_the_loader_with_a_clear_code(
    settings: Settings, stack
) -> None:
    produce_events(settings, many_events(20_000, devices=50))
    process = loader_process(
        settings, "--batch-size", "50", "--max-failures", "3", "--max-backoff-s", "0.2"
    )
    try:
        wait_for_rows(settings.database_url, at_least=1)
        # The loader's database disappears for good: every reconnect fails.
        database = psycopg.conninfo.conninfo_to_dict(settings.database_url)["dbname"]
        with psycopg.connect(stack.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(database)))
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == GAVE_UP_EXIT_CODE, err
    assert "giving up after 3 consecutive failures" in err, err
    assert scalar(stack.database_url, "select 1") == 1  # the server itself is fine
