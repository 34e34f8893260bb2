"""``retrolytics stack up | down | status``: the project-local PostgreSQL and Kafka.

Everything lives in the state folder (``ingestion.settings.state_dir()``): the ports picked the
first time (``ports.json``), PostgreSQL's data and logs (``postgres/``), Kafka's data, logs and pid
(``kafka/``) and, while the stack runs, ``stack.env`` with the ``RETROLYTICS_…=value`` lines that
``status`` prints. Load them into a shell with
``set -a; eval "$(retrolytics stack status)"; set +a`` (plain ``eval`` sets them for the shell
only, not for the programs it starts).

``--citus`` runs a Citus coordinator and two workers instead of the single PostgreSQL (nodes,
ports and ``stack.env`` under ``citus/``; see ``citus.py``), with the same Kafka. Kafka stops with
whichever ``down`` leaves no PostgreSQL of the state folder running.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass
from functools import partial

import psycopg

from ingestion import schema
from ingestion.settings import LOCAL_DATABASE, local_database_url
from ingestion.stack import citus as citus_nodes
from ingestion.stack import credentials, kafka, postgres
from ingestion.stack.errors import CitusUnavailable, StackError
from ingestion.stack.layout import StackPaths, exclusive, write_atomically
from ingestion.stack.ports import HOST, Ports, ensure_free, load, load_or_pick

__all__ = [
    "CitusStackInfo",
    "CitusUnavailable",
    "StackError",
    "StackInfo",
    "down",
    "main",
    "status",
    "up",
]

NOT_RUNNING_EXIT_CODE = 3  # as `pg_ctl status` and LSB init scripts use it
CITUS_EXIT_CODE = 2


@dataclass(frozen=True)
class StackInfo:
    """Where the stack listens, and one URL per login: the owner's (``database_url``) and each
    job's (``ingestion.roles``); the Citus stack has the owner's only."""

    postgres_port: int
    kafka_port: int
    database_url: str
    kafka_bootstrap: str
    loader_database_url: str | None = None
    dbt_database_url: str | None = None
    bi_database_url: str | None = None
    erasure_key: str | None = None

    @classmethod
    def from_ports(
        cls, ports: Ports, passwords: Mapping[str, str], erasure_key: str | None = None
    ) -> StackInfo:
        def url(login: credentials.Login) -> str:
            return local_database_url(
                ports.postgres, user=login.name, password=passwords[login.name]
            )

        return cls(
            postgres_port=ports.postgres,
            kafka_port=ports.kafka,
            database_url=url(credentials.OWNER),
            kafka_bootstrap=f"{HOST}:{ports.kafka}",
            loader_database_url=url(credentials.LOADER),
            dbt_database_url=url(credentials.DBT),
            bi_database_url=url(credentials.BI_READER),
            erasure_key=erasure_key,
        )

    def env_lines(self) -> list[str]:
        lines = [
            f"RETROLYTICS_DATABASE_URL={self.database_url}",
            f"RETROLYTICS_KAFKA_BOOTSTRAP={self.kafka_bootstrap}",
        ]
        for name, url in (
            ("LOADER", self.loader_database_url),
            ("DBT", self.dbt_database_url),
            ("BI", self.bi_database_url),
        ):
            if url:
                lines.append(f"RETROLYTICS_{name}_DATABASE_URL={url}")
        if self.erasure_key:
            lines.append(f"RETROLYTICS_ERASURE_KEY={self.erasure_key}")
        return lines


@dataclass(frozen=True)
class CitusStackInfo(StackInfo):
    """The Citus stack: ``postgres_port`` and ``database_url`` are the coordinator's."""

    worker_ports: tuple[int, ...] = ()

    @classmethod
    def from_cluster(cls, ports: Ports, cluster: citus_nodes.ClusterPorts) -> CitusStackInfo:
        return cls(
            postgres_port=cluster.coordinator,
            kafka_port=ports.kafka,
            database_url=local_database_url(cluster.coordinator),
            kafka_bootstrap=f"{HOST}:{ports.kafka}",
            worker_ports=cluster.workers,
        )

    @property
    def cluster(self) -> citus_nodes.ClusterPorts:
        return citus_nodes.ClusterPorts(self.postgres_port, self.worker_ports)


