"""The BI login must read ``marts`` before a dashboard can: a freshly derived warehouse (``make
demo``) has not granted the group ``retrolytics_bi`` yet, so ``bi up`` does it the documented way
(dbt's ``create_bi_role``, as the login that owns the marts) when it can."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg.conninfo import conninfo_to_dict

from retrolytics.bi import MARTS_SCHEMA, BiError

SCHEMA = MARTS_SCHEMA


def reads_marts(bi_url: str) -> bool:
    """Whether the login may use the schema; BiError when the schema is not there at all."""
    try:
        with psycopg.connect(bi_url, connect_timeout=10) as conn:
            exists = conn.execute(
                "select 1 from pg_namespace where nspname = %s", (SCHEMA,)
            ).fetchone()
            if not exists:
                raise BiError(
                    f"the warehouse has no schema {SCHEMA} yet: derive it first "
                    "(`make demo`, or `retrolytics dbt build`)"
                )
            return conn.execute("select has_schema_privilege(%s, 'usage')", (SCHEMA,)).fetchone()[0]
    except psycopg.OperationalError as error:
        raise BiError(f"the BI login cannot connect: {str(error).strip()}") from error


def _same_database(first: str, second: str) -> bool:
    keys = ("host", "port", "dbname")
    a, b = conninfo_to_dict(first), conninfo_to_dict(second)
    return all(str(a.get(key)) == str(b.get(key)) for key in keys)


def ensure_marts_readable(bi_url: str, dbt_url: str, say: Callable[[str], None]) -> None:
    if reads_marts(bi_url):
        return
    if not _same_database(bi_url, dbt_url):
        raise BiError(
            "the BI login may not read the marts: run `retrolytics dbt run-operation "
            "create_bi_role` on its database, and make the login a member of retrolytics_bi"
        )
    from retrolytics.warehouse import runner

    say("granting the group retrolytics_bi the marts (dbt run-operation create_bi_role)")
    runner.run_dbt(["run-operation", "create_bi_role"], database_url=dbt_url)
    if not reads_marts(bi_url):
        raise BiError("the BI login is not a member of retrolytics_bi: grant it the group")
