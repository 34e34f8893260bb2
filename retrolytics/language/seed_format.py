"""How a compiled declaration's cells and files are written into a dbt seed (CSV)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from retrolytics.language import sql


def json_cell(value: Any) -> str:
    """A cell holding a JSON value as canonical text; empty for None (the seed reads null)."""
    return "" if value is None else sql.canonical_json(value)


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, str]]) -> str:
    """A seed file: the header, then one line per row, ``\\n`` line ends whatever the platform."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
