"""``retrolytics bi up | down``: a real Apache Superset on the marts, on a loopback port.

Everything lives in ``<state dir>/superset/``: the virtualenv (``venv/``, see
``retrolytics.bi.environment``), ``superset_config.py`` (written on every ``up``), the secret key
(made once), the port picked the first time, the pid and log of the server and the last
dashboard bundle imported. The admin login's generated password is kept beside the stack's
(``<state dir>/superset_admin.password``). Superset's own metadata lives in the database
``superset`` of the warehouse's server, created by the owner login; the warehouse connection
Superset queries is the BI login's (``RETROLYTICS_BI_DATABASE_URL``), schema ``marts``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ingestion.settings import Settings, state_dir
from ingestion.stack.layout import exclusive, tail, write_atomically
from ingestion.stack.ports import HOST, is_free, pick_free_ports
from retrolytics.bi import BiError, access, bundle, environment, metadata
from retrolytics.bi.api import SupersetApi
from retrolytics.warehouse import project

ADMIN = "admin"
METADATA_DATABASE = "superset"
PASSWORD_MASK = "XXXXXXXXXX"  # what Superset shows for a hidden password in a URI
HEALTH_DEADLINE_S = (
    600.0  # generous: a cold start takes a minute on a quiet machine, more on a busy one
)
COMMAND_TIMEOUT_S = 1200.0
STOP_WAIT_S = 30.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class SupersetPaths:
    root: Path
    admin_password: Path

    @classmethod
    def current(cls) -> SupersetPaths:
        state = state_dir().absolute()
        return cls(root=state / "superset", admin_password=state / "superset_admin.password")

    @property
    def env(self) -> Path:
        return self.root / "venv"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def config(self) -> Path:
        return self.root / "superset_config.py"

    @property
    def secret_key(self) -> Path:
        return self.root / "secret_key"

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    @property
    def pid_file(self) -> Path:
        return self.root / "superset.pid"

    @property
    def log(self) -> Path:
        return self.root / "superset.log"

    @property
    def initialized(self) -> Path:
        return self.root / "initialized"

    @property
    def bundle(self) -> Path:
        return self.root / "dashboard_bundle.zip"

    @property
    def lock(self) -> Path:
        return self.root / "bi.lock"


@dataclass(frozen=True)
class Running:
    url: str
    dashboard_url: str
    admin_password_file: Path
    bundle: Path


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- URLs and secrets --------------------------------------------------------------------------


def sqlalchemy_url(url: str, *, database: str | None = None, password: str | None = None) -> str:
    """A libpq connection string (URL or ``key=value``) as SQLAlchemy's psycopg2 dialect takes
    it, optionally for another database or with another password (Superset's mask)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise BiError(f"not a PostgreSQL connection string: {error}") from error
    if database is not None:
        params["dbname"] = database
    if password is not None and params.get("password"):
        params["password"] = password
    login = quote(str(params.get("user", "")), safe="")
    if params.get("password"):
        login += ":" + quote(str(params["password"]), safe="")
    host = f"{params.get('host', HOST)}:{params.get('port', 5432)}"
    return f"postgresql+psycopg2://{login}@{host}/{quote(str(params.get('dbname', '')), safe='')}"


def _password_of(url: str) -> str:
    password = conninfo_to_dict(url).get("password")
    if not password:
        raise BiError("RETROLYTICS_BI_DATABASE_URL has no password; Superset needs one to log in")
    return str(password)


def _made_once(path: Path) -> str:
    """A random secret kept in a file of mode 0600, made the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.touch(mode=0o600)
        partial.chmod(0o600)
        partial.write_text(secrets.token_urlsafe(32) + "\n")
        os.replace(partial, path)
    return path.read_text().strip()


# -- the metadata database and the config ------------------------------------------------------


def _ensure_metadata_database(owner_url: str) -> bool:
    """Create Superset's metadata database as the owner; True when it is new."""
    try:
        with psycopg.connect(owner_url, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (METADATA_DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("create database {}").format(sql.Identifier(METADATA_DATABASE))
                )
            return not exists
    except psycopg.OperationalError as error:
        where = conninfo_to_dict(owner_url)
        server = f"{where.get('host')}:{where.get('port')}"
        raise BiError(
            f"the warehouse's PostgreSQL at {server} does not answer "
            f"({str(error).strip().splitlines()[-1]}); start it with `retrolytics stack up` "
            "or set RETROLYTICS_DATABASE_URL"
        ) from error


def _write_config(paths: SupersetPaths, owner_url: str) -> None:
    metadata_uri = sqlalchemy_url(owner_url, database=METADATA_DATABASE)
    text = f"""# Written by `retrolytics bi up` on every run (retrolytics/bi/superset.py).
from pathlib import Path

SECRET_KEY = Path({str(paths.secret_key)!r}).read_text().strip()
SQLALCHEMY_DATABASE_URI = {metadata_uri!r}
DATA_DIR = {str(paths.home)!r}
# Served on loopback over plain HTTP: no HTTPS redirect or HSTS.
TALISMAN_ENABLED = False
CONTENT_SECURITY_POLICY_WARNING = False
RATELIMIT_STORAGE_URI = "memory://"
SUPERSET_WEBSERVER_TIMEOUT = 300
SQLLAB_TIMEOUT = 300
"""
    paths.config.touch(mode=0o600)
    paths.config.chmod(0o600)  # it holds the owner's password, as stack.env does
    write_atomically(paths.config, text)


def _superset_env(paths: SupersetPaths) -> dict[str, str]:
    return {
        **os.environ,
        "SUPERSET_CONFIG_PATH": str(paths.config),
        "SUPERSET_HOME": str(paths.home),
        "FLASK_APP": "superset.app:create_app()",
    }


@contextlib.contextmanager
def _logged(paths: SupersetPaths, header: str) -> Iterator[dict]:
    """The options of a Superset process whose output is appended to the log, after a header."""
    with paths.log.open("a") as log:
        log.write(f"\n$ {header}\n")
        log.flush()
        yield {
            "env": _superset_env(paths),
            "stdout": log,
            "stderr": subprocess.STDOUT,
            "stdin": subprocess.DEVNULL,
            "cwd": paths.root,
        }


def _superset(paths: SupersetPaths, *args: str) -> None:
    """One ``superset`` command in the environment; its output goes to the log."""
    command = [str(environment.executable(paths.env, "superset")), *args]
    with _logged(paths, f"superset {args[0]} {args[1] if len(args) > 1 else ''}") as options:
        done = subprocess.run(command, timeout=COMMAND_TIMEOUT_S, **options)
    if done.returncode != 0:
        raise BiError(f"`superset {args[0]}` failed; the end of {paths.log}:\n{tail(paths.log)}")


def _needs_initializing(paths: SupersetPaths, new_database: bool) -> bool:
    """Migrations, the admin login and the roles: once per install and metadata database."""
    stamp = f"{environment.requirements_digest()}\n"
    return new_database or not paths.initialized.exists() or paths.initialized.read_text() != stamp


def _migrate(paths: SupersetPaths, say: Say) -> None:
    paths.initialized.unlink(missing_ok=True)
    say("preparing Superset's metadata database (superset db upgrade, fab create-admin, init)")
    _superset(paths, "db", "upgrade")


def _create_admin_and_roles(paths: SupersetPaths, password: str) -> None:
    admin = ["--username", ADMIN, "--firstname", "Retrolytics", "--lastname", "Admin"]
    admin += ["--email", "admin@retrolytics.invalid", "--password", password]
    _superset(paths, "fab", "create-admin", *admin)
    _superset(paths, "init")
    paths.initialized.write_text(f"{environment.requirements_digest()}\n")


# -- the server --------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (one that exited and was not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _running_pid(paths: SupersetPaths) -> int | None:
    """The server's pid when the pid file names a live Superset process."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # An empty command line was seen for a moment while the server started: not another program.
    return pid if not cmdline or b"superset" in cmdline else None


def _chosen_port(paths: SupersetPaths, requested: int | None) -> int:
    if requested is not None:
        port = requested
    elif paths.port_file.exists():
        port = int(paths.port_file.read_text().strip())
    else:
        port = pick_free_ports(1)[0]
    if not is_free(port):
        raise BiError(
            f"port {port} on {HOST} is taken by another program; choose another one with "
            "`retrolytics bi up --port N`"
        )
    write_atomically(paths.port_file, f"{port}\n")
    return port


def _start(paths: SupersetPaths, port: int) -> int:
    gunicorn = environment.executable(paths.env, "gunicorn")
    command = [str(gunicorn), "--bind", f"{HOST}:{port}", "--workers", "1", "--threads", "8"]
    command += ["--worker-class", "gthread", "--timeout", "300", "--no-control-socket"]
    command.append("superset.app:create_app()")
    with _logged(paths, f"gunicorn on {HOST}:{port}") as options:
        # Its own process group: `bi down` stops master and worker.
        server = subprocess.Popen(command, start_new_session=True, **options)
    write_atomically(paths.pid_file, f"{server.pid}\n")
    return server.pid


def _wait_healthy(paths: SupersetPaths, url: str, pid: int) -> None:
    deadline = time.monotonic() + HEALTH_DEADLINE_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise BiError(
                f"Superset exited while starting; the end of {paths.log}:\n{tail(paths.log)}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            pass
        time.sleep(1.0)
    raise BiError(
        f"Superset did not answer {url}/health within {HEALTH_DEADLINE_S:.0f} s; see {paths.log}"
    )


def _port_of(paths: SupersetPaths) -> int:
    return int(paths.port_file.read_text().strip())


# -- the dashboard -----------------------------------------------------------------------------


def provision(url: str, password: str, bi_url: str, definitions: str | None, out: Path) -> None:
    """Import the dashboard generated from the project's metadata (again: same objects)."""
    described = metadata.read(project.definitions_dir(definitions), project.dbt_project_dir())
    documents = bundle.files(described, sqlalchemy_url(bi_url, password=PASSWORD_MASK))
    packed = bundle.zipped(documents)
    write_atomically(out, packed)
    api = SupersetApi(url)
    api.login(ADMIN, password)
    api.import_bundle(packed, {bundle.DATABASE_FILE: _password_of(bi_url)})


# -- up and down -------------------------------------------------------------------------------


def _ensure_running(
    paths: SupersetPaths, settings: Settings, port: int | None, new_database: bool, say: Say
) -> int:
    """The server's pid: the running one, else one started (installed and initialized first
    where needed). Bad input fails before the long install."""
    pid = _running_pid(paths)
    if pid is not None and port is not None and port != _port_of(paths):
        raise BiError(
            f"Superset already runs on port {_port_of(paths)}; `retrolytics bi down` first "
            "to move it"
        )
    if pid is not None and new_database:  # its metadata database went away: start afresh
        _stop(paths, pid)
        pid = None
    if pid is None:
        chosen = _chosen_port(paths, port)
    environment.ensure(paths.env, say)
    _made_once(paths.secret_key)
    _write_config(paths, settings.database_url)
    if pid is not None:
        return pid
    initializing = _needs_initializing(paths, new_database)
    if initializing:
        _migrate(paths, say)
    pid = _start(paths, chosen)  # it boots while the admin and roles are made
    if initializing:
        _create_admin_and_roles(paths, _made_once(paths.admin_password))
    return pid


def up(
    settings: Settings,
    *,
    port: int | None = None,
    definitions: str | None = None,
    say: Say = _say,
) -> Running:
    """Install, initialize and start Superset unless it runs, then (re-)provision the dashboard."""
    bi_url = settings.bi_database_url
    if not bi_url:
        raise BiError(
            "no BI login: set RETROLYTICS_BI_DATABASE_URL (a login in the group retrolytics_bi) "
            "or start the local stack (`retrolytics stack up`)"
        )
    paths = SupersetPaths.current()
    paths.home.mkdir(parents=True, exist_ok=True)
    with exclusive(paths.lock):
        new_database = _ensure_metadata_database(settings.database_url)
        access.ensure_marts_readable(bi_url, settings.dbt_url, say)
        pid = _ensure_running(paths, settings, port, new_database, say)
        url = f"http://{HOST}:{_port_of(paths)}"
        _wait_healthy(paths, url, pid)
        password = _made_once(paths.admin_password)
        provision(url, password, bi_url, definitions, paths.bundle)
    return Running(
        url=url,
        dashboard_url=f"{url}/superset/dashboard/{bundle.DASHBOARD_SLUG}/",
        admin_password_file=paths.admin_password,
        bundle=paths.bundle,
    )


def _stop(paths: SupersetPaths, pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while _running_pid(paths) == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if _running_pid(paths) == pid:
        os.killpg(pid, signal.SIGKILL)
    paths.pid_file.unlink(missing_ok=True)


def down(say: Say = _say) -> bool:
    """Stop the server; False when none was running."""
    paths = SupersetPaths.current()
    if not paths.root.exists():
        return False
    with exclusive(paths.lock):
        pid = _running_pid(paths)
        if pid is None:
            paths.pid_file.unlink(missing_ok=True)
            return False
        _stop(paths, pid)
    say(f"Superset stopped (pid {pid})")
    return True


def main(settings: Settings, action: str, port: int | None, definitions: str | None) -> int:
    from retrolytics.language.check import DefinitionsInvalid

    try:
        if action == "down":
            if not down():
                _say("Superset is not running")
            return 0
        running = up(settings, port=port, definitions=definitions)
    except DefinitionsInvalid as error:
        for problem in error.problems:
            _say(str(problem))
        return 2
    except BiError as error:
        _say(f"retrolytics bi {action}: {error}")
        return 1
    print(f"Superset: {running.url}")
    print(f"dashboard: {running.dashboard_url}")
    print(f"login: {ADMIN}, password in {running.admin_password_file}")
    print(f"dashboard bundle (as imported): {running.bundle}")
    return 0
