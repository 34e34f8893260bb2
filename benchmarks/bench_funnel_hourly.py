"""Funnels: the hourly run of every shipped funnel, as history grows, beside a full rebuild.

For 7, 30 and 90 days of history at the same traffic per day, a fresh database gets the shop's
history and everything is built once. Then one hour of new traffic arrives (generated as a
day, its times compressed into the hour after the history, so sessions keep their order) and
the hourly run builds that hour, with the window [hour, hour + 1 h) and a 1-hour lookback
(after a `vacuum (analyze)` of the built warehouse, the state autovacuum leaves it in between
two hourly runs). Twice, from the same state: on a copy of the database as Dagster's partition
run does it (one `dbt run` of every model, four at a time), and on the database itself in two
invocations, every model but the funnel models and then the funnel models alone (the step
events, identity snapshot, plan, attempts, changed days and marts), so that models which are
not the funnel engine's (dim_devices and dim_persons rebuild every row each run) do not share
the cores with them. The funnel models should stay flat as history grows: they read the
window's step events and the planned units' attempts, never all history. Last, the funnel
models are rebuilt from scratch over the same data (`--full-refresh`), which does grow with
history.

The hour is on Sunday the 6th of its month, so its day, ISO week and month so far lie inside
the shortest history. The mart also recomputes the periods of every other changed day: those
of attempts whose deadline passed in the hour, entered up to the longest conversion window
before (a month for `buy_again`), so a warehouse younger than that has fewer facts in them.
The changed (funnel, day) pairs and the earliest are listed with the figures.
Times are dbt's own per model (no parsing), one run each.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.bench_definitions import (
    SHIPPED_DEFINITIONS,
    dbt,
    dbt_project_copy,
    load_events,
    model_seconds,
)
from benchmarks.bench_funnel_engines import ATTEMPTS_MODELS, MART_MODELS, STEP_EVENTS_MODEL
from benchmarks.common import Section, scratch, section_command
from demo import traffic
from ingestion import stack
from retrolytics.language.seeds import compile_seed

HISTORY_DAYS = tuple(
    int(days) for days in os.environ.get("RETROLYTICS_BENCH_HOURLY_DAYS", "7,30,90").split(",")
)
LAST_HISTORY_DAY = date(2026, 12, 5)  # the hour is on Sunday 2026-12-06
LOOKBACK_HOURS = 1
# The funnel build, with the identity snapshot the attempts read.
FUNNEL_MODELS = (STEP_EVENTS_MODEL, "int_identity_snapshots", *ATTEMPTS_MODELS, *MART_MODELS)
# Models of the hourly run that are not the funnel engine's and rebuild all their rows each run.
GROWING_OTHERS = ("dim_devices", "dim_persons")
# Rebuilt from scratch for the comparison (the snapshot keeps its history: not a funnel stage).
REBUILT_MODELS = tuple(m for m in FUNNEL_MODELS if m != "int_identity_snapshots")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def hour_of_traffic(events: int, hour: datetime, seed: int) -> list[dict]:
    """``events`` events of one generated day, their times compressed into ``hour``."""
    day = datetime(hour.year, hour.month, hour.day, tzinfo=UTC)
    squeezed = []
    for document in traffic.generate_events(events, 1, seed, until=hour.date()):
        moved = dict(document)
        for key in ("occurred_at", "received_at"):
            if moved.get(key):
                moved[key] = _iso(hour + (_parse(moved[key]) - day) / 24)
        squeezed.append(moved)
    return squeezed


def funnel_seconds(result: Any, models: tuple[str, ...]) -> float:
    return sum(model_seconds(result, model) for model in models)


def settle(url: str) -> None:
    """Vacuum and analyze what the build wrote, as autovacuum has by the next hour of a running
    warehouse: otherwise autovacuum works through the fresh history during the timed run, and
    the more history, the longer it competes for the cores."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum (analyze)")


