"""One asset per declared funnel, so a person finds "browse_to_purchase" in the UI by name.

The numbers live in one long-format dbt mart, ``marts.mart_funnel_conversion`` (filter on
``funnel_name``). Each funnel here is an asset ``funnels/<name>`` downstream of that mart, daily
partitioned like it, described by its YAML (steps, window, unit, owner, where it is declared).
Materializing a partition reads that funnel's rows of the mart for the partition's entry days
and records attempts and conversions per step as metadata, so the UI plots a funnel's daily
conversion without a BI tool.

The funnels come from ``definitions/funnels/*.yml`` when the code location loads (reading YAML is
cheap); declarations with problems are left out here, and the next run's compile step fails
naming ``file:line`` and what is wrong.
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg

from orchestration.assets.dbt import dbt_daily
from orchestration.partitions import daily_partitions
from orchestration.project import DEFINITIONS_DIR
from orchestration.resources import RetrolyticsResource
from retrolytics.language.check import check
from retrolytics.language.funnels import Funnel

FUNNEL_SEEDS = ("funnels", "funnel_steps")
MART_MODEL = "mart_funnel_conversion"
MART_TABLE = "marts.mart_funnel_conversion"


def declared_funnels(definitions_dir: Path = DEFINITIONS_DIR) -> list[Funnel]:
    """The valid funnels of the declarations folder."""
    return sorted(check(definitions_dir).funnels, key=lambda f: f.name)


def funnel_steps(definitions_dir: Path = DEFINITIONS_DIR) -> dict[str, frozenset[str]]:
    """Funnel name -> the event definitions its steps and exclusions read."""
    return {f.name: f.definitions_used() for f in declared_funnels(definitions_dir)}


def funnel_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["funnels", name])


def _dbt_key(name: str) -> dg.AssetKey | None:
    from dagster_dbt import get_asset_key_for_model

    from orchestration.assets.dbt import dbt_current

    for assets in (dbt_current, dbt_daily):
        try:
            return get_asset_key_for_model([assets], name)
        except KeyError:
            continue
    return None


def funnel_seed_keys() -> list[dg.AssetKey]:
    """The seeds ``definitions/funnels`` compiles into."""
    return [key for key in map(_dbt_key, FUNNEL_SEEDS) if key is not None]


def _owner(owner: str) -> str:
    # Dagster owners are e-mail addresses or teams; a declaration's owner is a team name.
    return owner if "@" in owner else f"team:{owner}"


def _step_labels(funnel: Funnel) -> list[str]:
    return [step.event.label for step in funnel.steps]


def funnel_spec(funnel: Funnel, mart: dg.AssetKey) -> dg.AssetSpec:
    steps = _step_labels(funnel)
    window = funnel.window_label
    return dg.AssetSpec(
        key=funnel_key(funnel.name),
        deps=[mart],
        group_name="funnels",
        description=f"{funnel.description.strip()}\n\nSteps: {' → '.join(steps)} "
        f"(within {window}, {funnel.order}, counted per {funnel.unit}).",
        owners=[_owner(funnel.owner)],
        kinds={"postgres"},
        partitions_def=daily_partitions,
        metadata={
            "steps": steps,
            "conversion_window": window,
            "order": funnel.order,
            "unit": funnel.unit,
            "breakdown": funnel.breakdown.label if funnel.breakdown else "(none)",
            "declared_in": f"{funnel.path}:{funnel.line}",
            "dagster/table_name": MART_TABLE,
            "query": f"select * from {MART_TABLE} where funnel_name = '{funnel.name}'",
        },
        tags={"funnel": funnel.name},
    )


def _step_totals(conn: psycopg.Connection, name: str, window: dg.TimeWindow) -> list[tuple]:
    """Per step over the window's entry days, all breakdown values together: attempts, units.
    The mart's `(all)` rows hold every attempt once; summing the breakdown rows as well would
    count each twice."""
    return conn.execute(
        f"select step_number, min(step_name), sum(entries), sum(units) from {MART_TABLE} "
        "where funnel_name = %s and entry_day >= %s and entry_day < %s "
        "and breakdown_value = '(all)' "
        "group by step_number order by step_number",
        (name, window.start.date(), window.end.date()),
    ).fetchall()


def _report(name: str, steps: list[str], rows: list[tuple]) -> dg.MaterializeResult:
    attempts = {number: int(entries) for number, _, entries, _ in rows}
    entered = attempts.get(1, 0)
    converted = attempts.get(len(steps), 0)
    table = "\n".join(
        f"| {number} | {label} | {attempts.get(number, 0)} |"
        for number, label in enumerate(steps, start=1)
    )
    return dg.MaterializeResult(
        asset_key=funnel_key(name),
        metadata={
            "attempts": entered,
            "conversions": converted,
            "conversion_rate": round(converted / entered, 4) if entered else 0.0,
            "attempts_per_step": dg.MetadataValue.md(
                "| step | name | attempts |\n| --- | --- | --- |\n" + table
            ),
        },
    )


def build_funnel_assets(funnels: list[Funnel]) -> list[dg.AssetsDefinition]:
    """One multi-asset holding every funnel's asset (one query per funnel, one step per run)."""
    mart = _dbt_key(MART_MODEL)
    if mart is None or not funnels:
        return []
    steps = {f.name: _step_labels(f) for f in funnels}

    @dg.multi_asset(
        name="funnel_reports",
        specs=[funnel_spec(f, mart) for f in funnels],
        can_subset=True,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def funnel_reports(
        context: dg.AssetExecutionContext, retrolytics: RetrolyticsResource
    ) -> Iterator[dg.MaterializeResult]:
        window = context.partition_time_window
        with retrolytics.connect() as conn:
            for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
                name = key.path[-1]
                yield _report(name, steps[name], _step_totals(conn, name, window))

    return [funnel_reports]


def funnel_asset_keys() -> dict[str, dg.AssetKey]:
    """Funnel name -> its asset key, for the funnels this code location shows."""
    return {key.path[-1]: key for assets in funnel_assets for key in assets.keys}


funnel_assets = build_funnel_assets(declared_funnels())
