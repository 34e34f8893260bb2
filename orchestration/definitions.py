"""The ``orchestration`` code location: ``workspace.yaml`` and ``[tool.dagster]`` load ``defs``."""

from __future__ import annotations

import dagster as dg

from orchestration.assets.dbt import dbt_current, dbt_daily
from orchestration.assets.funnels import funnel_assets
from orchestration.assets.paths import path_assets
from orchestration.assets.raw import raw_events
from orchestration.assets.retention import retention_assets
from orchestration.checks import raw_events_fresh
from orchestration.erasure import erase_subjects_job
from orchestration.jobs import check_raw_events, derive, load_raw_events, maintain_raw_events
from orchestration.resources import RetrolyticsResource, dbt_resource
from orchestration.schedules import schedules
from orchestration.sensors import declarations_changed


def build_definitions(retrolytics: RetrolyticsResource | None = None) -> dg.Definitions:
    """Everything in the code location; ``retrolytics`` overrides the environment's settings."""
    return dg.Definitions(
        assets=[
            raw_events,
            dbt_current,
            dbt_daily,
            *funnel_assets,
            *path_assets,
            *retention_assets,
        ],
        asset_checks=[raw_events_fresh],
        jobs=[derive, load_raw_events, check_raw_events, maintain_raw_events, erase_subjects_job],
        schedules=schedules,
        sensors=[declarations_changed],
        resources={"dbt": dbt_resource(), "retrolytics": retrolytics or RetrolyticsResource()},
        # The steps of a run are sequential (dbt takes the warehouse one invocation at a time)
        # and dbt is a subprocess anyway: one process per run instead of one per step saves a
        # code-location load per step.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
