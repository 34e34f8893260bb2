"""A local Citus cluster: one coordinator and two workers, each a project-local PostgreSQL.

Every node is started by the same code as the single-node stack (``postgres.py``), in a folder of
its own under ``<state>/citus/`` and with the settings Citus needs. Citus itself is never built or
installed by the project: it must already be installed into the PostgreSQL server
(``citus.so`` in ``pg_config --pkglibdir``, ``extension/citus.control`` in ``pg_config
--sharedir``); without it ``--citus`` explains how to use an existing cluster instead.

A database is a Citus database only once it exists on every node with the extension created in
it, and the coordinator knows itself and its workers; ``prepare_database`` does all of that,
idempotently, for the stack's own database and for the fresh databases of tests alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ingestion.settings import LOCAL_USER
from ingestion.stack import postgres
from ingestion.stack.errors import CitusUnavailable, StackError
from ingestion.stack.layout import StackPaths, write_atomically
from ingestion.stack.ports import HOST, ensure_free, pick_free_ports

WORKER_COUNT = 2
NODE_SETTINGS = {
    "shared_preload_libraries": "'citus'",
    # Citus commits a transaction that wrote to several workers with two-phase commit.
    "max_prepared_transactions": "100",
    "wal_level": "logical",  # shard moves (rebalancing) use logical replication
    # Without it `create extension citus` switches the node to SSL and writes certificates.
    "citus.node_conninfo": "'sslmode=disable'",
    "citus.enable_statistics_collection": "off",  # a local cluster reports to nobody
}
EXISTING_CLUSTER_ADVICE = (
    "To use an existing Citus cluster instead, set RETROLYTICS_DATABASE_URL to a database on its "
    "coordinator that has the citus extension and its workers registered (the loader's bootstrap "
    "then distributes the tables); `retrolytics stack up` (without --citus) runs a single plain "
    "PostgreSQL."
)


@dataclass(frozen=True)
class Node:
    name: str
    port: int
    paths: StackPaths


@dataclass(frozen=True)
class ClusterPorts:
    coordinator: int
    workers: tuple[int, ...]

    def all(self) -> tuple[int, ...]:
        return (self.coordinator, *self.workers)


# -- is Citus installed? ----------------------------------------------------------------------


def extension_files(install: postgres.PostgresInstall) -> tuple[Path, Path]:
    """The library and the control file that make ``create extension citus`` possible."""
    return (
        install.pkglibdir() / "citus.so",
        install.sharedir() / "extension" / "citus.control",
    )


def has_citus(install: postgres.PostgresInstall) -> bool:
    return all(path.exists() for path in extension_files(install))


def find_install() -> postgres.PostgresInstall | None:
    """The newest installed PostgreSQL server that has Citus, if any."""
    majors = postgres.installed_majors()
    for major in sorted(majors, reverse=True):
        if has_citus(majors[major]):
            return majors[major]
    return None


def absence_reason() -> str | None:
    """Why a local Citus cluster cannot run here, or None when it can."""
    if find_install() is not None:
        return None
    newest = postgres.find_install()
    if newest is None:
        where = f"no PostgreSQL server in {postgres.DEBIAN_POSTGRES_ROOT}"
    else:
        library, control = extension_files(newest)
        missing = [str(path) for path in (library, control) if not path.exists()]
        where = f"no {' and no '.join(missing)}"
    return f"Citus is not installed here ({where})"


def require_install() -> postgres.PostgresInstall:
    """The server to run the nodes with; without Citus, says what to do instead."""
    install = find_install()
    if install is None:
        raise CitusUnavailable(f"{absence_reason()}. {EXISTING_CLUSTER_ADVICE}")
    return install


# -- where the nodes live ---------------------------------------------------------------------


def cluster_dir(paths: StackPaths) -> Path:
    return paths.root / "citus"


def env_file(paths: StackPaths) -> Path:
    return cluster_dir(paths) / "stack.env"


def ports_file(paths: StackPaths) -> Path:
    return cluster_dir(paths) / "ports.json"


def node_names() -> list[str]:
    return ["coordinator", *(f"worker{i}" for i in range(1, WORKER_COUNT + 1))]


def nodes(paths: StackPaths, ports: ClusterPorts) -> list[Node]:
    return [
        Node(name, port, StackPaths(root=cluster_dir(paths) / name, env_file=env_file(paths)))
        for name, port in zip(node_names(), ports.all(), strict=True)
    ]


def load_ports(paths: StackPaths) -> ClusterPorts | None:
    path = ports_file(paths)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        ports = ClusterPorts(int(raw["coordinator"]), tuple(int(p) for p in raw["workers"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise StackError(
            f"{path} is not a valid ports file ({exc}); delete it to pick new ports"
        ) from exc
    if len(ports.workers) != WORKER_COUNT:
        raise StackError(f"{path} names {len(ports.workers)} workers, expected {WORKER_COUNT}")
    return ports


def load_or_pick_ports(paths: StackPaths, avoid: Iterable[int]) -> ClusterPorts:
    """The remembered node ports, or free ones that are none of ``avoid`` (the stack's ports)."""
    remembered = load_ports(paths)
    if remembered is not None:
        return remembered
    taken = set(avoid)
    free = [port for port in pick_free_ports(WORKER_COUNT + 1 + len(taken)) if port not in taken]
    ports = ClusterPorts(coordinator=free[0], workers=tuple(free[1 : WORKER_COUNT + 1]))
    cluster_dir(paths).mkdir(parents=True, exist_ok=True)
    text = json.dumps({"coordinator": ports.coordinator, "workers": list(ports.workers)})
    write_atomically(ports_file(paths), text + "\n")
    return ports


# -- starting and stopping --------------------------------------------------------------------


def running_nodes(paths: StackPaths, ports: ClusterPorts) -> list[str]:
    return [node.name for node in nodes(paths, ports) if postgres.is_running(node.paths)]


def any_running(paths: StackPaths) -> bool:
    ports = load_ports(paths)
    return ports is not None and bool(running_nodes(paths, ports))


def ensure_ports_free(paths: StackPaths, ports: ClusterPorts) -> None:
    """Before anything starts: the port of every node that is not running must be free."""
    for node in nodes(paths, ports):
        if not postgres.is_running(node.paths):
            ensure_free(node.port, f"the Citus {node.name}", ports_file(paths))


def start(paths: StackPaths, ports: ClusterPorts, install: postgres.PostgresInstall) -> list[str]:
    """Start the nodes that are not running; returns the names of those started."""
    started = []
    cluster_dir(paths).mkdir(parents=True, exist_ok=True)
    postgres.open_to_service_user(paths.root, cluster_dir(paths))
    for node in nodes(paths, ports):
        if postgres.is_running(node.paths):
            continue
        node_install = _install_for(node, install)
        postgres.prepare_folders(node.paths)
        postgres.initialise(node.paths, node_install)
        postgres.start(node.paths, node_install, node.port, NODE_SETTINGS)
        started.append(node.name)
    return started


def _install_for(node: Node, citus_install: postgres.PostgresInstall) -> postgres.PostgresInstall:
    """A node keeps the major version that created its data folder, which must have Citus."""
    if not (node.paths.postgres_data / "PG_VERSION").exists():
        return citus_install
    install = postgres.require_install(node.paths)
    if not has_citus(install):
        raise CitusUnavailable(
            f"the Citus {node.name} in {node.paths.postgres_data} was created by PostgreSQL "
            f"{install.major}, which has no Citus; delete {node.paths.root.parent} "
            "to start the cluster over"
        )
    return install


def stop(paths: StackPaths) -> list[str]:
    """Stop every running node (coordinator first); returns the names of those stopped."""
    ports = load_ports(paths)
    if ports is None:
        return []
    return [node.name for node in nodes(paths, ports) if postgres.stop(node.paths)]


# -- databases --------------------------------------------------------------------------------


def _connect(port: int, dbname: str, user: str = LOCAL_USER) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=HOST, port=port, user=user, dbname=dbname, autocommit=True, connect_timeout=10
    )


