"""Every dbt model, seed and test as Dagster assets and asset checks (dagster-dbt).

Two multi-assets over one manifest:

- ``dbt_daily``: the windowed, retroactive models (``defined_events``, the funnel facts) and
  what is built from them (the funnel mart), partitioned by day. A run receives its partition
  window (``start``/``end`` plus ``lookback_hours``) through ``runner.window_environment``; a
  backfill of a date range is one run over the whole range (``BackfillPolicy.single_run()``),
  which the models handle like any window.
- ``dbt_current``: everything upstream of those (the compiled-declaration seeds, staging and
  versions views), not partitioned: they hold the current state, not a slice of time. The
  declarations are compiled into the seeds right before ``dbt build``, so the warehouse always
  gets the files as they are.

dbt runs against one warehouse take turns (a PostgreSQL advisory lock held for the whole
invocation), so two partition runs launched together queue instead of racing on the same tables.
"""

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
    get_asset_key_for_model,
)

from ingestion import schema
from orchestration.partitions import daily_partitions, dbt_window
from orchestration.project import (
    compile_definitions,
    dbt_project,
    require_manifest,
)
from orchestration.resources import RetrolyticsResource
from retrolytics.warehouse import runner

# The materializations that take a time window (macros/retroactive.sql, macros/funnels/; the
# sessions plan, a distributed_table, reads the window too), and everything downstream of them
# (the funnel mart, the person and device dimensions, views over windowed tables): they run in
# the partitioned step, in one dbt invocation, after the current-state step they read.
WINDOWED_MATERIALIZATIONS = (
    "distributed_incremental",
    "distributed_table",
    "funnel_mart",
    "unit_facts",
)
WINDOWED = " ".join(f"config.materialized:{name}+" for name in WINDOWED_MATERIALIZATIONS)
DBT_POOL = "retrolytics_dbt"
# A test runs with the models it reads once they are all built, not with the first of them: a
# relationships test from a windowed model to a staging view belongs to the windowed run.
# (dagster-dbt still switches to "empty" when it selects individual checks.)
DBT_RUN_ENV = {"DBT_INDIRECT_SELECTION": "buildable"}


class RetrolyticsTranslator(DagsterDbtTranslator):
    """Keys name the relation (``staging/stg_events``, ``marts/defined_events``, ``raw/events``);
    groups follow the project's folders, and the compiled declarations are the ``definitions``
    group."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])
        # The configured schema, not the target-prefixed one: keys stay the same in every target.
        schema = dbt_resource_props.get("config", {}).get("schema") or dbt_resource_props["schema"]
        name = dbt_resource_props.get("alias") or dbt_resource_props["name"]
        return dg.AssetKey([schema, name])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "definitions"
        fqn = dbt_resource_props.get("fqn", [])
        # fqn = [project, folder, ..., model]; a model at the top of models/ has no folder.
        return fqn[1] if len(fqn) > 2 else "models"


translator = RetrolyticsTranslator(
    settings=DagsterDbtTranslatorSettings(
        enable_asset_checks=True, enable_source_tests_as_checks=True, enable_code_references=True
    )
)


class WindowConfig(dg.Config):
    """How far before the partition's start late events are picked up again."""

    lookback_hours: int = 24


@contextmanager
def warehouse_turn(retrolytics: RetrolyticsResource, log: dg.DagsterLogManager) -> Iterator[None]:
    """Hold the warehouse's dbt lock (``warehouse.runner``, as every dbt caller does) and the
    dbt environment for the block.

    Also makes sure the raw schema exists, so deriving an empty warehouse gives empty tables
    rather than an error about a missing source.
    """
    database_url = retrolytics.settings().dbt_url
    with runner.warehouse_lock(database_url, on_wait=log.info) as conn:
        schema.ensure_ready(conn)
        with retrolytics.dbt_env(), runner.environment(DBT_RUN_ENV):
            yield


@contextmanager
def scratch_target(context: dg.AssetExecutionContext) -> Iterator[Path]:
    """A target folder for one dbt invocation, removed when it succeeds and kept (its path is
    in the error) when it fails; otherwise every hourly run would leave one behind."""
    path = Path(tempfile.mkdtemp(prefix=f"retrolytics-dbt-{context.run.run_id[:8]}-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dbt_assets(
    manifest=require_manifest(dbt_project.manifest_path),
    project=dbt_project,
    exclude=WINDOWED,
    name="dbt_current",
    dagster_dbt_translator=translator,
    pool=DBT_POOL,
)
def dbt_current(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, retrolytics: RetrolyticsResource
) -> Iterator[Any]:
    with warehouse_turn(retrolytics, context.log):
        context.log.info(f"compiled {compile_definitions()}")
        # Excluded again at run time: dagster-dbt selects a subset by fully qualified names,
        # and a test that reads a windowed model must wait for the partitioned step.
        with scratch_target(context) as target:
            invocation = dbt.cli(
                ["build", "--exclude", WINDOWED], context=context, target_path=target
            )
            yield from invocation.stream()


@dbt_assets(
    manifest=require_manifest(dbt_project.manifest_path),
    project=dbt_project,
    select=WINDOWED,
    name="dbt_daily",
    dagster_dbt_translator=translator,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DBT_POOL,
)
def dbt_daily(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    retrolytics: RetrolyticsResource,
    config: WindowConfig,
) -> Iterator[Any]:
    window = dbt_window(context.partition_time_window, config.lookback_hours)
    context.log.info(f"dbt window: {window}")
    with (
        warehouse_turn(retrolytics, context.log),
        runner.environment(runner.window_environment(window)),
        scratch_target(context) as target,
    ):
        yield from dbt.cli(["build"], context=context, target_path=target).stream()


# The seed `retrolytics definitions compile` writes from definitions/events/*.yml.
EVENT_DEFINITIONS_SEED = get_asset_key_for_model([dbt_current], "event_definitions")
