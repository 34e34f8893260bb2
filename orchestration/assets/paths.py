"""One asset per declared path analysis, so a person finds "after_product_view" in the UI.

The numbers live in two dbt marts over ``fct_paths``: ``marts.mart_path_edges`` (a Sankey's
edges) and ``marts.mart_path_top`` (the most frequent complete paths), both filtered on
``path_name``. Each declaration here is an asset ``paths/<name>`` downstream of them, daily
partitioned like the facts (a partition's run refreshes the report over all history: a path is
not cut at midnight), described by its YAML. Materializing reads its top paths and records them
as metadata. Declarations with problems are left out; the next compile names them.
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
from retrolytics.language.paths import PathDeclaration

PATH_SEEDS = ("paths", "path_nodes")
TOP_MODEL = "mart_path_top"
EDGES_MODEL = "mart_path_edges"
TOP_TABLE = "marts.mart_path_top"
SHOWN_PATHS = 10


def declared_paths(definitions_dir: Path = DEFINITIONS_DIR) -> list[PathDeclaration]:
    """The valid path analyses of the declarations folder."""
    return sorted(check(definitions_dir).paths, key=lambda p: p.name)


def path_seed_keys() -> list[dg.AssetKey]:
    """The seeds ``definitions/paths`` compiles into (the declarations sensor's selection)."""
    return [key for key in map(_dbt_key, PATH_SEEDS) if key is not None]


def path_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["paths", name])


def path_spec(declaration: PathDeclaration, marts: list[dg.AssetKey]) -> dg.AssetSpec:
    anchor = f"{declaration.anchor_at}: {declaration.anchor.label}"
    return dg.AssetSpec(
        key=path_key(declaration.name),
        deps=marts,
        group_name="paths",
        description=f"{declaration.description.strip()}\n\n{declaration.steps} steps from "
        f"{anchor}, counted per {declaration.unit}, split by {declaration.gap_label}.",
        owners=[_owner(declaration.owner)],
        kinds={"postgres"},
        partitions_def=daily_partitions,
        metadata={
            "anchor": anchor,
            "steps": declaration.steps,
            "step_kind": declaration.step_kind,
            "gap": declaration.gap_label,
            "collapse_repeats": declaration.collapse_repeats,
            "unit": declaration.unit,
            "declared_in": f"{declaration.path}:{declaration.line}",
            "dagster/table_name": TOP_TABLE,
            "query": f"select * from {TOP_TABLE} where path_name = '{declaration.name}'",
        },
        tags={"path": declaration.name},
    )


def top_paths(conn: psycopg.Connection, name: str, limit: int = SHOWN_PATHS) -> list[tuple]:
    """(rank, steps, paths, units) of a declaration's most frequent paths."""
    return conn.execute(
        f"select rank, steps, paths, units from {TOP_TABLE} where path_name = %s "
        "order by rank limit %s",
        (name, limit),
    ).fetchall()


def _report(name: str, rows: list[tuple]) -> dg.MaterializeResult:
    table = "\n".join(f"| {r} | {' → '.join(s)} | {p} | {u} |" for r, s, p, u in rows)
    return dg.MaterializeResult(
        asset_key=path_key(name),
        metadata={
            "top_path_count": rows[0][2] if rows else 0,
            "top_paths": dg.MetadataValue.md(
                "| rank | path | paths | units |\n| --- | --- | --- | --- |\n" + table
            ),
        },
    )


def build_path_assets(declared: list[PathDeclaration]) -> list[dg.AssetsDefinition]:
    """One multi-asset holding every path analysis's asset."""
    marts = [key for key in map(_dbt_key, (EDGES_MODEL, TOP_MODEL)) if key is not None]
    if len(marts) < 2 or not declared:
        return []

    @dg.multi_asset(
        name="path_reports",
        specs=[path_spec(p, marts) for p in declared],
        can_subset=True,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def path_reports(
        context: dg.AssetExecutionContext, retrolytics: RetrolyticsResource
    ) -> Iterator[dg.MaterializeResult]:
        with retrolytics.connect() as conn:
            for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
                yield _report(key.path[-1], top_paths(conn, key.path[-1]))

    return [path_reports]


path_assets = build_path_assets(declared_paths())
