"""``retrolytics demo``: the main job, end to end on the local stack.

Starts PostgreSQL and Kafka, produces a week of synthetic shop traffic, loads it exactly once and
prints what landed.
"""

from __future__ import annotations

import psycopg

from ingestion import generator, loader, stack
from ingestion.settings import Settings


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


def main(events: int = 20_000, days: int = 7, seed: int = 1) -> int:
    info = stack.up()
    settings = Settings.from_env().with_overrides(
        database_url=info.database_url, kafka_bootstrap=info.kafka_bootstrap
    )
    print(generator.produce(settings, events=events, days=days, seed=seed))
    load = loader.Loader(settings)
    try:
        print(load.drain().summary())
    finally:
        load.close()
    show_raw_events(settings.database_url)
    return 0
