"""Retention: the retention models built from scratch and by the hourly run, as history grows,
beside DuckDB and chDB's ``retention`` function on the same stream.

Shop traffic is loaded straight into raw.events (``bulk.load_scaled``). For each history length
the warehouse holds that many days plus a newest day (the other daily partitions detached), and

- the full build: the retention models (``MODELS``: the stream, the plan, the facts, the
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

import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import psycopg

from benchmarks.bench_definitions import (
    SHIPPED_DEFINITIONS,
    day_window,
    dbt,
    dbt_project_copy,
    model_seconds,
    set_partitions,
    traffic,
)
from benchmarks.bulk import event_count, load_scaled
from benchmarks.common import Section, scratch
from retrolytics.language.seeds import compile_seed

HISTORY_DAYS = (3, 9, 18)
RERUNS = 3
MODELS = (
    "int_retention_events",
    "int_retention_plan",
    "int_retention_replaced_cells",
    "fct_retention_activity",
    "int_retention_changed_cohorts",
    "mart_retention",
)
PEER_RETENTION = "daily_browsers"  # definitions/retention/signup_activity.yml
PEER_PERIODS = 3
PEER_MIN_RETURNS = 2
FULL_EVENTS = 1_000_000
QUICK_EVENTS = 200_000
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


def _median_seconds(query) -> tuple[float, int]:  # query: () -> int
    seconds, value = [], 0
    for _ in range(RERUNS):
        started = time.perf_counter()
        value = query()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), value


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
        return _median_seconds(lambda: int(connection.execute(DUCKDB_RETURNED).fetchone()[0]))
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
        return _median_seconds(lambda: int(chdb.query(CHDB_RETURNED, "CSV").data().strip() or 0))
    finally:
        chdb.close()


def _our_returned(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select coalesce(sum(returned_units), 0) from marts.mart_retention "
            "where retention_name = %s and breakdown_value = '(all)' and period_offset > 0",
            (PEER_RETENTION,),
        ).fetchone()[0]


def measure(url: str, project: Path, days: list[date], history: int, work: Path) -> tuple:
    newest = days[-1]
    set_partitions(url, days, set(days[-1 - history :]))
    with psycopg.connect(url) as conn:
        events = conn.execute("select count(*) from raw.events").fetchone()[0]
    dbt(project, url, ["run", "-s", "+mart_retention", "--exclude", *MODELS])
    _, result = dbt(project, url, ["run", "-s", *MODELS, "--full-refresh"])
    full = sum(model_seconds(result, model) for model in MODELS)
    full_mart = model_seconds(result, "mart_retention")
    returned = _our_returned(url)
    hourly, hourly_mart = [], []
    for _ in range(RERUNS):
        _, result = dbt(project, url, ["run", "-s", *MODELS], **day_window(newest))
        hourly.append(sum(model_seconds(result, model) for model in MODELS))
        hourly_mart.append(model_seconds(result, "mart_retention"))
    assert _our_returned(url) == returned, "the hourly run changed the retention"
    with psycopg.connect(url) as conn:
        planned = conn.execute("select count(*) from intermediate.int_retention_plan").fetchone()[0]
    csv = work / "stream.csv"
    _export(url, csv)
    duck_seconds, duck_returned = duckdb_returned(csv, work)
    chdb_seconds, chdb_count = chdb_returned(csv, work)
    assert duck_returned == returned, f"DuckDB counted {duck_returned} returns, we {returned}"
    assert chdb_count == returned, f"chDB counted {chdb_count} returns, we {returned}"
    return (
        history + 1,
        events,
        returned,
        f"{full:.2f}",
        f"{full_mart:.2f}",
        f"{duck_seconds:.3f}",
        f"{chdb_seconds:.3f}",
        planned,
        f"{statistics.median(hourly):.2f}",
        f"{statistics.median(hourly_mart):.2f}",
    )


def run(quick: bool) -> Section:
    days_total = max(HISTORY_DAYS) + 1
    events_total = QUICK_EVENTS if quick else event_count(EVENTS_VARIABLE, FULL_EVENTS)
    size = f"{EVENTS_VARIABLE}={events_total} " if not quick and events_total != FULL_EVENTS else ""
    section = Section(
        "10. Retention: full build and hourly run as history grows, beside DuckDB and chDB",
        f"{size}python -m benchmarks {'--quick ' if quick else ''}--only retention",
    )
    with scratch("retention") as settings, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        days, _ = traffic(1, days_total)
        stored, how = load_scaled(
            settings.database_url,
            events_total,
            lambda n: traffic(n // days_total, days_total)[1],
        )
        section.add(
            f"{stored} shop events over {days_total} days: {how}. Full build: the "
            f"{len(MODELS)} retention models --full-refresh for the three shipped analyses "
            "(dbt's model seconds). Hourly run: today's partition with a 24 h lookback after "
            f"that build, median of {RERUNS}. DuckDB and chDB (`retention`): returned units of "
            f"{PEER_RETENTION} from its exported stream, median of {RERUNS}; all three agree."
        )
        project = dbt_project_copy(work)
        compile_seed(SHIPPED_DEFINITIONS, project)
        dbt(project, settings.database_url, ["seed"])
        rows = [measure(settings.database_url, project, days, h, work) for h in HISTORY_DAYS]
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
                "hourly run (s)",
                "of which the mart (s)",
            ),
            rows,
        )
    return section
