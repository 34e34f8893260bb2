"""BI reads: latency of the dashboard queries on mart_funnel_conversion, against the facts.

90 days of shop traffic are loaded and the whole dbt project is built with the shipped
definitions and funnels. Then the queries a funnel dashboard sends for one funnel
(``browse_to_purchase``) over the 90 days are run many times each on one connection, as a BI tool
with a connection pool would (no server-side prepared statements: ad-hoc SQL): the funnel's
steps, the same broken down by utm_source, the daily conversion trend, the weekly and monthly
rows (units once per period, units still in progress) and distinct units over any 30 days from
``mart_funnel_unit_steps``. Next to each, the
same answer computed from the facts (``fct_funnel_entries``), which is what the mart saves a
dashboard from; the two must return the same rows, and the benchmark says whether they did.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from benchmarks.bench_definitions import SHIPPED_DEFINITIONS, dbt, dbt_project_copy, load_events
from benchmarks.common import Section, Stopwatch, scratch, section_command
from demo import traffic
from retrolytics.language.seeds import compile_seed

FUNNEL = "browse_to_purchase"
DAYS = 90
WARM_UP = 5

MART = "marts.mart_funnel_conversion"
FACTS = "marts.fct_funnel_entries"
UNIT_STEPS = "marts.mart_funnel_unit_steps"
WHERE = (
    "funnel_name = %(funnel)s and period = 'day' "
    "and period_start >= %(since)s and period_start < %(until)s"
)
FACT_WHERE = (
    "f.outcome <> 'excluded' and f.funnel_name = %(funnel)s and f.entry_day >= %(since)s "
    "and f.entry_day < %(until)s"
)
# The daily rows' grain is (day, breakdown value), with the overall value '(all)' beside the
# others: a person counts once per day overall, and once per day and utm_source they entered
# with. The facts' answers keep that grain. The weekly query reads the mart's week rows, where a
# person counts once per week.
BREAKDOWN = "coalesce(f.breakdown_value, '(none)')"
# Attempts that filled at least k steps, one row per k (ordered funnel: furthest_step = filled).
FACT_STEPS = (
    f"from {FACTS} as f cross join generate_series(1, f.furthest_step) as s (k) where {FACT_WHERE}"
)

QUERIES: dict[str, tuple[str, str]] = {
    "funnel steps, 90 days": (
        f"select step_number, sum(units) as units, sum(entries) as entries from {MART} "
        f"where {WHERE} and breakdown_value = '(all)' group by step_number order by step_number",
        f"select s.k, count(distinct (f.entry_day, f.unit_id)), count(*) "
        f"{FACT_STEPS} group by s.k order by s.k",
    ),
    "by utm_source, 90 days": (
        f"select breakdown_value, step_number, sum(units), sum(entries) from {MART} "
        f"where {WHERE} and breakdown_value <> '(all)' group by breakdown_value, step_number "
        "order by 1, 2",
        f"select {BREAKDOWN}, s.k, count(distinct (f.entry_day, f.unit_id)), count(*) "
        f"{FACT_STEPS} group by 1, 2 order by 1, 2",
    ),
    "daily trend: entered and converted per day": (
        "select period_start, sum(units) filter (where step_number = 1), "
        f"sum(units) filter (where step_number = step_count) from {MART} "
        f"where {WHERE} and breakdown_value = '(all)' group by period_start order by period_start",
        "select f.entry_day, count(distinct f.unit_id), "
        "count(distinct f.unit_id) filter (where f.furthest_step = 5) "
        f"from {FACTS} as f where {FACT_WHERE} group by f.entry_day order by f.entry_day",
    ),
    "weekly units per step, 90 days": (
        "select period_start, step_number, units from "
        f"{MART} where funnel_name = %(funnel)s and period = 'week' and breakdown_value = '(all)' "
        "and period_start >= date_trunc('week', %(since)s::timestamp)::date "
        "and period_start < %(until)s order by 1, 2",
        "select date_trunc('week', f.entry_day::timestamp)::date, s.k, count(distinct f.unit_id) "
        f"from {FACTS} as f cross join generate_series(1, f.furthest_step) as s (k) "
        "where f.outcome <> 'excluded' and f.funnel_name = %(funnel)s "
        "and f.entry_day >= date_trunc('week', %(since)s::timestamp)::date "
        "and f.entry_day < %(until)s group by 1, 2 order by 1, 2",
    ),
    "monthly units and units in progress per step": (
        "select period_start, step_number, units, units_in_progress from "
        f"{MART} where funnel_name = %(funnel)s and period = 'month' and breakdown_value = '(all)' "
        "and period_start >= date_trunc('month', %(since)s::timestamp)::date "
        "and period_start < %(until)s order by 1, 2",
        "select date_trunc('month', f.entry_day::timestamp)::date, s.k, count(distinct f.unit_id), "
        "count(distinct f.unit_id) filter (where f.outcome = 'in_progress') "
        f"from {FACTS} as f cross join generate_series(1, f.furthest_step) as s (k) "
        "where f.outcome <> 'excluded' and f.funnel_name = %(funnel)s "
        "and f.entry_day >= date_trunc('month', %(since)s::timestamp)::date "
        "and f.entry_day < %(until)s group by 1, 2 order by 1, 2",
    ),
    # Any range of days (here the last 30) with each unit once: the documented table of each
    # attempt's steps; no mart grain answers it.
    "distinct units per step, any 30 days (mart_funnel_unit_steps)": (
        # Every attempt of the funnel: its breakdown_value is the value besides (all).
        f"select step_number, count(distinct unit_id) from {UNIT_STEPS} "
        "where funnel_name = %(funnel)s "
        "and entry_day >= %(until)s::date - 30 and entry_day < %(until)s "
        "group by step_number order by step_number",
        f"select s.k, count(distinct f.unit_id) from {FACTS} as f "
        "cross join generate_series(1, f.furthest_step) as s (k) "
        "where f.outcome <> 'excluded' and f.funnel_name = %(funnel)s "
        "and f.entry_day >= %(until)s::date - 30 and f.entry_day < %(until)s "
        "group by s.k order by s.k",
    ),
}


def latencies(conn: psycopg.Connection, query: str, params: dict, runs: int) -> list[float]:
    """Seconds of each of ``runs`` executions (rows fetched), after a few to warm the caches."""
    seconds = []
    for index in range(WARM_UP + runs):
        started = time.perf_counter()
        conn.execute(query, params).fetchall()
        if index >= WARM_UP:
            seconds.append(time.perf_counter() - started)
    return seconds


def _quantile_ms(values: list[float], q: float) -> str:
    return (
        f"{1000 * statistics.quantiles(values, n=100, method='inclusive')[round(q * 100) - 1]:.1f}"
    )


def _normalized(rows: list[tuple]) -> list[tuple]:
    return [tuple(int(v) if isinstance(v, int | float) else v for v in row) for row in rows]


def run(quick: bool) -> Section:
    per_day = 1_500 if quick else 10_000
    runs = 100 if quick else 300
    # The facts' answers take seconds each at full size: enough runs for their median, which the
    # ratio uses; their p99 over so few runs is close to their maximum.
    fact_runs = 20
    section = Section(
        "5. BI reads: dashboard queries on the funnel mart",
        section_command("bi", quick),
    )
    with scratch("bi") as settings, tempfile.TemporaryDirectory() as tmp:
        url = settings.database_url
        until = datetime.now(UTC).date()
        with Stopwatch() as loading:
            stored = load_events(
                url, traffic.generate_events(per_day * DAYS, DAYS, seed=31, until=until)
            )
        project = dbt_project_copy(Path(tmp))
        compile_seed(SHIPPED_DEFINITIONS, project)
        with Stopwatch() as building:
            dbt(project, url, ["seed"])
            dbt(project, url, ["run"])
        params = {
            "funnel": FUNNEL,
            "since": until - timedelta(days=DAYS - 1),
            "until": until + timedelta(days=1),
        }
        rows = []
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            mart_rows, fact_rows, funnels = conn.execute(
                f"select (select count(*) from {MART}), (select count(*) from {FACTS}), "
                "(select count(*) from staging.stg_funnels)"
            ).fetchone()
            for name, (on_mart, on_facts) in QUERIES.items():
                agree = _normalized(conn.execute(on_mart, params).fetchall()) == _normalized(
                    conn.execute(on_facts, params).fetchall()
                )
                mart = latencies(conn, on_mart, params, runs)
                facts = latencies(conn, on_facts, params, fact_runs)
                rows.append(
                    (
                        name,
                        _quantile_ms(mart, 0.5),
                        _quantile_ms(mart, 0.99),
                        _quantile_ms(facts, 0.5),
                        _quantile_ms(facts, 0.99),
                        f"{statistics.median(facts) / statistics.median(mart):.0f}",
                        "yes" if agree else "**no**",
                    )
                )
        section.add(
            f"{stored} shop events over {DAYS} days (~{per_day}/day) loaded in "
            f"{loading.seconds:.0f} s; seeds and every model built in {building.seconds:.0f} s; "
            f"the mart holds {mart_rows} rows ({funnels} shipped funnels), the facts {fact_rows}. "
            f"{runs} runs per query on the mart ({fact_runs} from the facts) after {WARM_UP} "
            "warm-up runs, one connection, no prepared statements."
        )
        section.lines.append("")
        section.table(
            (
                f"query ({FUNNEL})",
                "mart p50 (ms)",
                "mart p99 (ms)",
                "from facts p50 (ms)",
                "from facts p99 (ms)",
                "facts ÷ mart (p50)",
                "same rows",
            ),
            rows,
        )
        section.lines.append("")
        section.add(
            "Summed over days, the mart's units count a person once per entry day and breakdown "
            "value (its grain); the week and month rows count a person once per period, and "
            "any other range of days is read from mart_funnel_unit_steps (the last row)."
        )
    return section
