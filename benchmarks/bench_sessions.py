"""Sessions: fct_sessions built from scratch and by the hourly run, as history grows, beside a
DuckDB sessionization of the same events with window functions.

Shop traffic is loaded straight into raw.events. For each history length the warehouse holds
that many days plus a newest day (the other daily partitions detached), and

- the full build: ``fct_sessions --full-refresh`` over all of it (dbt's model seconds);
- the hourly run: today's partition as the hourly schedule runs it (``start`` = the newest
  day, ``end`` = the day after, ``lookback_hours`` 24) after that build: the plan
  (``int_sessions_plan``) and ``fct_sessions`` (model seconds, median of three reruns). Flat in
  history is the goal: a run reads the window's devices and the stored sessions around them.
- DuckDB, the peer: the same events (device, id, time, type, page, UTM fields), exported once
  to Parquet, read into a native table, then sessionized with LAG and a running SUM over
  ``anonymous_id`` ordered by time and aggregated per session (start, end, events, pageviews,
  landing page and campaign via arg_min), median of three. It does no identity stitching, no
  user-agent join and writes no table; ours does all three. The session counts must agree.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from benchmarks.common import Section
from benchmarks.history_growth import (
    RERUNS,
    Family,
    Shop,
    build_and_rerun,
    history_section,
    median_seconds,
    shop,
)

HISTORY_DAYS = (3, 9, 18)
SESSIONS = Family(("int_sessions_plan", "fct_sessions"), "intermediate.int_sessions_plan")
EVENTS_VARIABLE = "RETROLYTICS_BENCH_SESSION_EVENTS"  # e.g. 10000000, the size

DUCKDB_SESSIONS = """
with gaps as (
    select *,
        case when occurred_at - lag(occurred_at) over device_stream < interval 30 minutes
            then 0 else 1 end as starts_session
    from events
    window device_stream as (partition by anonymous_id order by occurred_at, event_id)
),
numbered as (
    select *, sum(starts_session) over (
        partition by anonymous_id order by occurred_at, event_id rows unbounded preceding
    ) as session_number
    from gaps
)
select
    anonymous_id,
    min(occurred_at) as session_start,
    max(occurred_at) as session_end,
    count(*) as event_count,
    count(*) filter (where type = 'pageview') as pageview_count,
    arg_min(page_path, (type <> 'pageview', occurred_at, event_id)) as landing_page,
    arg_min(utm_source, (type <> 'pageview', occurred_at, event_id)) as utm_source
from numbered
group by anonymous_id, session_number
"""


class DuckSessions:
    """The same events in DuckDB, exported from PostgreSQL once per history length."""

    def __init__(self, database_url: str, folder: Path) -> None:
        self.url = database_url
        self.folder = folder

    def load(self) -> int:
        import duckdb

        csv = self.folder / "events.csv"
        with psycopg.connect(self.url) as conn, conn.cursor() as cur, csv.open("wb") as out:
            query = (
                "copy (select anonymous_id, event_id, occurred_at, type, page_path, utm_source "
                "from staging.stg_events) to stdout with (format csv, header)"
            )
            with cur.copy(query) as copy:
                for chunk in copy:
                    out.write(chunk)
        self.connection = duckdb.connect(str(self.folder / "duck.db"))
        self.connection.execute("drop table if exists events")
        self.connection.execute(
            f"create table events as select * from read_csv('{csv}', header = true, "
            "columns = {'anonymous_id': 'VARCHAR', 'event_id': 'UUID', "
            "'occurred_at': 'TIMESTAMPTZ', 'type': 'VARCHAR', 'page_path': 'VARCHAR', "
            "'utm_source': 'VARCHAR'})"
        )
        return self.connection.execute("select count(*) from events").fetchone()[0]

    def sessionize(self) -> tuple[float, int]:
        return median_seconds(
            lambda: self.connection.execute(
                f"select count(*) from ({DUCKDB_SESSIONS}) as sessions"
            ).fetchone()[0]
        )


def _sessions(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("select count(*) from marts.fct_sessions").fetchone()[0]


def measure(shop: Shop, history: int) -> tuple:
    timings = build_and_rerun(shop, SESSIONS, history, _sessions)
    sessions = _sessions(shop.url)
    duck = DuckSessions(shop.url, shop.work)
    duck.load()
    duck_seconds, duck_sessions = duck.sessionize()
    assert duck_sessions == sessions, f"DuckDB found {duck_sessions} sessions, we {sessions}"
    full = timings.full_seconds("fct_sessions")
    return (
        history + 1,
        timings.events,
        sessions,
        f"{full:.2f}",
        f"{duck_seconds:.2f}",
        f"{full / duck_seconds:.1f}",
        timings.planned,
        f"{timings.hourly_seconds():.2f}",
    )


def run(quick: bool) -> Section:
    section = history_section(
        "7",
        "Sessions: full build and hourly run as history grows, beside DuckDB",
        "sessions",
        quick,
        EVENTS_VARIABLE,
    )
    with shop("sessions", quick, EVENTS_VARIABLE, max(HISTORY_DAYS) + 1) as loaded:
        section.add(
            f"{loaded.description}. Full build: fct_sessions "
            "--full-refresh over the days attached (dbt's model seconds). Hourly run: today's "
            "partition with a 24 h lookback after that build, int_sessions_plan + fct_sessions, "
            f"median of {RERUNS}. DuckDB: the same events sessionized with window functions "
            f"(30 min), median of {RERUNS}; both count the same sessions."
        )
        rows = [measure(loaded, h) for h in HISTORY_DAYS]
        section.lines.append("")
        section.table(
            (
                "days",
                "raw events",
                "sessions",
                "full build (s)",
                "DuckDB (s)",
                "ours ÷ DuckDB",
                "devices planned",
                "hourly run (s)",
            ),
            rows,
        )
    return section
