"""The demo's view of one path analysis: its most frequent complete paths.

Reads ``marts.mart_path_top``; the demo job calls :func:`print_top_paths` after dbt has derived
the paths.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

SHOWN = "after_product_view"
QUERY = """
select rank, steps, paths, units
from marts.mart_path_top
where path_name = %s
order by rank
limit %s
"""


def top_path_lines(conn: psycopg.Connection, name: str = SHOWN, limit: int = 8) -> list[str]:
    """A header line, then ``  1.   412 paths   380 units  viewed_product → added_to_cart``."""
    rows = conn.execute(QUERY, (name, limit)).fetchall()
    if not rows:
        return [f"paths {name}: none yet"]
    lines = [f"paths {name}: the {len(rows)} most frequent (marts.mart_path_top)"]
    for rank, steps, paths, units in rows:
        lines.append(f"  {rank:>2}. {paths:>6} paths {units:>6} units  {' → '.join(steps)}")
    return lines


def print_top_paths(database_url: str, out: Callable[[str], None] = print) -> None:
    with psycopg.connect(database_url) as conn:
        for line in top_path_lines(conn):
            out(line)
