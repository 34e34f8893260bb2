"""A project-local PostgreSQL cluster run with Debian's server binaries.

PostgreSQL refuses to run as root, so when the stack is started by root (as on CI machines) every
server command runs as the unprivileged ``postgres`` user, which owns the data folder.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ingestion import roles
from ingestion.settings import LOCAL_DATABASE, LOCAL_USER
from ingestion.stack import credentials, processes
from ingestion.stack.errors import StackError
from ingestion.stack.layout import StackPaths, tail, write_atomically

DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")
SERVICE_USER = "postgres"
BOOTSTRAP_SUPERUSER = credentials.SUPERUSER
CONFIG_FILE = "retrolytics.conf"
LOG_FILE = "postgresql.log"
STARTUP_LOG = "startup.log"
# A unix socket path must fit in sockaddr_un.sun_path (108 bytes, NUL included).
MAX_SOCKET_PATH = 107
READY_TIMEOUT = 60
ZOMBIE_TIMEOUT = 30


@dataclass(frozen=True)
class PostgresInstall:
    major: int
    bindir: Path

    def tool(self, name: str) -> str:
        return str(self.bindir / name)

    def pkglibdir(self) -> Path:
        """Where extension libraries live (``pg_config --pkglibdir``)."""
        return self._pg_config("--pkglibdir", DEBIAN_POSTGRES_ROOT / str(self.major) / "lib")

    def sharedir(self) -> Path:
        """Where extension control files live, under ``extension/`` (``pg_config --sharedir``)."""
        return self._pg_config("--sharedir", Path("/usr/share/postgresql") / str(self.major))

    def _pg_config(self, option: str, debian_default: Path) -> Path:
        result = subprocess.run(
            [self.tool("pg_config"), option], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            # Debian ships pg_config with the server; fall back to its fixed layout.
            return debian_default
        return Path(result.stdout.strip())


def installed_majors() -> dict[int, PostgresInstall]:
    found = {}
    for pg_ctl in DEBIAN_POSTGRES_ROOT.glob("*/bin/pg_ctl"):
        major = pg_ctl.parent.parent.name
        if major.isdigit() and (pg_ctl.parent / "initdb").exists():
            found[int(major)] = PostgresInstall(int(major), pg_ctl.parent)
    return found


def find_install() -> PostgresInstall | None:
    """The newest PostgreSQL server installed the Debian way, if any."""
    majors = installed_majors()
    return majors[max(majors)] if majors else None


def require_install(paths: StackPaths) -> PostgresInstall:
    """The server binaries for this state folder, installing PostgreSQL when root and absent."""
    majors = installed_majors()
    data_major = _data_major(paths)
    if data_major is not None:
        if data_major not in majors:
            raise StackError(
                f"{paths.postgres_data} was created by PostgreSQL {data_major}, which is not "
                f"installed any more (found: {sorted(majors) or 'none'}); install "
                f"postgresql-{data_major}, or delete {paths.postgres_dir} to start over"
            )
        return majors[data_major]
    if not majors:
        _install_with_apt()
        majors = installed_majors()
        if not majors:
            raise StackError(f"installing PostgreSQL left no server in {DEBIAN_POSTGRES_ROOT}")
    return majors[max(majors)]


def _data_major(paths: StackPaths) -> int | None:
    version_file = paths.postgres_data / "PG_VERSION"
    if not version_file.exists():
        return None
    return int(version_file.read_text().strip().split(".")[0])


def _install_with_apt() -> None:
    if os.geteuid() != 0:
        raise StackError(
            f"no PostgreSQL server found in {DEBIAN_POSTGRES_ROOT}/<major>/bin; install it "
            "with `sudo apt-get install postgresql` (the server binaries are all the stack needs)"
        )
    print("PostgreSQL is not installed; installing it with apt-get ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
        # apt's chatter goes to stderr: stdout carries only the RETROLYTICS_… lines.
        result = subprocess.run(command, stdout=sys.stderr, env=env, check=False)
        if result.returncode != 0:
            raise StackError(f"`{' '.join(command)}` failed with exit code {result.returncode}")


def _as_service_user() -> dict[str, Any]:
    """subprocess arguments that drop root privileges to the postgres user."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError as exc:
        raise StackError(
            f"running as root, but there is no '{SERVICE_USER}' user to run PostgreSQL as "
            "(Debian's postgresql package creates it); run the stack as a normal user instead"
        ) from exc
    return {"user": SERVICE_USER, "group": SERVICE_USER, "extra_groups": []}


