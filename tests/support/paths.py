"""Where the checkout under test is: tests read its shipped definitions and dbt project."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def copy_dbt_project(destination: Path) -> Path:
    """A copy of the checkout's dbt project without what builds leave (target, logs, the
    compiled seeds), so a test can compile its own declarations and build apart."""
    shutil.copytree(
        REPO / "dbt_project",
        destination,
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "*.csv"),
    )
    return destination
