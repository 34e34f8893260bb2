"""Jobs: derive a partition, load the topic (drain mode), check that raw events are fresh,
keep raw.events' storage up (maintain)."""

from __future__ import annotations

import dagster as dg

from orchestration.assets.dbt import dbt_current, dbt_daily
from orchestration.assets.funnels import funnel_assets
from orchestration.assets.paths import path_assets
from orchestration.assets.raw import RAW_EVENTS, load_raw_events, maintain_raw_events
from orchestration.assets.retention import retention_assets
from orchestration.checks import raw_events_fresh

# dbt's tests of the raw.events source run in the dbt step; they are checks of raw events.
RAW_EVENTS_DBT_CHECKS = [key for key in dbt_current.check_keys if key.asset_key == RAW_EVENTS]
DERIVED = dg.AssetSelection.assets(
    dbt_current, dbt_daily, *funnel_assets, *path_assets, *retention_assets
) | (dg.AssetSelection.checks(*RAW_EVENTS_DBT_CHECKS))

derive = dg.define_asset_job(
    "derive",
    selection=DERIVED,
    description=(
        "Compile the declarations, build every dbt model and test, and refresh the funnels, "
        "for one day (or, as a backfill, a range of days in one run)."
    ),
    tags={"retrolytics/stage": "derive"},
)

check_raw_events = dg.define_asset_job(
    "check_raw_events",
    selection=dg.AssetSelection.checks(raw_events_fresh),
    description="Is traffic flowing? Runs the freshness check of raw.events.",
)

__all__ = ["DERIVED", "check_raw_events", "derive", "load_raw_events", "maintain_raw_events"]