def _run(
    paths: StackPaths, args: Sequence[str], *, timeout: float = 120, new_session: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        cwd=paths.postgres_dir,  # a folder the postgres user may enter
        timeout=timeout,
        check=False,
        start_new_session=new_session,
        **_as_service_user(),
    )


def _postmaster_pid(paths: StackPaths) -> int | None:
    try:
        return int((paths.postgres_data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_running(paths: StackPaths) -> bool:
    major = _data_major(paths)
    install = installed_majors().get(major) if major is not None else None
    postmaster = _postmaster_pid(paths)
    # pg_ctl counts a dead but not yet reaped (zombie) postmaster as running; we do not.
    if install is None or postmaster is None or not processes.is_alive(postmaster):
        return False
    result = _run(paths, [install.tool("pg_ctl"), "status", "-D", str(paths.postgres_data)])
    return result.returncode == 0


def prepare_folders(paths: StackPaths) -> None:
    """Create the PostgreSQL folders, owned by (and reachable for) the user the server runs as."""
    for folder in (paths.postgres_dir, paths.postgres_socket_dir, paths.postgres_logs):
        folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    service = pwd.getpwnam(SERVICE_USER)
    open_to_service_user(paths.root, paths.postgres_dir)
    for folder in (paths.postgres_dir, paths.postgres_socket_dir, paths.postgres_logs):
        os.chown(folder, service.pw_uid, service.pw_gid)
    _check_traversable(paths.postgres_dir, service)


def open_to_service_user(*folders: Path) -> None:
    """When root runs the stack, let the postgres user read and enter these folders."""
    if os.geteuid() != 0:
        return
    for folder in folders:
        folder.chmod(folder.stat().st_mode | 0o055)


def _check_traversable(folder: Path, user: pwd.struct_passwd) -> None:
    for parent in [folder, *folder.parents]:
        info = parent.stat()
        if info.st_uid == user.pw_uid:
            allowed = info.st_mode & 0o100
        elif info.st_gid == user.pw_gid:
            allowed = info.st_mode & 0o010
        else:
            allowed = info.st_mode & 0o001
        if not allowed:
            raise StackError(
                f"PostgreSQL runs as the '{user.pw_name}' user, which may not enter {parent}; "
                f"put RETROLYTICS_STATE_DIR somewhere it can reach, or `chmod o+x {parent}`"
            )


def initialise(paths: StackPaths, install: PostgresInstall) -> bool:
    """``initdb`` once; returns whether a new cluster was created."""
    if _data_major(paths) is not None:
        return False
    if paths.postgres_data.exists():
        # A data folder without PG_VERSION is what an interrupted initdb leaves behind.
        _run(paths, ["rm", "-rf", str(paths.postgres_data)])
    result = _run(
        paths,
        [
            install.tool("initdb"),
            "-D",
            str(paths.postgres_data),
            "-U",
            BOOTSTRAP_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ],
    )
    if result.returncode != 0:
        raise StackError(
            f"initdb failed for {paths.postgres_data}:\n{result.stdout}{result.stderr}"
        )
    conf = paths.postgres_data / "postgresql.conf"
    with conf.open("a") as handle:
        handle.write("\n# Settings of the Retrolytics local stack (rewritten on each start).\n")
        handle.write(f"include '{CONFIG_FILE}'\n")
    return True


def _socket_dirs(paths: StackPaths, port: int) -> str:
    socket_path = paths.postgres_socket_dir / f".s.PGSQL.{port}"
    # Clients use TCP on loopback; without room for a socket path, go without a socket.
    return str(paths.postgres_socket_dir) if len(str(socket_path)) <= MAX_SOCKET_PATH else ""


def write_config(paths: StackPaths, port: int, extra: Mapping[str, str] | None = None) -> None:
    """Rewrite the stack's settings file; ``extra`` adds or overrides settings (Citus nodes)."""
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{_socket_dirs(paths, port)}'",
        "max_connections": "200",
        "shared_buffers": "'256MB'",
        "work_mem": "'16MB'",
        "maintenance_work_mem": "'256MB'",
        "effective_cache_size": "'1GB'",
        # Daily partitions: a query over months of events locks one relation per partition.
        "max_locks_per_transaction": "256",
        "fsync": "on",
        "max_wal_size": "'2GB'",
        "timezone": "'UTC'",
        "log_timezone": "'UTC'",
        "logging_collector": "on",
        "log_destination": "'stderr'",
        "log_directory": f"'{paths.postgres_logs}'",
        "log_filename": f"'{LOG_FILE}'",
        "log_rotation_age": "0",
        "log_rotation_size": "0",
        "log_line_prefix": "'%m [%p] %q%u@%d '",
        "log_min_duration_statement": "'5s'",
        **(extra or {}),
    }
    lines = [f"{name} = {value}" for name, value in settings.items()]
    config = paths.postgres_data / CONFIG_FILE
    write_atomically(config, "\n".join(lines) + "\n")
    if os.geteuid() == 0:
        service = pwd.getpwnam(SERVICE_USER)
        os.chown(config, service.pw_uid, service.pw_gid)


def _wait_for_crashed_postmaster(paths: StackPaths) -> None:
    """A crashed postmaster stays a zombie until its parent reaps it; until then PostgreSQL
    takes its lock file for a live server and refuses to start."""
    postmaster = _postmaster_pid(paths)
    if postmaster is None:
        return
    deadline = time.monotonic() + ZOMBIE_TIMEOUT
    while processes.exists(postmaster) and not processes.is_alive(postmaster):
        if time.monotonic() > deadline:
            raise StackError(
                f"the crashed PostgreSQL server (pid {postmaster}, {paths.postgres_data}) has "
                f"not been reaped by its parent process after {ZOMBIE_TIMEOUT}s; retry later"
            )
        time.sleep(0.1)


def start(
    paths: StackPaths,
    install: PostgresInstall,
    port: int,
    extra: Mapping[str, str] | None = None,
    superuser_password: str | None = None,
) -> None:
    """Start the server; ``superuser_password`` where the cluster already requires one."""
    _wait_for_crashed_postmaster(paths)
    write_config(paths, port, extra)
    result = _run(
        paths,
        [
            install.tool("pg_ctl"),
            "start",
            "-D",
            str(paths.postgres_data),
            "-l",
            str(paths.postgres_logs / STARTUP_LOG),
            "-w",
            "-t",
            str(READY_TIMEOUT),
        ],
        timeout=READY_TIMEOUT + 30,
        new_session=True,  # the server must outlive this process and its terminal
    )
    if result.returncode != 0:
        raise StackError(
            f"PostgreSQL did not start on 127.0.0.1:{port}:\n{result.stdout}{result.stderr}\n"
            f"{_log_excerpt(paths)}"
        )
    _wait_until_accepting(paths, port, superuser_password)


def _log_excerpt(paths: StackPaths) -> str:
    parts = []
    for name in (STARTUP_LOG, LOG_FILE):
        log = paths.postgres_logs / name
        parts.append(f"--- last lines of {log} ---\n{tail(log, 25)}")
    return "\n".join(parts)


def _connect(
    port: int, user: str, dbname: str, password: str | None = None
) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=user,
        dbname=dbname,
        password=password,
        autocommit=True,
        connect_timeout=5,
    )


