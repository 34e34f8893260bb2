"""Paths: fct_paths built from scratch and by the hourly run, as history grows, beside a DuckDB
computation of the same paths from the same labelled events.

Shop traffic is loaded straight into raw.events (the bulk path). For each history length the
warehouse holds that many days plus a newest day (the other daily partitions detached), and

- the full build: ``fct_paths --full-refresh`` over all of it, for the shipped declarations
  (``after_product_view``: per device, 30 minutes; ``to_checkout``: per person, by session);
  dbt's model seconds, after everything upstream was built;
- the hourly run: today's partition as the hourly schedule runs it (``start`` = the newest day,
  ``end`` = the day after, ``lookback_hours`` 24): ``int_paths_plan`` + ``fct_paths``, median of
  three reruns. Flat in history is the goal: a run redoes the window's units from their segment.
- DuckDB, the peer: ``after_product_view``'s labelled stream (``int_path_events``, exported once,
  untimed) cut at 30 minutes with LAG and a running SUM, repeats collapsed, anchored at the first
  viewed_product, five steps aggregated into lists; median of three. It does neither the
  labelling nor the second declaration (persons, sessions) and writes no table; ours does all.
  Both find the same number of paths.
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
QUICK_HISTORY_DAYS = (3, 9)
RERUNS = 3
PATH_MODELS = ("int_paths_plan", "fct_paths")
FULL_EVENTS = 1_000_000
QUICK_EVENTS = 200_000
EVENTS_VARIABLE = "RETROLYTICS_BENCH_PATH_EVENTS"
COMPARED = "after_product_view"

DUCKDB_PATHS = """
with gaps as (
    select *,
        case when occurred_at - lag(occurred_at) over device_stream < interval 30 minutes
            then 0 else 1 end as starts_segment
    from stream
    window device_stream as (partition by anonymous_id order by occurred_at, event_id)
),
segmented as (
    select *, sum(starts_segment) over (
        partition by anonymous_id order by occurred_at, event_id rows unbounded preceding
    ) as segment
    from gaps
),
repeats as (
    select *, lag(label) over (
        partition by anonymous_id, segment order by occurred_at, event_id
    ) as previous_label
    from segmented
),
steps as (
    select *, row_number() over (
        partition by anonymous_id, segment order by occurred_at, event_id
    ) as step
    from repeats
    where previous_label is distinct from label
),
anchored as (
    select *, min(step) filter (where label = 'viewed_product') over (
        partition by anonymous_id, segment
    ) as anchor
    from steps
)
select anonymous_id, segment, list(label order by step) as path
from anchored
where step between anchor and anchor + 4
group by anonymous_id, segment
"""


class DuckPaths:
    """One declaration's labelled stream in DuckDB, exported from PostgreSQL once."""

    def __init__(self, database_url: str, folder: Path) -> None:
        self.url = database_url
        self.folder = folder

    def load(self) -> None:
        import duckdb

        csv = self.folder / "stream.csv"
        with psycopg.connect(self.url) as conn, conn.cursor() as cur, csv.open("wb") as out:
            query = (
                "copy (select anonymous_id, event_id, occurred_at, label "
                f"from intermediate.int_path_events where path_name = '{COMPARED}') "
                "to stdout with (format csv, header)"
            )
            with cur.copy(query) as copy:
                for chunk in copy:
                    out.write(chunk)
        self.connection = duckdb.connect(str(self.folder / "duck.db"))
        self.connection.execute("drop table if exists stream")
        self.connection.execute(
            f"create table stream as select * from read_csv('{csv}', header = true, "
            "columns = {'anonymous_id': 'VARCHAR', 'event_id': 'UUID', "
            "'occurred_at': 'TIMESTAMPTZ', 'label': 'VARCHAR'})"
        )

    def paths(self) -> tuple[float, int]:
        seconds = []
        for _ in range(RERUNS):
            started = time.perf_counter()
            count = self.connection.execute(f"select count(*) from ({DUCKDB_PATHS})").fetchone()[0]
            seconds.append(time.perf_counter() - started)
        return statistics.median(seconds), count


def _paths(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select count(*) filter (where has_path), "
            "count(*) filter (where has_path and path_name = %s) from marts.fct_paths",
            (COMPARED,),
        ).fetchone()


def measure(url: str, project: Path, days: list[date], history: int, work: Path) -> tuple:
    newest = days[-1]
    set_partitions(url, days, set(days[-1 - history :]))
    with psycopg.connect(url) as conn:
        events = conn.execute("select count(*) from raw.events").fetchone()[0]
    dbt(project, url, ["run", "-s", "+fct_paths", "--exclude", *PATH_MODELS])
    _, result = dbt(project, url, ["run", "-s", *PATH_MODELS, "--full-refresh"])
    full = model_seconds(result, "fct_paths")
    counted = _paths(url)
    hourly = []
    for _ in range(RERUNS):
        _, result = dbt(project, url, ["run", "-s", *PATH_MODELS], **day_window(newest))
        hourly.append(sum(model_seconds(result, model) for model in PATH_MODELS))
    assert _paths(url) == counted, "the hourly run changed the paths"
    with psycopg.connect(url) as conn:
        planned = conn.execute("select count(*) from intermediate.int_paths_plan").fetchone()[0]
    duck = DuckPaths(url, work)
    duck.load()
    duck_seconds, duck_paths = duck.paths()
    assert duck_paths == counted[1], f"DuckDB found {duck_paths} paths, we {counted[1]}"
    return (
        history + 1,
        events,
        counted[0],
        counted[1],
        f"{full:.2f}",
        f"{duck_seconds:.2f}",
        f"{full / duck_seconds:.1f}",
        planned,
        f"{statistics.median(hourly):.2f}",
    )


def run(quick: bool) -> Section:
    histories = QUICK_HISTORY_DAYS if quick else HISTORY_DAYS
    days_total = max(histories) + 1
    events_total = QUICK_EVENTS if quick else event_count(EVENTS_VARIABLE, FULL_EVENTS)
    size = f"{EVENTS_VARIABLE}={events_total} " if not quick and events_total != FULL_EVENTS else ""
    section = Section(
        "9. Paths: full build and hourly run as history grows, beside DuckDB",
        f"{size}python -m benchmarks {'--quick ' if quick else ''}--only paths",
    )
    with scratch("paths") as settings, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        days, _ = traffic(1, days_total)
        stored, how = load_scaled(
            settings.database_url,
            events_total,
            lambda n: traffic(n // days_total, days_total)[1],
        )
        section.add(
            f"{stored} shop events over {days_total} days: {how}. Full build: fct_paths "
            "--full-refresh for both shipped declarations (dbt's model seconds). Hourly run: "
            "today's partition with a 24 h lookback after that build, int_paths_plan + "
            f"fct_paths, median of {RERUNS}. DuckDB: {COMPARED}'s labelled stream cut, "
            f"collapsed and anchored with window functions, median of {RERUNS}; both find the "
            f"same number of {COMPARED} paths (DuckDB computes one declaration of two, without "
            "the labelling: the ratio flatters it)."
        )
        project = dbt_project_copy(work)
        compile_seed(SHIPPED_DEFINITIONS, project)
        dbt(project, settings.database_url, ["seed"])
        rows = [measure(settings.database_url, project, days, h, work) for h in histories]
        section.lines.append("")
        section.table(
            (
                "days",
                "raw events",
                "paths",
                f"{COMPARED} paths",
                "full build (s)",
                "DuckDB (s)",
                "ours ÷ DuckDB",
                "units planned",
                "hourly run (s)",
            ),
            rows,
        )
    return section
