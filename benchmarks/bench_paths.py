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
QUICK_HISTORY_DAYS = (3, 9)
# The hourly run as Dagster's windowed step runs it: the `gap: session` path's plan reads the
# sessions plan of the same run, and a moved identity's point comes from it.
PATH_MODELS = ("int_paths_plan", "fct_paths")
PATHS = Family((*SESSION_MODELS, *PATH_MODELS), "intermediate.int_paths_plan")
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
        return median_seconds(
            lambda: self.connection.execute(f"select count(*) from ({DUCKDB_PATHS})").fetchone()[0]
        )


def _paths(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select count(*) filter (where has_path), "
            "count(*) filter (where has_path and path_name = %s) from marts.fct_paths",
            (COMPARED,),
        ).fetchone()


def measure(shop: Shop, history: int) -> tuple:
    timings = build_and_rerun(shop, PATHS, history, _paths)
    counted = _paths(shop.url)
    with psycopg.connect(shop.url) as conn:
        (moved,) = conn.execute(
            "select count(*) from intermediate.int_paths_plan where identity_changed"
        ).fetchone()
    duck = DuckPaths(shop.url, shop.work)
    duck.load()
    duck_seconds, duck_paths = duck.paths()
    assert duck_paths == counted[1], f"DuckDB found {duck_paths} paths, we {counted[1]}"
    full = timings.full_seconds("fct_paths")
    return (
        history + 1,
        timings.events,
        counted[0],
        counted[1],
        f"{full:.2f}",
        f"{duck_seconds:.2f}",
        f"{full / duck_seconds:.1f}",
        timings.planned,
        moved,
        f"{timings.hourly_seconds(*PATH_MODELS):.2f}",
        f"{timings.hourly_seconds('int_paths_plan'):.2f}",
        f"{timings.hourly_seconds(*SESSION_MODELS):.2f}",
    )


def run(quick: bool) -> Section:
    histories = QUICK_HISTORY_DAYS if quick else HISTORY_DAYS
    section = history_section(
        "9",
        "Paths: full build and hourly run as history grows, beside DuckDB",
        "paths",
        quick,
        EVENTS_VARIABLE,
    )
    with shop("paths", quick, EVENTS_VARIABLE, max(histories) + 1) as loaded:
        section.add(
            f"{loaded.description}. Full build: fct_paths "
            "--full-refresh for both shipped declarations (dbt's model seconds). Hourly run: "
            "today's partition with a 24 h lookback after that build, with the sessions "
            "models the paths plan reads (int_sessions_plan, fct_sessions; their seconds in "
            f"their own column), median of {RERUNS}. DuckDB: {COMPARED}'s labelled stream cut, "
            f"collapsed and anchored with window functions, median of {RERUNS}; both find the "
            f"same number of {COMPARED} paths (DuckDB computes one declaration of two, without "
            "the labelling: the ratio flatters it)."
        )
        rows = [measure(loaded, h) for h in histories]
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
                "of which for a moved identity",
                "hourly run: paths models (s)",
                "of which the plan (s)",
                "same run: sessions models (s)",
            ),
            rows,
        )
    return section