def _wait_until_accepting(paths: StackPaths, port: int, password: str | None = None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            with _connect(port, BOOTSTRAP_SUPERUSER, "postgres", password) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise StackError(
                    f"PostgreSQL on 127.0.0.1:{port} does not accept connections after "
                    f"{READY_TIMEOUT}s ({exc}); see {paths.postgres_logs}\n{_log_excerpt(paths)}"
                ) from exc
            time.sleep(0.2)


def ensure_roles_and_database(port: int, passwords: Mapping[str, str]) -> None:
    """The job roles, the owner and one login per job, and the owner's database. No login is a
    superuser: the owner may create databases, and end sessions in them (``pg_signal_backend``)
    so that it can drop a test database a job's login still uses."""
    owner = sql.Identifier(credentials.OWNER.name)
    with _connect(port, BOOTSTRAP_SUPERUSER, "postgres", passwords[BOOTSTRAP_SUPERUSER]) as conn:
        for group in roles.GROUPS:
            _create_role_once(conn, group, sql.SQL("NOLOGIN"))
        _create_role_once(conn, credentials.OWNER.name, sql.SQL("LOGIN"))
        conn.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER CREATEDB LOGIN").format(owner))
        conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(owner))
        for login in credentials.JOB_LOGINS:
            _create_role_once(conn, login.name, sql.SQL("LOGIN"))
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(login.group), sql.Identifier(login.name)
                )
            )
        database_exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (LOCAL_DATABASE,)
        ).fetchone()
        if not database_exists:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(LOCAL_DATABASE), owner)
            )


