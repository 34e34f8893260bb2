"""Driving the loader in tests: produce events, run the loader (in-process or as the CLI), count."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from ingestion.loader import Loader, LoadStats
from ingestion.settings import Settings
from tests.support.factories import encode, produce


def drain(settings: Settings, batch_size: int = 500) -> LoadStats:
    loader = Loader(settings, batch_size=batch_size)
    try:
        return loader.drain()
    finally:
        loader.close()


def scalar(database_url: str, query: str, params: tuple = ()) -> object:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchone()[0]


def produce_events(settings: Settings, events: list[dict]) -> int:
    keys = [e["anonymous_id"] for e in events]
    return produce(settings.kafka_bootstrap, settings.topic, map(encode, events), keys)


def loader_process(settings: Settings, *args: str, own_group: bool = False) -> subprocess.Popen:
    """`retrolytics load ARGS` against the test's database and topic, output captured; with
    ``own_group``, in a process group of its own (its pid), which its workers share."""
    env = {
        **os.environ,
        "RETROLYTICS_DATABASE_URL": settings.database_url,
        "RETROLYTICS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "RETROLYTICS_TOPIC": settings.topic,
        "RETROLYTICS_CONSUMER_GROUP": settings.consumer_group,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "retrolytics.cli", "load", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0 if own_group else None,
    )


def kill_group(group: int) -> None:
    """SIGKILL every process of process group ``group`` that is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def live_processes_of_group(group: int) -> list[int]:
    """The pids of the processes in process group ``group`` that are still running (not
    zombies waiting for a parent to reap them)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended while listed
        state, process_group = fields[0], int(fields[2])
        if process_group == group and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


def wait_for_rows(database_url: str, at_least: int, timeout: float = 60) -> int:
    """Poll raw.events until it holds ``at_least`` rows; a server restart is waited out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            count = scalar(database_url, "select count(*) from raw.events")
        except (psycopg.errors.UndefinedTable, psycopg.OperationalError):
            count = 0
        if count >= at_least:
            return count
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} rows after {timeout} s")
