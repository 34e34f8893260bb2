"""Connection settings, read from the environment with defaults that point at the local stack.

Every process (loader, generator, collector, dbt profile, Dagster resources) reads its settings
here, so a user with their own Kafka and PostgreSQL/Citus sets these variables and nothing else:

| variable                        | default                                             |
| ------------------------------- | --------------------------------------------------- |
| RETROLYTICS_DATABASE_URL        | the local stack's PostgreSQL (``stack status``)     |
| RETROLYTICS_KAFKA_BOOTSTRAP     | the local stack's Kafka broker                      |
| RETROLYTICS_TOPIC               | ``retrolytics.events``                              |
| RETROLYTICS_CONSUMER_GROUP      | ``retrolytics-loader``                              |
| RETROLYTICS_HOME                | the project folder (see ``project_home``)           |
| RETROLYTICS_STATE_DIR           | ``.retrolytics`` in the project folder              |
| RETROLYTICS_LOADER_DATABASE_URL | the loader's login (else RETROLYTICS_DATABASE_URL)  |
| RETROLYTICS_DBT_DATABASE_URL    | dbt's login (else RETROLYTICS_DATABASE_URL)         |
| RETROLYTICS_BI_DATABASE_URL     | a BI login (read by tests and BI set-up only)       |
| RETROLYTICS_ERASURE_KEY         | the key erased identities are hashed with           |

RETROLYTICS_DATABASE_URL is the database owner's: it runs the bootstrap. Each job's own URL
carries a login with just that job's privileges (``ingestion.roles``); the local stack sets all.

The local stack writes the ports it picked to ``<state dir>/stack.env``; when a variable is not
set, that file supplies it, and when there is no file either, the fixed fallback ports below do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

DEFAULT_TOPIC = "retrolytics.events"
DEFAULT_CONSUMER_GROUP = "retrolytics-loader"
FALLBACK_POSTGRES_PORT = 54329
FALLBACK_KAFKA_PORT = 19092
LOCAL_DATABASE = "retrolytics"
LOCAL_USER = "retrolytics"


def project_home() -> Path:
    """The folder of the Retrolytics project in use: ``RETROLYTICS_HOME``, else the nearest
    folder from the working directory up that holds a ``definitions/`` folder (as git finds its
    repository), else the working directory."""
    chosen = os.environ.get("RETROLYTICS_HOME")
    if chosen:
        return Path(chosen)
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "definitions").is_dir():
            return folder
    return here


def state_dir() -> Path:
    """The git-ignored folder holding the local stack's data, logs and chosen ports."""
    return Path(os.environ.get("RETROLYTICS_STATE_DIR") or project_home() / ".retrolytics")


def stack_env_file() -> Path:
    return state_dir() / "stack.env"


def read_stack_env() -> dict[str, str]:
    """The ``RETROLYTICS_…=value`` lines the local stack wrote when it started."""
    path = stack_env_file()
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("RETROLYTICS_"):
            values[key.strip()] = value.strip()
    return values


def local_database_url(
    port: int, database: str = LOCAL_DATABASE, user: str = LOCAL_USER, password: str | None = None
) -> str:
    login = f"{user}:{quote(password, safe='')}" if password else user
    return f"postgresql://{login}@127.0.0.1:{port}/{database}"


@dataclass(frozen=True)
class Settings:
    database_url: str
    kafka_bootstrap: str
    topic: str = DEFAULT_TOPIC
    consumer_group: str = DEFAULT_CONSUMER_GROUP
    loader_database_url: str | None = None
    dbt_database_url: str | None = None
    bi_database_url: str | None = None  # a login in retrolytics_bi (BI set-up and tests)
    erasure_key: str | None = None  # RETROLYTICS_ERASURE_KEY (ingestion.erasure)

    @property
    def loader_url(self) -> str:
        """The loader's login, or the owner's where no separate login is configured."""
        return self.loader_database_url or self.database_url

    @property
    def dbt_url(self) -> str:
        """dbt's login, or the owner's where no separate login is configured."""
        return self.dbt_database_url or self.database_url

    @classmethod
    def from_env(cls) -> Settings:
        stack = read_stack_env()
        if os.environ.get("RETROLYTICS_DATABASE_URL"):
            # The job logins of the stack belong to the stack's database, not to this one.
            stack = {k: v for k, v in stack.items() if not k.endswith("_DATABASE_URL")}

        def pick(name: str, default: str) -> str:
            return os.environ.get(name) or stack.get(name) or default

        return cls(
            database_url=pick(
                "RETROLYTICS_DATABASE_URL", local_database_url(FALLBACK_POSTGRES_PORT)
            ),
            kafka_bootstrap=pick("RETROLYTICS_KAFKA_BOOTSTRAP", f"127.0.0.1:{FALLBACK_KAFKA_PORT}"),
            topic=pick("RETROLYTICS_TOPIC", DEFAULT_TOPIC),
            consumer_group=pick("RETROLYTICS_CONSUMER_GROUP", DEFAULT_CONSUMER_GROUP),
            loader_database_url=pick("RETROLYTICS_LOADER_DATABASE_URL", "") or None,
            dbt_database_url=pick("RETROLYTICS_DBT_DATABASE_URL", "") or None,
            bi_database_url=pick("RETROLYTICS_BI_DATABASE_URL", "") or None,
            erasure_key=pick("RETROLYTICS_ERASURE_KEY", "") or None,
        )

    def with_overrides(self, **changes: str | None) -> Settings:
        """A copy with the given settings; ``None`` keeps a setting as it is. A new
        ``database_url`` also drops the job logins it does not name: they belong to the
        database that was configured before."""
        given = {k: v for k, v in changes.items() if v is not None}
        if "database_url" in given:
            given.setdefault("loader_database_url", None)
            given.setdefault("dbt_database_url", None)
            given.setdefault("bi_database_url", None)
        return replace(self, **given)