def _create_role_once(conn: psycopg.Connection[Any], role: str, options: sql.Composable) -> None:
    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        conn.execute(sql.SQL("CREATE ROLE {} {}").format(sql.Identifier(role), options))


def ensure_role_and_database(port: int) -> None:
    """The ``retrolytics`` login and its database on a Citus node: a superuser there (the nodes
    create the citus extension and connect to one another as it), and loopback is trusted. The
    single-node stack uses ``ensure_roles_and_database`` and passwords instead."""
    with _connect(port, BOOTSTRAP_SUPERUSER, "postgres") as conn:
        role_exists = conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (LOCAL_USER,)
        ).fetchone()
        if not role_exists:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(LOCAL_USER))
            )
        database_exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (LOCAL_DATABASE,)
        ).fetchone()
        if not database_exists:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(LOCAL_DATABASE), sql.Identifier(LOCAL_USER)
                )
            )


def require_passwords(paths: StackPaths, port: int, passwords: Mapping[str, str]) -> None:
    """Give every login its password, then make loopback connections prove one (scram).

    Run after each start. A cluster made by ``initdb --auth=trust`` (or by a version of the
    stack that trusted loopback) gets its passwords while trust still lets the superuser in;
    only then does the rewritten ``pg_hba.conf`` take effect, by a reload.
    """
    with _connect(port, BOOTSTRAP_SUPERUSER, "postgres", passwords[BOOTSTRAP_SUPERUSER]) as conn:
        for role, password in passwords.items():
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
        write_hba(paths, "scram-sha-256")
        conn.execute("SELECT pg_reload_conf()")


def write_hba(paths: StackPaths, method: str) -> None:
    """Rewrite ``pg_hba.conf``: every connection, loopback or socket, authenticates so."""
    lines = [
        "# Written by `retrolytics stack up` on every start; edits are overwritten.",
        f"local all all {method}",
        f"host all all 127.0.0.1/32 {method}",
        f"host all all ::1/128 {method}",
    ]
    hba = paths.postgres_data / "pg_hba.conf"
    write_atomically(hba, "\n".join(lines) + "\n")
    if os.geteuid() == 0:
        service = pwd.getpwnam(SERVICE_USER)
        os.chown(hba, service.pw_uid, service.pw_gid)


def stop(paths: StackPaths) -> bool:
    """``pg_ctl stop -m fast``; returns whether a running server was stopped."""
    if not is_running(paths):
        return False
    install = require_install(paths)
    result = _run(
        paths,
        [install.tool("pg_ctl"), "stop", "-D", str(paths.postgres_data), "-m", "fast", "-w"],
    )
    if result.returncode != 0:
        raise StackError(f"pg_ctl stop failed:\n{result.stdout}{result.stderr}")
    return True
