"""The local stack's logins and their passwords, made once and kept in the state folder.

Passwords are random, written to ``<state dir>/passwords.json`` (mode 0600, git-ignored with the
rest of the state folder) and handed to processes inside the URLs ``retrolytics stack status``
prints. Nothing here is a secret worth more than the local cluster it opens.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass

from ingestion import roles
from ingestion.settings import LOCAL_USER
from ingestion.stack.layout import StackPaths

SUPERUSER = "postgres"  # the cluster's bootstrap superuser; only the stack itself logs in as it


@dataclass(frozen=True)
class Login:
    name: str
    group: str | None  # the job role it is a member of; None for the superuser and the owner


# The owner runs the bootstrap and creates test databases; each job's login joins its group.
OWNER = Login(LOCAL_USER, None)
LOADER = Login("loader", roles.LOADER)
DBT = Login("dbt", roles.TRANSFORM)
BI_READER = Login("bi_reader", roles.BI)
JOB_LOGINS = (LOADER, DBT, BI_READER)
ALL_LOGINS = (SUPERUSER, OWNER.name, *(login.name for login in JOB_LOGINS))


def passwords(paths: StackPaths) -> dict[str, str]:
    """Every login's password, made on first use and the same ever after."""
    path = paths.root / "passwords.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in ALL_LOGINS if name not in known]
    if missing:
        known.update({name: secrets.token_urlsafe(18) for name in missing})
        partial = path.with_name(f".{path.name}.partial")
        partial.touch(mode=0o600)
        partial.chmod(0o600)
        partial.write_text(json.dumps(known, indent=2) + "\n")
        os.replace(partial, path)
    return known


def erasure_key(paths: StackPaths) -> str:
    """The key erased identities are hashed with (``ingestion.erasure``), made once."""
    path = paths.root / "erasure.key"
    if not path.exists():
        partial = path.with_name(f".{path.name}.partial")
        partial.touch(mode=0o600)
        partial.chmod(0o600)
        partial.write_text(secrets.token_urlsafe(32))
        os.replace(partial, path)
    return path.read_text().strip()
