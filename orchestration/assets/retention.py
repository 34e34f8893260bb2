"""One asset per declared retention analysis, as for the funnels (``assets/funnels.py``).

The numbers live in one long-format dbt mart, ``marts.mart_retention`` (filter on
``retention_name``). Each retention here is an asset ``retention/<name>`` downstream of it,
daily partitioned like it, described by its YAML. Materializing a partition reads the
retention's overall rows (``breakdown_value = '(all)'``) of the cohorts whose period starts on
the partition's days (on the retention's wall clock) and records the cohorts, their units and
the rate at each offset as metadata.
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg

from orchestration.assets.funnels import _dbt_key, _owner
from orchestration.partitions import daily_partitions
from orchestration.project import DEFINITIONS_DIR
from orchestration.resources import RetrolyticsResource
from retrolytics.language.check import check
from retrolytics.language.retention import Retention

RETENTION_SEEDS = ("retentions",)
MART_MODEL = "mart_retention"
MART_TABLE = "marts.mart_retention"


def declared_retentions(definitions_dir: Path = DEFINITIONS_DIR) -> list[Retention]:
    """The valid retention analyses of the declarations folder."""
    declared = check(definitions_dir).declarations.get("retention", [])
    return sorted(declared, key=lambda r: r.name)


def retention_events(definitions_dir: Path = DEFINITIONS_DIR) -> dict[str, frozenset[str]]:
    """Retention name -> the event definitions its start and return events read."""
    return {r.name: r.definitions_used() for r in declared_retentions(definitions_dir)}


def retention_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["retention", name])


def retention_seed_keys() -> list[dg.AssetKey]:
    """The seed ``definitions/retention`` compiles into."""
    return [key for key in map(_dbt_key, RETENTION_SEEDS) if key is not None]


def _summary(retention: Retention) -> str:
    cohorts = "first time" if retention.cohorting == "first_time" else "recurring"
    return (
        f"{retention.start_event.label} → {retention.return_event.label}, {retention.periods} "
        f"{retention.period}s ({cohorts} cohorts, per {retention.unit}, {retention.time_zone})"
    )


def retention_spec(retention: Retention, mart: dg.AssetKey) -> dg.AssetSpec:
    breakdown = retention.breakdown_field or retention.breakdown_property
    return dg.AssetSpec(
        key=retention_key(retention.name),
        deps=[mart],
        group_name="retention",
        description=f"{retention.description.strip()}\n\n{_summary(retention)}.",
        owners=[_owner(retention.owner)],
        kinds={"postgres"},
        partitions_def=daily_partitions,
        metadata={
            "start_event": retention.start_event.label,
            "return_event": retention.return_event.label,
            "period": retention.period,
            "periods": retention.periods,
            "cohorting": retention.cohorting,
            "unit": retention.unit,
            "breakdown": breakdown or "(none)",
            "min_occurrences": retention.min_occurrences,
            "time_zone": retention.time_zone,
            "declared_in": f"{retention.path}:{retention.line}",
            "dagster/table_name": MART_TABLE,
            "query": f"select * from {MART_TABLE} where retention_name = '{retention.name}'",
        },
        tags={"retention": retention.name},
    )


def _cohort_rows(conn: psycopg.Connection, name: str, window: dg.TimeWindow) -> list[tuple]:
    """(cohort period, offset, cohort size, returned units, rate) of the cohorts starting on the
    window's days, overall rows only (the value rows would count units twice)."""
    return conn.execute(
        f"select cohort_period, period_offset, cohort_size, returned_units, retention_rate "
        f"from {MART_TABLE} where retention_name = %s and breakdown_value = '(all)' "
        "and cohort_period >= %s and cohort_period < %s order by cohort_period, period_offset",
        (name, window.start.date(), window.end.date()),
    ).fetchall()


def _report(name: str, rows: list[tuple]) -> dg.MaterializeResult:
    sizes = {period: size for period, offset, size, _, _ in rows if offset == 0}
    lines = [
        f"| {period:%Y-%m-%d %H:%M} | {offset} | {size} | "
        f"{'' if returned is None else returned} | {'' if rate is None else f'{rate:.1%}'} |"
        for period, offset, size, returned, rate in rows
    ]
    return dg.MaterializeResult(
        asset_key=retention_key(name),
        metadata={
            "cohorts": len(sizes),
            "units": sum(sizes.values()),
            "retention_table": dg.MetadataValue.md(
                "| cohort | offset | size | returned | rate |\n| --- | --- | --- | --- | --- |\n"
                + "\n".join(lines)
            ),
        },
    )


def build_retention_assets(retentions: list[Retention]) -> list[dg.AssetsDefinition]:
    """One multi-asset holding every retention's asset (one query each, one step per run)."""
    mart = _dbt_key(MART_MODEL)
    if mart is None or not retentions:
        return []

    @dg.multi_asset(
        name="retention_reports",
        specs=[retention_spec(r, mart) for r in retentions],
        can_subset=True,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def retention_reports(
        context: dg.AssetExecutionContext, retrolytics: RetrolyticsResource
    ) -> Iterator[dg.MaterializeResult]:
        window = context.partition_time_window
        with retrolytics.connect() as conn:
            for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
                name = key.path[-1]
                yield _report(name, _cohort_rows(conn, name, window))

    return [retention_reports]


def retention_asset_keys() -> dict[str, dg.AssetKey]:
    """Retention name -> its asset key, for the retention analyses this code location shows."""
    return {key.path[-1]: key for assets in retention_assets for key in assets.keys}


retention_assets = build_retention_assets(declared_retentions())
