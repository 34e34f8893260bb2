"""The demo's view of one retention analysis: its cohorts and the rate at each offset.

Reads ``marts.mart_retention`` (the overall rows, ``breakdown_value = '(all)'``); the demo job
calls :func:`print_retention_table` after dbt has derived the retention analyses.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

RETENTION = "signup_activity"
QUERY = """
select cohort_period, period_offset, cohort_size, retention_rate
from marts.mart_retention
where retention_name = %s and breakdown_value = '(all)'
order by cohort_period, period_offset
"""


def _rate(rate: float | None) -> str:
    return "      ." if rate is None else f"{rate:7.0%}"


def retention_table_lines(conn: psycopg.Connection, name: str = RETENTION) -> list[str]:
    """A header, then one line per cohort: its period, size and the rate at each offset
    (``.`` where the period has not begun)."""
    rows = conn.execute(QUERY, (name,)).fetchall()
    if not rows:
        return [f"retention {name}: no cohorts yet"]
    cohorts: dict = {}
    for period, offset, size, rate in rows:
        cohorts.setdefault((period, size), {})[offset] = rate
    offsets = max(len(rates) for rates in cohorts.values())
    header = "".join(f"{f'+{k}':>8}" for k in range(1, offsets))
    lines = [f"retention {name} (share of each cohort returning, by periods after it)"]
    lines.append(f"  {'cohort':<16}{'units':>6}{header}")
    for (period, size), rates in cohorts.items():
        cells = "".join(" " + _rate(rates.get(k)) for k in range(1, offsets))
        lines.append(f"  {period:%Y-%m-%d %H:%M}{size:>6}{cells}")
    return lines


def print_retention_table(database_url: str, out: Callable[[str], None] = print) -> None:
    with psycopg.connect(database_url) as conn:
        for line in retention_table_lines(conn):
            out(line)
