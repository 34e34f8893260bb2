"""``retrolytics erase --user ID | --device ID``: forget a person or a device, then re-derive.

The raw rows (and the erasure record) go as the database's owner; the rows of the models go as
dbt's login, which owns them; then dbt rebuilds the models over all history, so aggregates
without identity columns (daily marts) drop the erased units too. ``--no-rederive`` leaves the
rebuild to the next run (Dagster's ``erase_subjects`` job erases a batch, then rebuilds once).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import psycopg

from ingestion import erasure
from ingestion.settings import Settings
from retrolytics.language.check import DefinitionsInvalid
from retrolytics.warehouse import project, runner


def erase_subjects(
    settings: Settings,
    subjects: Sequence[tuple[str, str]],
    reason: str | None,
) -> list[erasure.ErasureReport]:
    """Erase each (kind, identity): the owner's tables first, then dbt's."""
    key = erasure.erasure_key({erasure.KEY_SETTING: settings.erasure_key or ""})
    reports = []
    with psycopg.connect(settings.database_url, autocommit=True) as owner:
        for kind, identity in subjects:
            reports.append(erasure.erase(owner, key, reason=reason, **{kind: identity}))
    if settings.dbt_url != settings.database_url:
        with psycopg.connect(settings.dbt_url, autocommit=True) as dbt:
            for report in reports:
                users = [report.identity] if report.kind == "user" else []
                for table, rows in erasure.delete_rows(dbt, users, report.devices).items():
                    report.rows_deleted[table] = report.rows_deleted.get(table, 0) + rows
    return reports


def rederive(settings: Settings, definitions: str | None = None) -> None:
    """Rebuild every model over all history (no window): what an erasure leaves must go."""
    runner.run_dbt(
        ["build", "--quiet"],
        database_url=settings.dbt_url,
        definitions_dir=project.definitions_dir(definitions),
    )


def main(
    settings: Settings,
    *,
    user: str | None,
    device: str | None,
    reason: str | None,
    rederive_models: bool,
    definitions: str | None = None,
) -> int:
    subject = ("user", user) if user is not None else ("device", device)
    try:
        (report,) = erase_subjects(settings, [subject], reason)
    except erasure.ErasureKeyMissing as exc:
        print(f"retrolytics erase: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    if rederive_models and report.found:
        try:
            rederive(settings, definitions)
        except (DefinitionsInvalid, runner.DbtFailed) as exc:
            print(f"retrolytics erase: the rows are erased, but re-deriving failed: {exc}")
            return 1
        print("re-derived every model over all history")
    return 0