def _say(message: str) -> None:
    """Human messages go to stderr: stdout carries only lines a shell can eval."""
    print(message, file=sys.stderr, flush=True)


def up(citus: bool = False) -> StackInfo:
    """Start whatever part of the stack is not running; a running stack is returned as it is.

    ``citus=True`` starts a Citus coordinator and two workers instead of the single PostgreSQL.
    """
    citus_install = citus_nodes.require_install() if citus else None  # before anything starts
    paths = StackPaths.current()
    paths.root.mkdir(parents=True, exist_ok=True)
    with exclusive(paths.lock_file):
        ports = load_or_pick(paths.ports_file)
        info: StackInfo
        if citus_install is None:
            running = postgres.is_running(paths)
            if not running:
                ensure_free(ports.postgres, "PostgreSQL", paths.ports_file)
            passwords = credentials.passwords(paths)
            start_databases = partial(_start_postgres, paths, ports, running, passwords)
            info = StackInfo.from_ports(ports, passwords, credentials.erasure_key(paths))
            env_file = paths.env_file
        else:
            cluster = citus_nodes.load_or_pick_ports(paths, avoid=astuple(ports))
            citus_nodes.ensure_ports_free(paths, cluster)
            start_databases = partial(_start_citus, paths, cluster, citus_install)
            info = CitusStackInfo.from_cluster(ports, cluster)
            env_file = citus_nodes.env_file(paths)
        _start_with_kafka(paths, ports, start_databases)
        write_atomically(env_file, "\n".join(info.env_lines()) + "\n")
        return info


def _start_with_kafka(paths: StackPaths, ports: Ports, start_databases: Callable[[], None]) -> None:
    if kafka.running_pid(paths) is not None:
        start_databases()
        return
    ensure_free(ports.kafka, "the Kafka broker", paths.ports_file)
    ensure_free(ports.kafka_controller, "the Kafka controller", paths.ports_file)
    # The JVM takes a few seconds to come up: let it start while PostgreSQL does.
    kafka_pid = _launch_kafka(paths, ports)
    start_databases()
    started = time.monotonic()
    kafka.wait_until_ready(paths, ports.kafka, kafka_pid)
    _say(
        f"Kafka {kafka.kafka_version()} ready on {HOST}:{ports.kafka} "
        f"(waited {time.monotonic() - started:.1f}s; logs in {paths.kafka_logs})"
    )


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


def _start_postgres(
    paths: StackPaths, ports: Ports, running: bool, passwords: Mapping[str, str]
) -> None:
    superuser_password = passwords[postgres.BOOTSTRAP_SUPERUSER]
    if not running:
        install = postgres.require_install(paths)
        started = time.monotonic()
        postgres.prepare_folders(paths)
        if postgres.initialise(paths, install):
            _say(f"PostgreSQL {install.major} cluster created in {paths.postgres_data}")
        postgres.start(paths, install, ports.postgres, superuser_password=superuser_password)
        _say(
            f"PostgreSQL {install.major} ready on {HOST}:{ports.postgres} "
            f"({time.monotonic() - started:.1f}s; logs in {paths.postgres_logs})"
        )
    # Cheap and idempotent; also repairs a first start that was interrupted before these steps.
    postgres.ensure_roles_and_database(ports.postgres, passwords)
    postgres.require_passwords(paths, ports.postgres, passwords)
    owner_url = local_database_url(
        ports.postgres, user=credentials.OWNER.name, password=passwords[credentials.OWNER.name]
    )
    with psycopg.connect(owner_url, autocommit=True) as conn:
        schema.bootstrap(conn)  # the job logins can work at once: the loader may not bootstrap


