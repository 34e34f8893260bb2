"""The route indexes of raw.events' day partitions: the trigram (GIN) index waits until a day
has cooled (ingestion.schema.GIN_AFTER), and ``retrolytics maintain`` builds it then."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from ingestion import schema
from ingestion.settings import Settings
from retrolytics import cli

pytestmark = pytest.mark.integration

TRIGRAMS = "events_hierarchy_trigrams"


def indexes_of(conn: psycopg.Connection, day: date) -> set[str]:
    """The route indexes ``day``'s partition has (valid ones), by their names in ROUTE_INDEXES."""
    partition = schema.partition_name(day)
    present = {
        name
        for (name,) in conn.execute(
            "select c.relname from pg_index i join pg_class c on c.oid = i.indexrelid "
            "where i.indrelid = %s::regclass and i.indisvalid",
            (f"raw.{partition}",),
        )
    }
    return {
        name for name in schema.ROUTE_INDEXES if schema.route_index_name(partition, name) in present
    }


def test_the_days_the_loader_fills_now_wait_for_their_trigram_index(
    raw_db: psycopg.Connection,
) -> None:
    today = datetime.now(tz=UTC).date()
    yesterday, before = today - timedelta(days=1), today - timedelta(days=2)
    schema.ensure_partitions(raw_db, [today, yesterday, before])

    for hot in (today, yesterday):
        assert TRIGRAMS not in indexes_of(raw_db, hot)
        assert indexes_of(raw_db, hot) == set(schema.ROUTE_INDEXES) - {TRIGRAMS}
    assert TRIGRAMS in indexes_of(raw_db, before)  # ended more than GIN_AFTER ago


def cooled_without_its_index(conn: psycopg.Connection) -> tuple[date, date]:
    """Today's partition and one of three days ago as the loader left it while it was hot."""
    today = datetime.now(tz=UTC).date()
    cooled = today - timedelta(days=3)
    schema.ensure_partitions(conn, [today, cooled])
    conn.execute(
        f"drop index raw.{schema.route_index_name(schema.partition_name(cooled), TRIGRAMS)}"
    )
    return today, cooled


def test_maintain_builds_the_trigram_index_once_a_day_has_cooled(
    raw_db: psycopg.Connection,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    today, cooled = cooled_without_its_index(raw_db)
    raw_db.execute(
        "insert into raw.events (event_id, anonymous_id, occurred_at, received_at, type, "
        "hierarchy) values (gen_random_uuid(), 'a', %s, %s, 'click', 'html;body;button.buy')",
        (datetime(cooled.year, cooled.month, cooled.day, 12, tzinfo=UTC),) * 2,
    )

    schema.bootstrap(raw_db)  # leaves it to maintain: a build there would hold up the loader
    assert TRIGRAMS not in indexes_of(raw_db, cooled)

    monkeypatch.setenv("RETROLYTICS_DATABASE_URL", settings.database_url)
    assert cli.main(["maintain"]) == 0
    cooled_partition = f"raw.{schema.partition_name(cooled)}"
    assert capsys.readouterr().out.strip() == (
        f"built the GIN route indexes of 1 partitions: {cooled_partition}"
    )
    assert TRIGRAMS in indexes_of(raw_db, cooled)
    assert TRIGRAMS not in indexes_of(raw_db, today)
    raw_db.execute("set enable_seqscan = off")
    plan = "\n".join(
        line
        for (line,) in raw_db.execute(
            f"explain select count(*) from {cooled_partition} where hierarchy like '%button.buy%'"
        )
    )
    assert schema.route_index_name(schema.partition_name(cooled), TRIGRAMS) in plan
    found = raw_db.execute(
        f"select count(*) from {cooled_partition} where hierarchy like '%button.buy%'"
    ).fetchone()
    assert found == (1,)

    assert cli.main(["maintain"]) == 0
    assert "already has its GIN route indexes" in capsys.readouterr().out


def test_the_dagster_maintenance_job_builds_it_too(
    raw_db: psycopg.Connection, settings: Settings
) -> None:
    from orchestration.jobs import maintain_raw_events
    from orchestration.resources import RetrolyticsResource

    today, cooled = cooled_without_its_index(raw_db)
    resource = RetrolyticsResource(database_url=settings.database_url)
    result = maintain_raw_events.execute_in_process(resources={"retrolytics": resource})

    assert result.success
    assert TRIGRAMS in indexes_of(raw_db, cooled)
    assert TRIGRAMS not in indexes_of(raw_db, today)