@contextmanager
def twin_database(url: str) -> Iterator[str]:
    """A copy of the database at ``url`` (file by file: fast), dropped afterwards."""
    name = f"{url_dbname(url)}_twin"
    admin_url = stack.up().database_url
    create = sql.SQL("create database {} template {} strategy file_copy")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(create.format(sql.Identifier(name), sql.Identifier(url_dbname(url))))
    try:
        yield psycopg.conninfo.make_conninfo(url, dbname=name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def url_dbname(url: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(url)["dbname"]


def measure(history_days: int, per_day: int, hour_events: int, work: Path) -> dict[str, Any]:
    with scratch(f"hourly{history_days}") as settings:
        url = settings.database_url
        stored = load_events(
            url,
            traffic.generate_events(
                per_day * history_days, history_days, seed=31, until=LAST_HISTORY_DAY
            ),
        )
        project = dbt_project_copy(work, f"dbt_project_{history_days}")
        compile_seed(SHIPPED_DEFINITIONS, project)
        dbt(project, url, ["seed"])
        dbt(project, url, ["run"])
        settle(url)
        hour = datetime(
            LAST_HISTORY_DAY.year, LAST_HISTORY_DAY.month, LAST_HISTORY_DAY.day, 0, 0, tzinfo=UTC
        ) + timedelta(days=1)
        added = load_events(url, hour_of_traffic(hour_events, hour, seed=37))
        window = {
            "start": _iso(hour),
            "end": _iso(hour + timedelta(hours=1)),
            "lookback_hours": LOOKBACK_HOURS,
        }
        with twin_database(url) as twin_url:  # the same warehouse and hour, run as Dagster does
            _, whole = dbt(project, twin_url, ["run"], **window)
        upstream_wall, upstream = dbt(project, url, ["run", "--exclude", *FUNNEL_MODELS], **window)
        funnels_wall, hourly = dbt(project, url, ["run", "-s", *FUNNEL_MODELS], **window)
        with psycopg.connect(url) as conn:
            changed_days, earliest = conn.execute(
                "select count(*), min(entry_day) from intermediate.int_funnel_changed_days"
            ).fetchone()
        _, rebuilt = dbt(project, url, ["run", "-s", *REBUILT_MODELS, "--full-refresh"])
        return {
            "history": stored,
            "added": added,
            "hourly_funnels": funnel_seconds(hourly, FUNNEL_MODELS),
            "hourly_funnels_in_one_run": funnel_seconds(whole, FUNNEL_MODELS),
            "changed_days": f"{changed_days} from {earliest}",
            "hourly_by_model": {m: model_seconds(hourly, m) for m in FUNNEL_MODELS},
            "hourly_defined_events": model_seconds(upstream, "defined_events"),
            "hourly_wall": upstream_wall + funnels_wall,
            "hourly_others": {m: model_seconds(upstream, m) for m in GROWING_OTHERS},
            "rebuild_funnels": funnel_seconds(rebuilt, REBUILT_MODELS),
        }


def run(quick: bool) -> Section:
    per_day, hour_events = (2_000, 5_000) if quick else (20_000, 50_000)
    section = Section(
        "4c. Funnels: the hourly run of all shipped funnels as history grows",
        section_command("funnel_hourly", quick),
    )
    rows = []
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for days in HISTORY_DAYS:
            figures[days] = found = measure(days, per_day, hour_events, Path(tmp))
            rows.append(
                (
                    days,
                    found["history"],
                    found["added"],
                    f"{found['hourly_funnels']:.2f}",
                    f"{found['hourly_funnels_in_one_run']:.2f}",
                    found["changed_days"],
                    f"{found['hourly_defined_events']:.2f}",
                    *(f"{found['hourly_others'][m]:.2f}" for m in GROWING_OTHERS),
                    f"{found['hourly_wall']:.2f}",
                    f"{found['rebuild_funnels']:.2f}",
                )
            )
    section.add(
        f"History at {per_day} shop events per day; then {hour_events} events in the hour after "
        f"it; the hourly run's window is that hour with a {LOOKBACK_HOURS}-hour lookback."
    )
    section.lines.append("")
    section.table(
        (
            "history (days)",
            "history events",
            "new events",
            "hourly run: funnel models alone (s)",
            "funnel models within one hourly dbt run (s)",
            "changed (funnel, day) pairs",
            "hourly run: defined_events (s)",
            *(f"hourly run: {m} (s)" for m in GROWING_OTHERS),
            "hourly run: both dbt invocations (s)",
            "full rebuild: funnel models (s)",
        ),
        rows,
    )
    section.lines += ["", "The hourly run's funnel models, seconds each:", ""]
    section.table(
        ("history (days)", *FUNNEL_MODELS),
        [
            (days, *(f"{figures[days]['hourly_by_model'][m]:.2f}" for m in FUNNEL_MODELS))
            for days in HISTORY_DAYS
        ],
    )
    first, last = figures[HISTORY_DAYS[0]], figures[HISTORY_DAYS[-1]]
    section.lines.append("")
    for label, key in (
        ("alone", "hourly_funnels"),
        ("within one hourly dbt run", "hourly_funnels_in_one_run"),
    ):
        ratios = ", ".join(
            f"{days} ÷ {HISTORY_DAYS[0]} days {figures[days][key] / first[key]:.2f}"
            for days in HISTORY_DAYS[1:]
        )
        section.add(
            f"Hourly funnel models {label}, times as long as with the shortest history: {ratios}."
        )
    section.add(
        f"Full rebuild of the funnel models, {HISTORY_DAYS[-1]} ÷ {HISTORY_DAYS[0]} days: "
        f"{last['rebuild_funnels'] / first['rebuild_funnels']:.2f} times."
    )
    return section
