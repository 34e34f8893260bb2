"""The ``orchestration`` code location: ``workspace.yaml`` and ``[tool.dagster]`` load ``defs``."""

from __future__ import annotations

import dagster as dg

from orchestration.assets.dbt import dbt_current, dbt_daily
from orchestration.assets.funnels import funnel_assets
from orchestration.assets.raw import raw_events
from orchestration.checks import raw_events_fresh
from orchestration.jobs import check_raw_events, derive, load_raw_events
from orchestration.resources import RetrolyticsResource, dbt_resource
from orchestration.schedules import schedules
from orchestration.sensors import declarations_changed

defs = dg.Definitions(
    assets=[raw_events, dbt_current, dbt_daily, *funnel_assets],
    asset_checks=[raw_events_fresh],
    jobs=[derive, load_raw_events, check_raw_events],
    schedules=schedules,
    sensors=[declarations_changed],
    resources={"dbt": dbt_resource(), "retrolytics": RetrolyticsResource()},
)
