"""``retrolytics stack up | down | status``: the project-local PostgreSQL and Kafka.

Everything lives in the state folder (``ingestion.settings.state_dir()``): the ports picked the
first time (``ports.json``), PostgreSQL's data and logs (``postgres/``), Kafka's data, logs and pid
(``kafka/``) and, while the stack runs, ``stack.env`` with the ``RETROLYTICS_…=value`` lines that
``status`` prints. Load them into a shell with
``set -a; eval "$(retrolytics stack status)"; set +a`` (plain ``eval`` sets them for the shell
only, not for the programs it starts).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from ingestion.settings import local_database_url
from ingestion.stack import kafka, postgres
from ingestion.stack.errors import CitusUnavailable, StackError
from ingestion.stack.layout import StackPaths, exclusive, write_atomically
from ingestion.stack.ports import HOST, Ports, ensure_free, load, load_or_pick

__all__ = ["CitusUnavailable", "StackError", "StackInfo", "down", "main", "status", "up"]

NOT_RUNNING_EXIT_CODE = 3  # as `pg_ctl status` and LSB init scripts use it
CITUS_EXIT_CODE = 2


@dataclass(frozen=True)
class StackInfo:
    postgres_port: int
    kafka_port: int
    database_url: str
    kafka_bootstrap: str

    @classmethod
    def from_ports(cls, ports: Ports) -> StackInfo:
        return cls(
            postgres_port=ports.postgres,
            kafka_port=ports.kafka,
            database_url=local_database_url(ports.postgres),
            kafka_bootstrap=f"{HOST}:{ports.kafka}",
        )

    def env_lines(self) -> list[str]:
        return [
            f"RETROLYTICS_DATABASE_URL={self.database_url}",
            f"RETROLYTICS_KAFKA_BOOTSTRAP={self.kafka_bootstrap}",
        ]


def _say(message: str) -> None:
    """Human messages go to stderr: stdout carries only lines a shell can eval."""
    print(message, file=sys.stderr, flush=True)


def up(citus: bool = False) -> StackInfo:
    """Start whatever part of the stack is not running; a running stack is returned as it is."""
    if citus:
        raise CitusUnavailable(_citus_message())
    paths = StackPaths.current()
    paths.root.mkdir(parents=True, exist_ok=True)
    with exclusive(paths.lock_file):
        ports = load_or_pick(paths.ports_file)
        postgres_running = postgres.is_running(paths)
        kafka_pid = kafka.running_pid(paths)
        if not postgres_running:
            ensure_free(ports.postgres, "PostgreSQL", paths.ports_file)
        if kafka_pid is None:
            ensure_free(ports.kafka, "the Kafka broker", paths.ports_file)
            ensure_free(ports.kafka_controller, "the Kafka controller", paths.ports_file)
            # The JVM takes a few seconds to come up: let it start while PostgreSQL does.
            kafka_pid = _launch_kafka(paths, ports)
            _start_postgres(paths, ports, postgres_running)
            started = time.monotonic()
            kafka.wait_until_ready(paths, ports.kafka, kafka_pid)
            _say(
                f"Kafka {kafka.kafka_version()} ready on {HOST}:{ports.kafka} "
                f"(waited {time.monotonic() - started:.1f}s; logs in {paths.kafka_logs})"
            )
        else:
            _start_postgres(paths, ports, postgres_running)
        info = StackInfo.from_ports(ports)
        write_atomically(paths.env_file, "\n".join(info.env_lines()) + "\n")
        return info


def _launch_kafka(paths: StackPaths, ports: Ports) -> int:
    java = kafka.find_java()
    started = time.monotonic()
    libs = kafka.ensure_jars()
    if time.monotonic() - started > 1:
        _say(f"Kafka jars cached in {libs} ({time.monotonic() - started:.1f}s)")
    kafka.write_config(paths, ports)
    if kafka.format_storage(paths, java, libs):
        _say(f"Kafka storage formatted in {paths.kafka_data}")
    return kafka.launch(paths, java, libs)


def _start_postgres(paths: StackPaths, ports: Ports, running: bool) -> None:
    if not running:
        install = postgres.require_install(paths)
        started = time.monotonic()
        postgres.prepare_folders(paths)
        if postgres.initialise(paths, install):
            _say(f"PostgreSQL {install.major} cluster created in {paths.postgres_data}")
        postgres.start(paths, install, ports.postgres)
        _say(
            f"PostgreSQL {install.major} ready on {HOST}:{ports.postgres} "
            f"({time.monotonic() - started:.1f}s; logs in {paths.postgres_logs})"
        )
    # Cheap and idempotent; also repairs a first start that was interrupted before this step.
    postgres.ensure_role_and_database(ports.postgres)


def down() -> None:
    """Stop Kafka and PostgreSQL of the current state folder; stopping a stopped stack is fine."""
    paths = StackPaths.current()
    if not paths.root.exists():
        return
    with exclusive(paths.lock_file):
        if kafka.stop(paths):
            _say("Kafka stopped")
        if postgres.stop(paths):
            _say("PostgreSQL stopped")
        paths.env_file.unlink(missing_ok=True)


def status() -> StackInfo | None:
    """The running stack, or None when PostgreSQL or Kafka is not running."""
    paths = StackPaths.current()
    ports = load(paths.ports_file)
    if ports is None or kafka.running_pid(paths) is None or not postgres.is_running(paths):
        return None
    return StackInfo.from_ports(ports)


def _citus_message() -> str:
    install = postgres.find_install()
    advice = (
        "Users with a Citus cluster set RETROLYTICS_DATABASE_URL to its coordinator instead; "
        "`retrolytics stack up` (without --citus) runs a single plain PostgreSQL."
    )
    if install is None or not postgres.citus_library(install).exists():
        where = postgres.citus_library(install) if install else "any PostgreSQL server"
        return f"Citus is not installed here (no {where}). {advice}"
    return (
        f"The citus extension is installed ({postgres.citus_library(install)}), but a local "
        f"multi-node cluster (coordinator and workers) is not implemented by `retrolytics stack`. "
        f"{advice}"
    )


def main(action: str, citus: bool = False) -> int:
    """The CLI: prints the RETROLYTICS_… lines on stdout, everything else on stderr."""
    try:
        if action == "up":
            info = up(citus=citus)
            print("\n".join(info.env_lines()), flush=True)
        elif citus:
            raise CitusUnavailable(_citus_message())
        elif action == "down":
            down()
            _say("the local stack is stopped")
        elif action == "status":
            running = status()
            if running is None:
                _say("the local stack is not running (start it with `retrolytics stack up`)")
                return NOT_RUNNING_EXIT_CODE
            print("\n".join(running.env_lines()), flush=True)
        else:
            _say(f"unknown stack action {action!r}; expected up, down or status")
            return 2
    except CitusUnavailable as exc:
        _say(str(exc))
        return CITUS_EXIT_CODE
    except StackError as exc:
        _say(f"retrolytics stack {action}: {exc}")
        return 1
    return 0
