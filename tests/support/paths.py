"""Where the checkout under test is: tests read its shipped definitions and dbt project."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