def prepare_database(ports: ClusterPorts, database: str) -> None:
    """Make ``database`` a Citus database on this cluster; safe to run any number of times.

    On every node: the database (owned by the ``retrolytics`` role) and the citus extension in
    it. Then the coordinator learns its own address and registers each worker.
    """
    for port in ports.all():
        postgres.ensure_role_and_database(port)
        with _connect(port, "postgres", postgres.BOOTSTRAP_SUPERUSER) as admin:
            exists = admin.execute(
                "select 1 from pg_database where datname = %s", (database,)
            ).fetchone()
            if not exists:
                admin.execute(
                    sql.SQL("create database {} owner {}").format(
                        sql.Identifier(database), sql.Identifier(LOCAL_USER)
                    )
                )
        with _connect(port, database) as conn:
            conn.execute("create extension if not exists citus")
    with _connect(ports.coordinator, database) as coordinator:
        coordinator.execute("select citus_set_coordinator_host(%s, %s)", (HOST, ports.coordinator))
        for worker in ports.workers:
            coordinator.execute("select citus_add_node(%s, %s)", (HOST, worker))


def drop_database(ports: ClusterPorts, database: str) -> None:
    """Drop ``database`` from every node, coordinator first (it holds connections to workers)."""
    for port in ports.all():
        with _connect(port, "postgres", postgres.BOOTSTRAP_SUPERUSER) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database))
            )
