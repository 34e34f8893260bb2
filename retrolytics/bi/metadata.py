"""What the dashboard is made of, read from the project itself: the declared funnels and
retention analyses (``definitions/``), the marts' columns and descriptions
(``dbt_project/models/marts/**.yml``) and the dashboard's exposure (``_funnel_exposures.yml``).
A new funnel is a new declaration; ``retrolytics bi up`` turns it into charts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from retrolytics.language.check import load_catalog

DASHBOARD_EXPOSURE = "funnel_dashboard"
# The marts the dashboard reads, as dbt names them.
MARTS = (
    "mart_funnel_conversion",
    "mart_funnel_unit_steps",
    "mart_sessions_daily",
    "mart_retention",
)


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str | None  # as the model's contract declares it; None for views without one
    description: str | None


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class FunnelCharts:
    """A funnel as its charts need it."""

    name: str
    description: str
    step_labels: tuple[str, ...]
    breakdown: str | None  # the declared breakdown, as a label; None without one

    @property
    def step_count(self) -> int:
        return len(self.step_labels)


@dataclass(frozen=True)
class RetentionCharts:
    name: str
    description: str


@dataclass(frozen=True)
class DashboardMetadata:
    title: str
    description: str
    funnels: tuple[FunnelCharts, ...]
    retentions: tuple[RetentionCharts, ...]
    models: dict[str, Model]


def read(definitions: Path, dbt_project: Path) -> DashboardMetadata:
    """The dashboard's metadata; invalid declarations raise ``DefinitionsInvalid``."""
    catalog = load_catalog(definitions)
    marts_yaml = _marts_yaml(dbt_project / "models" / "marts")
    exposure = _exposure(marts_yaml, DASHBOARD_EXPOSURE)
    models = {name: _model(marts_yaml, name) for name in MARTS}
    funnels = tuple(
        FunnelCharts(
            name=funnel.name,
            description=_one_line(funnel.description) or "",
            step_labels=tuple(step.event.label for step in funnel.steps),
            breakdown=funnel.breakdown.label if funnel.breakdown else None,
        )
        for funnel in catalog.funnels
    )
    retentions = tuple(
        RetentionCharts(name=item.name, description=_one_line(item.description) or "")
        for item in catalog.declarations.get("retention", [])
    )
    return DashboardMetadata(
        title=f"Retrolytics: {exposure.get('label', DASHBOARD_EXPOSURE)}",
        description=_one_line(exposure.get("description")) or "",
        funnels=funnels,
        retentions=retentions,
        models=models,
    )


def _marts_yaml(folder: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) or {} for path in sorted(folder.rglob("*.yml"))]


def _exposure(documents: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for document in documents:
        for exposure in document.get("exposures") or []:
            if exposure.get("name") == name:
                return exposure
    raise LookupError(f"no exposure {name!r} in the marts' YAML of the dbt project")


def _model(documents: list[dict[str, Any]], name: str) -> Model:
    for document in documents:
        for model in document.get("models") or []:
            if model.get("name") == name:
                columns = tuple(
                    Column(
                        name=column["name"],
                        data_type=column.get("data_type"),
                        description=_one_line(column.get("description")),
                    )
                    for column in model.get("columns") or []
                )
                return Model(name, _one_line(model.get("description")) or "", columns)
    raise LookupError(f"no model {name!r} in the marts' YAML of the dbt project")


def _one_line(text: str | None) -> str | None:
    return " ".join(text.split()) if text else None