def _start_citus(
    paths: StackPaths, cluster: citus_nodes.ClusterPorts, install: postgres.PostgresInstall
) -> None:
    started_at = time.monotonic()
    started = citus_nodes.start(paths, cluster, install)
    # Idempotent like ensure_role_and_database: repairs an interrupted first start, too.
    citus_nodes.prepare_database(cluster, LOCAL_DATABASE)
    if started:
        workers = ", ".join(f"{HOST}:{port}" for port in cluster.workers)
        _say(
            f"Citus on PostgreSQL {install.major} ready: coordinator {HOST}:{cluster.coordinator}, "
            f"workers {workers} ({time.monotonic() - started_at:.1f}s; started "
            f"{', '.join(started)}; data in {citus_nodes.cluster_dir(paths)})"
        )


def down(citus: bool = False) -> None:
    """Stop the single PostgreSQL (or, with ``citus``, the Citus nodes) of the current state
    folder, and Kafka unless the other kind still runs; stopping a stopped stack is fine."""
    paths = StackPaths.current()
    if not paths.root.exists():
        return
    with exclusive(paths.lock_file):
        if citus:
            stopped = citus_nodes.stop(paths)
            if stopped:
                _say(f"Citus stopped ({', '.join(stopped)})")
            citus_nodes.env_file(paths).unlink(missing_ok=True)
            kafka_still_needed_by = (
                "the single-node PostgreSQL" if postgres.is_running(paths) else ""
            )
        else:
            if postgres.stop(paths):
                _say("PostgreSQL stopped")
            paths.env_file.unlink(missing_ok=True)
            kafka_still_needed_by = "the Citus cluster" if citus_nodes.any_running(paths) else ""
        if not kafka_still_needed_by:
            if kafka.stop(paths):
                _say("Kafka stopped")
        elif kafka.running_pid(paths) is not None:
            flag = "" if citus else " --citus"
            _say(
                f"Kafka keeps running for {kafka_still_needed_by} "
                f"(`retrolytics stack down{flag}` stops both)"
            )


def status(citus: bool = False) -> StackInfo | None:
    """The running stack, or None when its PostgreSQL (every Citus node) or Kafka is not running."""
    paths = StackPaths.current()
    ports = load(paths.ports_file)
    if ports is None or kafka.running_pid(paths) is None:
        return None
    if citus:
        cluster = citus_nodes.load_ports(paths)
        if cluster is None or len(citus_nodes.running_nodes(paths, cluster)) != len(cluster.all()):
            return None
        return CitusStackInfo.from_cluster(ports, cluster)
    if not postgres.is_running(paths):
        return None
    return StackInfo.from_ports(ports, credentials.passwords(paths), credentials.erasure_key(paths))


def main(action: str, citus: bool = False) -> int:
    """The CLI: prints the RETROLYTICS_… lines on stdout, everything else on stderr."""
    which = "local Citus cluster" if citus else "local stack"
    flag = " --citus" if citus else ""
    try:
        if action == "up":
            info = up(citus=citus)
            print("\n".join(info.env_lines()), flush=True)
        elif action == "down":
            down(citus=citus)
            _say(f"the {which} is stopped")
        elif action == "status":
            if citus:
                citus_nodes.require_install()
            running = status(citus=citus)
            if running is None:
                _say(f"the {which} is not running (start it with `retrolytics stack up{flag}`)")
                return NOT_RUNNING_EXIT_CODE
            print("\n".join(running.env_lines()), flush=True)
        else:
            _say(f"unknown stack action {action!r}; expected up, down or status")
            return 2
    except CitusUnavailable as exc:
        _say(str(exc))
        return CITUS_EXIT_CODE
    except StackError as exc:
        _say(f"retrolytics stack {action}{flag}: {exc}")
        return 1
    return 0
