"""Compiling the declarations to dbt seeds: CSV data, never SQL.

Each declaration kind (``check.KINDS``) names the seed files it compiles to; every entry point
(the CLI, the demo, Dagster, tests) writes them into the dbt project before dbt runs, so the seeds
always match the declarations. A file is only rewritten when its content changes, so dbt's state
comparison (and its partial parsing) sees a change exactly when a declaration changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retrolytics.language.check import KINDS, load_catalog

SEED_RELATIVE_PATH = Path("seeds") / "event_definitions.csv"


@dataclass(frozen=True)
class CompiledSeed:
    path: Path  # the event_definitions seed
    definitions: int
    conditions: int
    paths: tuple[Path, ...] = ()  # every seed written, of every declaration kind


def compile_seed(definitions_dir: Path, project_dir: Path) -> CompiledSeed:
    """Validate the declarations and write the seeds of every kind; raises
    ``DefinitionsInvalid`` listing ``file:line: problem`` when any declaration is bad.

    A file is only rewritten when its content changes, so dbt's state comparison (and its
    partial parsing) sees a change exactly when a declaration changed.
    """
    catalog = load_catalog(definitions_dir)
    seed_dir = project_dir / SEED_RELATIVE_PATH.parent
    seed_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        if kind.seeds is None:
            continue
        for name, text in kind.seeds(catalog).items():
            path = seed_dir / name
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
            written.append(path)
    conditions = sum(len(d.conditions) for d in catalog.event_definitions)
    return CompiledSeed(
        project_dir / SEED_RELATIVE_PATH,
        len(catalog.event_definitions),
        conditions,
        tuple(written),
    )
