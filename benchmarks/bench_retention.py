"""Retention: the retention models built from scratch and by the hourly run, as history grows,
beside DuckDB and chDB's ``retention`` function on the same stream.

Shop traffic is loaded straight into raw.events (``bulk.load_scaled``). For each history length
the warehouse holds that many days plus a newest day (the other daily partitions detached), and

- the full build: the retention models (``RETENTION``: the stream, the plan, the facts, the
  changed cohorts and ``mart_retention``) with ``--full-refresh`` over all of it, for the three
  shipped retention analyses (dbt's model seconds, summed);
- the hourly run: today's partition as the hourly schedule runs it (``start`` = the newest day,
  ``end`` = the day after, ``lookback_hours`` 24) after that build, the same models (model
  seconds, median of three reruns). The mart's share is shown apart: a windowed run recomputes
  only the cohorts whose facts changed, as the stream, plan and facts read the window's
  devices;
- the peers: the stream rows of one analysis, ``daily_browsers`` (recurring daily cohorts of
  devices, three days, at least two returns a day), exported once as (device, UTC day, start,
  return) and loaded into DuckDB and chDB; each computes the returned units per cohort day and
  offset from them (DuckDB: a join of cohort cells with return cells; chDB: ClickHouse's
  ``retention(cond1, cond2, ...)`` per device and cohort day), median of three. They read a
  stream we extracted and match no definitions, resolve no identity and write no table; ours
  does all of it for three analyses. All three count the same returned units.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from benchmarks.common import Section
from benchmarks.history_growth import (
    RERUNS,
    SESSION_MODELS,
    Family,
    Shop,
    build_and_rerun,
    history_section,
    median_seconds,
    shop,
)

HISTORY_DAYS = (3, 9, 18)
RETENTION_MODELS = (
    "int_retention_events",
    "int_retention_plan",
    "int_retention_replaced_cells",
    "fct_retention_activity",
    "int_retention_changed_cohorts",
    "mart_retention",
)
# The hourly run as Dagster's windowed step runs it: the plan reads moved identities and
# re-derived sessions from the sessions plan of the same run.
RETENTION = Family((*SESSION_MODELS, *RETENTION_MODELS), "intermediate.int_retention_plan")
PEER_RETENTION = "daily_browsers"  # definitions/retention/signup_activity.yml
PEER_PERIODS = 3
PEER_MIN_RETURNS = 2
EVENTS_VARIABLE = "RETROLYTICS_BENCH_RETENTION_EVENTS"  # e.g. 10000000, the size

EXPORT = f"""
copy (
    select anonymous_id, floor(extract(epoch from occurred_at) / 86400)::int as day,
        is_start::int as is_start, is_return::int as is_return
    from intermediate.int_retention_events where retention_name = '{PEER_RETENTION}'
) to stdout with (format csv, header)
"""
CELLS = """
select anonymous_id, day, sum(is_start) as starts, sum(is_return) as returns
from stream group by anonymous_id, day
"""
DUCKDB_RETURNED = f"""
with cells as ({CELLS}),
cohorts as (select anonymous_id, day from cells where starts > 0)
select coalesce(sum(returned), 0) from (
    select cohorts.day, back.day - cohorts.day as k, count(*) as returned
    from cohorts
    join cells as back
        on back.anonymous_id = cohorts.anonymous_id
        and back.day between cohorts.day + 1 and cohorts.day + {PEER_PERIODS}
        and back.returns >= {PEER_MIN_RETURNS}
    group by all
)
"""
_CONDITIONS = ", ".join(
    f"back.day = cohort_day + {k} and back.returns >= {PEER_MIN_RETURNS}"
    for k in range(1, PEER_PERIODS + 1)
)
CHDB_RETURNED = f"""
select sum(arraySum(arraySlice(flags, 2))) from (
    select cohorts.anonymous_id, cohorts.day as cohort_day,
        retention(back.day = cohort_day, {_CONDITIONS}) as flags
    from (select anonymous_id, day from ({CELLS}) where starts > 0) as cohorts
    join ({CELLS}) as back on back.anonymous_id = cohorts.anonymous_id
    where back.day >= cohorts.day and back.day <= cohorts.day + {PEER_PERIODS}
    group by cohorts.anonymous_id, cohorts.day
)
"""


def _export(url: str, csv: Path) -> None:
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cur,
        csv.open("wb") as out,
        cur.copy(EXPORT) as copy,
    ):
        for chunk in copy:
            out.write(chunk)


def duckdb_returned(csv: Path, folder: Path) -> tuple[float, int]:
    import duckdb

    connection = duckdb.connect(str(folder / "duck.db"))
    connection.execute("drop table if exists stream")
    connection.execute(
        f"create table stream as select * from read_csv('{csv}', header = true, columns = "
        "{'anonymous_id': 'VARCHAR', 'day': 'INTEGER', 'is_start': 'INTEGER', "
        "'is_return': 'INTEGER'})"
    )
    try:
        return median_seconds(lambda: int(connection.execute(DUCKDB_RETURNED).fetchone()[0]))
    finally:
        connection.close()


def chdb_returned(csv: Path, folder: Path) -> tuple[float, int]:
    from chdb import session

    chdb = session.Session(str(folder / "chdb"))
    try:
        chdb.query("drop table if exists stream")
        chdb.query(
            "create table stream (anonymous_id String, day Int32, is_start UInt8, "
            "is_return UInt8) engine = MergeTree order by (anonymous_id, day)"
        )
        chdb.query(
            f"insert into stream select * from file('{csv}', 'CSVWithNames', "
            "'anonymous_id String, day Int32, is_start UInt8, is_return UInt8')"
        )
        return median_seconds(lambda: int(chdb.query(CHDB_RETURNED, "CSV").data().strip() or 0))
    finally:
        chdb.close()


def _our_returned(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select coalesce(sum(returned_units), 0) from marts.mart_retention "
            "where retention_name = %s and breakdown_value = '(all)' and period_offset > 0",
            (PEER_RETENTION,),
        ).fetchone()[0]


def measure(shop: Shop, history: int) -> tuple:
    timings = build_and_rerun(shop, RETENTION, history, _our_returned)
    returned = _our_returned(shop.url)
    csv = shop.work / "stream.csv"
    _export(shop.url, csv)
    duck_seconds, duck_returned = duckdb_returned(csv, shop.work)
    chdb_seconds, chdb_count = chdb_returned(csv, shop.work)
    assert duck_returned == returned, f"DuckDB counted {duck_returned} returns, we {returned}"
    assert chdb_count == returned, f"chDB counted {chdb_count} returns, we {returned}"
    return (
        history + 1,
        timings.events,
        returned,
        f"{timings.full_seconds(*RETENTION_MODELS):.2f}",
        f"{timings.full_seconds('mart_retention'):.2f}",
        f"{duck_seconds:.3f}",
        f"{chdb_seconds:.3f}",
        timings.planned,
        f"{timings.hourly_seconds(*RETENTION_MODELS):.2f}",
        f"{timings.hourly_seconds('mart_retention'):.2f}",
        f"{timings.hourly_seconds(*SESSION_MODELS):.2f}",
    )


def run(quick: bool) -> Section:
    section = history_section(
        "10",
        "Retention: full build and hourly run as history grows, beside DuckDB and chDB",
        "retention",
        quick,
        EVENTS_VARIABLE,
    )
    with shop("retention", quick, EVENTS_VARIABLE, max(HISTORY_DAYS) + 1) as loaded:
        section.add(
            f"{loaded.description}. Full build: the "
            f"{len(RETENTION_MODELS)} retention models --full-refresh for the three shipped "
            "analyses (dbt's model seconds). Hourly run: today's partition with a 24 h lookback "
            "after that build, with the sessions models the plan reads (int_sessions_plan, "
            f"fct_sessions; their seconds in their own column), median of {RERUNS}. DuckDB and "
            f"chDB (`retention`): returned units of {PEER_RETENTION} from its exported stream, "
            f"median of {RERUNS}; all three agree."
        )
        rows = [measure(loaded, h) for h in HISTORY_DAYS]
        section.lines.append("")
        section.table(
            (
                "days",
                "raw events",
                f"{PEER_RETENTION} returns",
                "full build, 3 analyses (s)",
                "of which the mart (s)",
                "DuckDB, 1 analysis (s)",
                "chDB retention, 1 analysis (s)",
                "devices planned",
                "hourly run: retention models (s)",
                "of which the mart (s)",
                "hourly run: sessions models (s)",
            ),
            rows,
        )
    return section
