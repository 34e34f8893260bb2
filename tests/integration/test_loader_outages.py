"""The stream loader rides out PostgreSQL and Kafka outages by itself.

These tests stop and start the local stack's own PostgreSQL and Kafka under a running loader
process, or before one starts, then count rows: nothing lost, nothing duplicated, and the loader
still running.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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

# Patient enough for a restart on a loaded machine: 100 failures, at most 2 s apart. A start
# attempt waits 3 s for Kafka, not 15: the loader notices Kafka's return sooner, the test ends
# sooner.
PATIENT = ("--max-failures", "100", "--max-backoff-s", "2", "--kafka-timeout-s", "3")


def _counts(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("select count(*), count(distinct event_id) from raw.events").fetchone()


@contextmanager
def _stopped(stop: Callable[[StackPaths], bool]) -> Iterator[None]:
    """The component is down inside the block and started again on leaving it, also on failure."""
    assert stop(StackPaths.current()), "the component was not running"
    try:
        yield
    finally:
        local_stack.up()  # starts whatever part of the stack is not running


def _stop_then_restart(stop: Callable[[StackPaths], bool], down_for_s: float) -> None:
    with _stopped(stop):
        time.sleep(down_for_s)


class _Log:
    """A loader process and its stderr, read as it comes: unread, librdkafka's reports of refused
    connections (about 20 lines a second while Kafka is down) fill the pipe and block the loader.
    """

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, fragment: str, timeout: float = 300) -> str:
        """The first line holding ``fragment``, once the loader has logged it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if fragment in line:
                    return line
            if not self._reader.is_alive():
                break  # the loader exited
            time.sleep(0.1)
        raise AssertionError(
            f"the loader (exit code {self.process.poll()}) never logged {fragment!r}:\n{self.text}"
        )

    def finish(self, timeout: float = 300) -> int:
        """Wait for the loader to exit; its exit code."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=30)
        return code

    def stop(self) -> str:
        """SIGTERM the loader, assert a clean exit, return its log."""
        assert self.process.poll() is None, f"the loader exited during the outage:\n{self.text}"
        self.process.send_signal(signal.SIGTERM)
        assert self.finish() == 0, self.text
        return self.text


@pytest.fixture
def start_loader(settings: Settings) -> Iterator[Callable[..., _Log]]:
    """Starts `retrolytics load ARGS` on the test's database and topic; kills what is left and
    shows its log (pytest prints it when the test failed)."""
    started: list[_Log] = []

    def start(*args: str) -> _Log:
        started.append(_Log(loader_process(settings, *args)))
        return started[-1]

    yield start
    for loader in started:
        if loader.process.poll() is None:
            loader.process.kill()
            loader.finish(timeout=30)
            print(loader.text, file=sys.stderr)


@pytest.fixture
def running_loader(start_loader: Callable[..., _Log]) -> _Log:
    return start_loader("--batch-size", "100", "--max-failures", "40", "--max-backoff-s", "2")


def test_a_postgres_restart_under_the_stream_loader_loses_and_duplicates_nothing(
    settings: Settings, running_loader: _Log
) -> None:
    events = many_events(20_000, devices=50)
    produce_events(settings, events)
    before = wait_for_rows(settings.database_url, at_least=1)

    _stop_then_restart(postgres.stop, down_for_s=3)

    wait_for_rows(settings.database_url, at_least=len(events), timeout=300)
    log = running_loader.stop()
    assert before < len(events), "the loader finished before the outage"
    assert _counts(settings.database_url) == (len(events), len(events))
    assert "retrying in" in log and "resumed from the stored offsets" in log, log


def test_a_kafka_restart_under_the_stream_loader_loses_and_duplicates_nothing(
    settings: Settings, running_loader: _Log
) -> None:
    first, second = many_events(3000, devices=30), many_events(3000, devices=31)
    produce_events(settings, first)
    wait_for_rows(settings.database_url, at_least=len(first), timeout=300)

    _stop_then_restart(kafka.stop, down_for_s=3)
    produce_events(settings, second)  # only the restarted broker has these

    wait_for_rows(settings.database_url, at_least=len(first) + len(second), timeout=300)
    running_loader.stop()
    total = len(first) + len(second)
    assert _counts(settings.database_url) == (total, total)


def test_an_outage_longer_than_the_retry_policy_ends_the_loader_with_a_clear_code(
    settings: Settings, stack, start_loader: Callable[..., _Log]
) -> None:
    produce_events(settings, many_events(20_000, devices=50))
    loader = start_loader("--batch-size", "50", "--max-failures", "3", "--max-backoff-s", "0.2")
    wait_for_rows(settings.database_url, at_least=1)
    # The loader's database disappears for good: every reconnect fails.
    database = psycopg.conninfo.conninfo_to_dict(settings.database_url)["dbname"]
    with psycopg.connect(stack.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(database)))
    assert loader.finish(timeout=120) == GAVE_UP_EXIT_CODE, loader.text
    assert "giving up after 3 consecutive failures" in loader.text, loader.text
    assert scalar(stack.database_url, "select 1") == 1  # the server itself is fine


# -- a loader started during an outage --------------------------------------------------------


def _postgres_named(settings: Settings) -> str:
    where = psycopg.conninfo.conninfo_to_dict(settings.database_url)
    return f"PostgreSQL at {where['host']}:{where['port']} (database {where['dbname']})"


def _server(name: str, settings: Settings) -> tuple[Callable[[StackPaths], bool], str]:
    """How to stop the server, and how the loader names it in its log."""
    return {
        "postgres": (postgres.stop, _postgres_named(settings)),
        "kafka": (kafka.stop, f"Kafka at {settings.kafka_bootstrap}"),
    }[name]


@pytest.mark.parametrize("server", ["postgres", "kafka"])
def test_a_stream_loader_started_while_a_server_is_down_loads_once_it_is_back(
    settings: Settings, start_loader: Callable[..., _Log], server: str
) -> None:
    stop, named = _server(server, settings)
    events = many_events(5000, devices=40)
    produce_events(settings, events)

    with _stopped(stop):
        loader = start_loader("--batch-size", "500", *PATIENT)
        retry = loader.wait_for("retrying in")  # started, met the outage, and waits

    wait_for_rows(settings.database_url, at_least=len(events), timeout=300)
    loader.stop()
    assert _counts(settings.database_url) == (len(events), len(events))
    assert named in retry, retry


def test_a_drain_started_while_postgres_is_down_loads_everything_once_it_is_back(
    settings: Settings, start_loader: Callable[..., _Log]
) -> None:
    events = many_events(3000, devices=30)
    produce_events(settings, events)

    with _stopped(postgres.stop):
        loader = start_loader("--drain", "--batch-size", "500", *PATIENT)
        loader.wait_for("retrying in")

    assert loader.finish() == 0, loader.text
    assert _counts(settings.database_url) == (len(events), len(events))


@pytest.mark.parametrize("server", ["postgres", "kafka"])
def test_a_start_outage_longer_than_the_retry_policy_ends_the_loader_naming_the_server(
    settings: Settings, start_loader: Callable[..., _Log], server: str
) -> None:
    stop, named = _server(server, settings)
    with _stopped(stop):
        loader = start_loader(
            "--max-failures", "2", "--max-backoff-s", "0.2", "--kafka-timeout-s", "2"
        )
        code = loader.finish()

    assert code == GAVE_UP_EXIT_CODE, loader.text
    assert f"giving up after 2 consecutive failures: {named} unreachable" in loader.text
