"""The demo's view of the sessions: per day, sessions, median duration and bounce rate.

Reads ``marts.mart_sessions_daily`` (bots left out); the demo job calls
:func:`print_session_summary` after dbt has derived the sessions.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

QUERY = """
select session_day, sessions, median_duration_seconds, bounce_rate
from marts.mart_sessions_daily
order by session_day
"""


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def session_summary_lines(conn: psycopg.Connection) -> list[str]:
    """One header line, then one line per day: ``2026-11-20  sessions 812  median 2m05s …``."""
    days = conn.execute(QUERY).fetchall()
    if not days:
        return ["sessions: none yet"]
    total = sum(sessions for _, sessions, _, _ in days)
    lines = [f"sessions: {total} over {len(days)} days (30 minutes of inactivity end a session)"]
    for session_day, sessions, median_seconds, bounce_rate in days:
        lines.append(
            f"  {session_day:%Y-%m-%d}  sessions {sessions:>6}  "
            f"median duration {_duration(median_seconds):>7}  bounce rate {bounce_rate:6.1%}"
        )
    return lines


def print_session_summary(database_url: str, out: Callable[[str], None] = print) -> None:
    with psycopg.connect(database_url) as conn:
        for line in session_summary_lines(conn):
            out(line)
