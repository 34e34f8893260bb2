"""Funnels: how the funnel attempts' build time grows with the number of steps.

Shop traffic is loaded once and its defined events built once; then one funnel at a time of 2,
5, 10 and 20 steps (the shop's browse steps repeated, so a 20-step funnel also has 4 times the
matching step events of a 5-step one) is compiled into the seeds, and its step events and
attempts are rebuilt from scratch. The time is dbt's own for the attempts models
(fct_funnel_entries_device and _user, no parsing) from the step events, for `unit: device` and
`unit: user`. The walk is one pass per unit, so time should grow with the step events
(about linearly with the steps here), never with pairs of steps.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg

from benchmarks.common import REPO, Section, scratch
from demo import traffic
from ingestion import schema
from ingestion.loader import store_events
from retrolytics.language import funnels
from retrolytics.language.funnels import EventRef, Funnel, Step
from retrolytics.language.seeds import compile_seed
from retrolytics.warehouse import runner

CYCLE = ("viewed_product_list", "viewed_product", "added_to_cart", "viewed_cart", "viewed_checkout")
STEP_COUNTS = (2, 5, 10, 20)


def funnel_of(steps: int, unit: str) -> Funnel:
    return Funnel(
        name=f"bench_{steps}_steps",
        description="benchmark",
        owner="benchmarks",
        steps=tuple(Step(EventRef(definition=CYCLE[i % len(CYCLE)])) for i in range(steps)),
        conversion_window_seconds=7 * 86_400,
        unit=unit,
    )


ATTEMPTS_MODELS = ("fct_funnel_entries_device", "fct_funnel_entries_user")


def model_seconds(result) -> float:
    """dbt's own time for the attempts models (both units; the other one has no funnel)."""
    seconds = [n.execution_time for n in result.result.results if n.node.name in ATTEMPTS_MODELS]
    if len(seconds) != len(ATTEMPTS_MODELS):
        raise RuntimeError(f"{ATTEMPTS_MODELS} did not all run")
    return sum(seconds)


def run(quick: bool) -> Section:
    events = 30_000 if quick else 300_000
    section = Section(
        "Funnels: build time by number of steps",
        f"python -m benchmarks --only funnels{' --quick' if quick else ''}",
    )
    with scratch("funnels") as settings, tempfile.TemporaryDirectory() as work:
        project = Path(
            shutil.copytree(
                REPO / "dbt_project",
                Path(work) / "dbt_project",
                ignore=shutil.ignore_patterns("target", "logs", "*.csv"),
            )
        )
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            schema.bootstrap(conn)
            store_events(conn, traffic.generate_events(events, 7, seed=5))
        compile_seed(REPO / "definitions", project)
        url = settings.database_url
        runner.run_dbt(
            ["build", "--exclude-resource-type", "test", "--quiet"],
            database_url=url,
            project_dir=project,
        )
        section.add(f"{events} shop events over 7 days; conversion window 7d")
        rows = []
        for unit in ("device", "user"):
            for steps in STEP_COUNTS:
                for name, text in funnels.seed_files([funnel_of(steps, unit)]).items():
                    (project / "seeds" / name).write_text(text)
                result = runner.run_dbt(
                    [
                        "build",
                        "--select",
                        "funnels",
                        "funnel_steps",
                        "stg_funnels",
                        "stg_funnel_steps",
                        "int_funnel_versions",
                        "int_funnels",
                        "int_funnel_step_events",
                        "int_funnel_recompute_plan",
                        *ATTEMPTS_MODELS,
                        "fct_funnel_entries",
                        "--full-refresh",
                        "--exclude-resource-type",
                        "test",
                        "--quiet",
                    ],
                    database_url=url,
                    project_dir=project,
                )
                with psycopg.connect(url) as conn:
                    matched, attempts = conn.execute(
                        "select (select count(*) from intermediate.int_funnel_step_events), "
                        "(select count(*) from marts.fct_funnel_entries)"
                    ).fetchone()
                seconds = model_seconds(result)
                rows.append(
                    (
                        unit,
                        steps,
                        matched,
                        attempts,
                        f"{seconds:.2f}",
                        f"{seconds / matched * 1e6:.1f}",
                    )
                )
        section.table(
            ("unit", "steps", "step events", "attempts", "seconds", "µs per step event"), rows
        )
    return section
