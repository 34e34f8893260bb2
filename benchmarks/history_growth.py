"""What the history-growth benchmarks (sessions, paths, retention) share.

Each loads shop traffic straight into raw.events (``bulk.load_scaled``) once, then for each
history length keeps that many days plus a newest day attached (the other daily partitions
detached) and times its family of models twice:

- the full build: the family ``--full-refresh`` over all of it (dbt's model seconds);
- the hourly run: today's partition as the hourly schedule runs it (``start`` = the newest day,
  ``end`` = the day after, ``lookback_hours`` 24) after that build, median of ``RERUNS``. Flat
  in history is the goal. The rerun must not change the result the benchmark compares.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
from benchmarks.common import Section, scratch, section_command
from retrolytics.language.seeds import compile_seed

RERUNS = 3
# The sessions models an analysis' plan reads (moved identities, re-derived sessions), built in
# the same hourly run as Dagster's windowed step builds them.
SESSION_MODELS = ("int_sessions_plan", "fct_sessions")
FULL_EVENTS = 1_000_000
QUICK_EVENTS = 200_000


@dataclass(frozen=True)
class Family:
    """The models one analysis is built from, and the plan its windowed run reads."""

    models: tuple[str, ...]  # built and timed together, in dbt's order
    plan: str  # the plan table, e.g. intermediate.int_sessions_plan

    @property
    def last(self) -> str:
        return self.models[-1]


@dataclass(frozen=True)
class Shop:
    """Shop traffic loaded into a scratch database, with a dbt project seeded for it."""

    url: str
    project: Path
    work: Path  # a temporary folder for the peers' files
    days: list[date]
    description: str  # how many events were stored, and how


@dataclass(frozen=True)
class Timings:
    events: int  # raw events attached
    full: dict[str, float]  # model -> seconds of the full build
    hourly: list[dict[str, float]]  # model -> seconds, one mapping per rerun
    planned: int  # rows of the plan after the hourly runs

    def full_seconds(self, *models: str) -> float:
        return sum(self.full[model] for model in models)

    def hourly_seconds(self, *models: str) -> float:
        """Median over the reruns of the named models' seconds (all models when none named)."""
        return statistics.median(sum(run[m] for m in models or run) for run in self.hourly)


def median_seconds(query: Callable[[], int]) -> tuple[float, int]:
    """A peer's query run ``RERUNS`` times: (median seconds, its last answer)."""
    seconds, answer = [], 0
    for _ in range(RERUNS):
        started = time.perf_counter()
        answer = query()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), answer


def events_to_load(quick: bool, variable: str) -> tuple[int, str]:
    """(events, the environment assignment that asked for them, '' for the default size)."""
    if quick:
        return QUICK_EVENTS, ""
    events = event_count(variable, FULL_EVENTS)
    return events, f"{variable}={events} " if events != FULL_EVENTS else ""


def history_section(number: str, title: str, name: str, quick: bool, variable: str) -> Section:
    _, size = events_to_load(quick, variable)
    return Section(
        f"{number}. {title}",
        section_command(name, quick, size),
    )


@contextmanager
def shop(label: str, quick: bool, variable: str, days_total: int) -> Iterator[Shop]:
    """A scratch database holding ``days_total`` days of shop traffic, seeded and compiled."""
    events, _ = events_to_load(quick, variable)
    with scratch(label) as settings, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        days, _ = traffic(1, days_total)
        stored, how = load_scaled(
            settings.database_url, events, lambda n: traffic(n // days_total, days_total)[1]
        )
        project = dbt_project_copy(work)
        compile_seed(SHIPPED_DEFINITIONS, project)
        dbt(project, settings.database_url, ["seed"])
        description = f"{stored} shop events over {days_total} days: {how}"
        yield Shop(settings.database_url, project, work, days, description)


def build_and_rerun(
    shop: Shop, family: Family, history: int, result: Callable[[str], object]
) -> Timings:
    """Attach ``history`` days plus the newest, build ``family`` from scratch, then rerun its
    hourly window; ``result(url)`` must read the same before and after the reruns."""
    url, project = shop.url, shop.project
    set_partitions(url, shop.days, set(shop.days[-1 - history :]))
    with psycopg.connect(url) as conn:
        events = conn.execute("select count(*) from raw.events").fetchone()[0]
    dbt(project, url, ["run", "-s", f"+{family.last}", "--exclude", *family.models])
    _, built = dbt(project, url, ["run", "-s", *family.models, "--full-refresh"])
    before = result(url)
    hourly = []
    for _ in range(RERUNS):
        _, rerun = dbt(project, url, ["run", "-s", *family.models], **day_window(shop.days[-1]))
        hourly.append({model: model_seconds(rerun, model) for model in family.models})
    after = result(url)
    assert after == before, f"the hourly run changed the result: {before} then {after}"
    with psycopg.connect(url) as conn:
        planned = conn.execute(f"select count(*) from {family.plan}").fetchone()[0]
    full = {model: model_seconds(built, model) for model in family.models}
    return Timings(events, full, hourly, planned)
