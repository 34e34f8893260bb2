"""``retrolytics demo``: the main job, end to end on the local stack.

Starts PostgreSQL and Kafka, produces a week of synthetic shop traffic, loads it exactly once,
derives the event definitions and funnels with dbt over all history and prints what landed and
what it means.
"""

from __future__ import annotations

import psycopg

from demo import traffic
from demo.paths import print_top_paths
from demo.retention import print_retention_table
from demo.sessions import print_session_summary
from ingestion import loader, stack
from ingestion.settings import Settings
from retrolytics.language.check import load_redaction
from retrolytics.warehouse import project, runner


def _print_table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows, strict=False)]
    for line in (header, *rows):
        print("  " + "  ".join(str(v).rjust(w) for v, w in zip(line, widths, strict=True)))


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
    _print_table("raw.events by type", ("type", "events", "devices"), by_type)
    _print_table("raw.events by day (UTC)", ("day", "events"), by_day)
    print(f"\nraw.dead_letters: {dead}")


def show_definitions(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select d.definition_name, count(e.event_id), count(distinct e.anonymous_id) "
            "from (select distinct definition_name from staging.stg_event_definitions) d "
            "left join marts.defined_events e using (definition_name) "
            "group by 1 order by 2 desc, 1"
        ).fetchall()
    _print_table(
        "event definitions (marts.defined_events)", ("definition", "events", "devices"), rows
    )


# Units that reached each step at least once, over all history. An unordered funnel's
# furthest_step counts steps done in any order, so its rows read "k of n steps".
FUNNEL_STEPS = """
select s.funnel_name, f.entries, s.position,
       case when f.order_mode = 'unordered'
            then format('any %s of %s steps', s.position, f.step_count)
            else s.label end,
       count(distinct e.unit_id) filter (where e.furthest_step >= s.position) as units
from staging.stg_funnel_steps s
join staging.stg_funnels f using (funnel_name)
join marts.fct_funnel_entries e
  on e.funnel_name = s.funnel_name and e.outcome <> 'excluded'
where s.role = 'step'
group by 1, 2, 3, 4
order by 1, 3
"""


# Funnels with exclusions: how long they reach, and how many attempts they disqualified.
FUNNEL_EXCLUSIONS = """
select f.funnel_name, f.exclusion_scope,
       (select count(*) from marts.fct_funnel_entries e
        where e.funnel_name = f.funnel_name and e.outcome = 'excluded')
from staging.stg_funnels f
where exists (select from staging.stg_funnel_steps s
              where s.funnel_name = f.funnel_name and s.role = 'exclusion')
"""


def show_funnels(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(FUNNEL_STEPS).fetchall()
        exclusions = {name: (scope, n) for name, scope, n in conn.execute(FUNNEL_EXCLUSIONS)}
    funnels: dict[str, list[tuple]] = {}
    for funnel, entries, position, label, units in rows:
        # every_entry: each step-1 event's window counts (windowFunnel), said in the title.
        title = funnel if entries == "sequential" else f"{funnel} (entries: {entries})"
        funnels.setdefault(title, []).append((position, label, units))
    for funnel, steps in funnels.items():
        entered = steps[0][2] or 1
        table = [
            (position, label, units, f"{100 * units / entered:.1f}%")
            for position, label, units in steps
        ]
        title = f"funnel {funnel}"
        if funnel in exclusions:
            scope, excluded = exclusions[funnel]
            title += f" ({excluded} attempts excluded, exclusion_scope: {scope})"
        _print_table(title, ("step", "name", "units", "of entered"), table)


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
    show_funnels(settings.dbt_url)
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
