"""What every benchmark shares: a fresh database and topic on the local stack, timing, results."""

from __future__ import annotations

import platform
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from ingestion import stack
from ingestion.settings import Settings
from ingestion.topics import delete_topic, ensure_topic

# The checkout the benchmarks run in: they copy its dbt project and definitions.
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Section:
    """One benchmark's figures, written as a Markdown section of RESULTS.md."""

    title: str
    command: str
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        print(f"  {line}", flush=True)
        self.lines.append(line)

    def table(self, header: tuple[str, ...], rows: list[tuple]) -> None:
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "---|" * len(header))
        for row in rows:
            self.lines.append("| " + " | ".join(str(v) for v in row) + " |")
            print("  " + "  ".join(str(v) for v in row), flush=True)

    def markdown(self) -> str:
        return f"## {self.title}\n\nCommand: `{self.command}`\n\n" + "\n".join(self.lines) + "\n"


def section_command(name: str, quick: bool, environment: str = "") -> str:
    """The command line that runs one benchmark, as a section shows it."""
    return f"{environment}python -m benchmarks {'--quick ' if quick else ''}--only {name}"


@contextmanager
def scratch(label: str) -> Iterator[Settings]:
    """Settings for a new database and topic on the local stack, removed afterwards."""
    info = stack.up()
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(info.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    settings = Settings(
        database_url=psycopg.conninfo.make_conninfo(info.database_url, dbname=name),
        kafka_bootstrap=info.kafka_bootstrap,
        topic=f"bench.{name}",
        consumer_group=f"bench-{name}",
    )
    ensure_topic(settings.kafka_bootstrap, settings.topic)
    try:
        yield settings
    finally:
        delete_topic(settings.kafka_bootstrap, settings.topic)
        with psycopg.connect(info.database_url, autocommit=True) as admin:
            drop = sql.SQL("drop database if exists {} with (force)")
            admin.execute(drop.format(sql.Identifier(name)))


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started


def machine_description() -> list[str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        memory_gib = int(meminfo.readline().split()[1]) // 1024 // 1024
    postgres = subprocess.run(
        ["psql", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return [
        f"- machine: {platform.machine()}, {cpu}, {_cores()} cores, {memory_gib} GiB",
        f"- os: {platform.platform()}",
        f"- python: {platform.python_version()}; {postgres}; Apache Kafka 4.1.1 (KRaft, 1 node)",
    ]


def _cores() -> int:
    import os

    return os.cpu_count() or 0
