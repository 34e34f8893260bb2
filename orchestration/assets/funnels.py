"""One asset per funnel (filled in when the funnel marts land)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

funnel_assets: list[dg.AssetsDefinition] = []


def funnel_asset_keys() -> dict[str, dg.AssetKey]:
    return {}


def funnel_seed_keys() -> list[dg.AssetKey]:
    return []


def funnel_steps(definitions_dir: Path) -> dict[str, frozenset[str]]:
    return {}
