"""The ``erase_subjects`` job: erase a batch of persons and devices, then rebuild the models once.

Launch it from the UI (Launchpad) with run config such as::

    ops:
      erase:
        config:
          users: ["user-17"]
          devices: ["0f3c..."]
          reason: "GDPR request 2026-114"

Each subject goes as ``retrolytics erase`` does it (``retrolytics.erase``); the rebuild runs
after the whole batch, holding the warehouse lock like every dbt run.
"""

import dagster as dg
from pydantic import Field

from orchestration.resources import RetrolyticsResource
from retrolytics.erase import erase_subjects, rederive


class ErasureConfig(dg.Config):
    users: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)
    reason: str | None = None
    rederive: bool = True


@dg.op(description="Erase the persons and devices named in the config, then rebuild the models.")
def erase(
    context: dg.OpExecutionContext, config: ErasureConfig, retrolytics: RetrolyticsResource
) -> dg.Output[None]:
    settings = retrolytics.settings()
    subjects = [("user", u) for u in config.users] + [("device", d) for d in config.devices]
    reports = erase_subjects(settings, subjects, config.reason)
    for report in reports:
        context.log.info(report.summary())
    if config.rederive and any(report.found for report in reports):
        rederive(settings)
    return dg.Output(
        None,
        metadata={
            "subjects": len(subjects),
            "found": sum(report.found for report in reports),
            "rows deleted": sum(sum(r.rows_deleted.values()) for r in reports),
        },
    )


@dg.job(
    name="erase_subjects",
    description="Erase a batch of persons and devices everywhere, then rebuild the models.",
)
def erase_subjects_job() -> None:
    erase()
