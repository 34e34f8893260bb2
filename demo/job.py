"""``retrolytics demo``: the main job, end to end on the local stack.

Starts PostgreSQL and Kafka, produces a week of synthetic shop traffic, loads it exactly once,
derives the event definitions and funnels with dbt over all history and prints what landed and
what it means.
"""

from __future__ import annotations

import psycopg

from demo import traffic
from demo.funnels import show_funnels
from demo.paths import print_top_paths
from demo.retention import print_retention_table
from demo.sessions import print_session_summary
from demo.tables import print_table
from ingestion import loader, stack
from ingestion.settings import Settings
from retrolytics.language.check import load_catalog, load_redaction
from retrolytics.warehouse import project, runner


def show_raw_events(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        by_type = conn.execute(
            "select type, count(*), count(distinct anonymous_id) from raw.events "
            "group by 1 order by 2 desc"
        ).fetchall()
        by_day = conn.execute(
            "select occurred_at::date, count(*) from raw.events group by 1 order by 1"
        ).fetchall()
        dead = conn.execute("select count(*) from raw.dead_letters").fetchone()[0]
    print_table("raw.events by type", ("type", "events", "devices"), by_type)
    print_table("raw.events by day (UTC)", ("day", "events"), by_day)
    print(f"\nraw.dead_letters: {dead}")


def show_definitions(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select d.definition_name, count(e.event_id), count(distinct e.anonymous_id) "
            "from (select distinct definition_name from staging.stg_event_definitions) d "
            "left join marts.defined_events e using (definition_name) "
            "group by 1 order by 2 desc, 1"
        ).fetchall()
    print_table(
        "event definitions (marts.defined_events)", ("definition", "events", "devices"), rows
    )


def main(events: int = 20_000, days: int = 7, seed: int = 1, definitions: str | None = None) -> int:
    info = stack.up()
    settings = Settings.from_env().with_overrides(
        database_url=info.database_url,
        loader_database_url=info.loader_database_url,
        dbt_database_url=info.dbt_database_url,
        kafka_bootstrap=info.kafka_bootstrap,
    )
    print(traffic.produce(settings, events=events, days=days, seed=seed))
    definitions_dir = project.definitions_dir(definitions)
    load = loader.Loader(settings, redaction=load_redaction(definitions_dir))
    try:
        print(load.drain().summary())
    finally:
        load.close()
    show_raw_events(settings.database_url)
    print(f"\ncompiling the declarations of {definitions_dir}; running dbt build over all history")
    runner.run_dbt(
        ["build", "--quiet"], database_url=settings.dbt_url, definitions_dir=definitions_dir
    )
    # dbt's login built staging and marts; the owner may not read them (least privilege).
    show_definitions(settings.dbt_url)
    show_funnels(settings.dbt_url, load_catalog(definitions_dir).funnels)
    print()
    print_session_summary(settings.dbt_url)
    print()
    print_top_paths(settings.dbt_url)
    print()
    print_retention_table(settings.dbt_url)
    print(
        "\nNext: `make ui` (or `uv run dagster dev`) starts Dagster at http://127.0.0.1:3000, "
        "where the raw events, every dbt model and each funnel are assets to materialize, "
        "partition by day and backfill."
    )
    return 0
