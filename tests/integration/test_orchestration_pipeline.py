"""The whole asset graph in-process, against the real PostgreSQL with events from the real Kafka.

Each test gets a fresh database and topic (``settings``), fills the topic with generated shop
traffic, drains it with the ``load_raw_events`` job and derives partitions with the ``derive``
job, the way the schedules and the UI do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from demo import traffic
from ingestion.settings import Settings
from retrolytics.warehouse.runner import WAITING_MESSAGE, WAREHOUSE_LOCK_KEY
from tests.support.dagster import DEFINED_EVENTS, defined_events_and_inputs
from tests.support.factories import click_event, encode, iso, produce
from tests.support.paths import REPO

pytestmark = pytest.mark.integration

TODAY = datetime.now(tz=UTC).date()
YESTERDAY = TODAY - timedelta(days=1)


@pytest.fixture
def defs(prepared_dbt_project: Path, settings: Settings) -> dg.Definitions:
    """The code location, its settings pointed at this test's database and topic."""
    from orchestration.definitions import build_definitions
    from orchestration.resources import RetrolyticsResource

    return build_definitions(
        RetrolyticsResource(
            database_url=settings.database_url,
            kafka_bootstrap=settings.kafka_bootstrap,
            topic=settings.topic,
            consumer_group=settings.consumer_group,
        )
    )


def _scalar(settings: Settings, query: str, *params: object) -> object:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute(query, params).fetchone()[0]


def _load(defs: dg.Definitions) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def("load_raw_events").execute_in_process()
    assert result.success
    return result


def _derive(defs: dg.Definitions, **kwargs: object) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("derive").execute_in_process(**kwargs)


def _derive_defined_events(defs: dg.Definitions, **kwargs: object) -> dg.ExecuteInProcessResult:
    """The partitioned path alone; the whole graph runs in the first test and the sensor's."""
    return _derive(defs, asset_selection=defined_events_and_inputs(defs), **kwargs)


def _defined_events_rows(settings: Settings) -> set[tuple]:
    """Every row of defined_events: (definition, device, event id, time)."""
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "select definition_name, anonymous_id, event_id::text, occurred_at "
            "from marts.defined_events"
        ).fetchall()
    assert len(rows) == len(set(rows))
    return set(rows)


def _facts_of_day(settings: Settings, funnel: str, day: date) -> tuple[int, int]:
    """Attempts entered that day that were not excluded, and those that converted."""
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute(
            "select count(*) filter (where outcome <> 'excluded'), "
            "count(*) filter (where outcome = 'converted') "
            "from marts.fct_funnel_entries where funnel_name = %s and entry_day = %s",
            (funnel, day),
        ).fetchone()


def _partition_of(day: date) -> str:
    return day.isoformat()


def test_a_partition_of_the_whole_graph_then_late_events_and_a_backfill(
    defs: dg.Definitions, settings: Settings
) -> None:
    traffic.produce(settings, events=1500, days=3, seed=11)
    load = _load(defs)
    loaded = _scalar(settings, "select count(*) from raw.events")
    assert loaded > 1400  # the generator sends a few duplicates, stored once
    [materialization] = load.asset_materializations_for_node("drain_topic_into_raw_events")
    assert materialization.asset_key == dg.AssetKey(["raw", "events"])
    assert materialization.metadata["loaded"].value == loaded

    run = _derive(defs, partition_key=_partition_of(YESTERDAY))
    assert run.success
    # dbt's per-invocation target folders are gone after a successful run.
    leftovers = [
        *(REPO / "dbt_project" / "target").glob(f"*{run.run_id[:7]}*"),
        *Path(tempfile.gettempdir()).glob(f"retrolytics-dbt-{run.run_id[:8]}-*"),
    ]
    assert not leftovers
    materialized = {
        event.asset_key.to_user_string(): event.partition
        for event in run.get_asset_materialization_events()
    }
    assert materialized["marts/defined_events"] == _partition_of(YESTERDAY)
    assert materialized["staging/stg_events"] is None  # current state, not partitioned
    assert "staging/event_definitions" in materialized

    evaluations = run.get_asset_check_evaluations()
    assert len(evaluations) > 20
    failed = [e.check_name for e in evaluations if not e.passed]
    assert not failed
    assert {e.asset_key.to_user_string() for e in evaluations} >= {
        "raw/events",
        "staging/stg_events",
        "marts/defined_events",
    }

    # The first run derives all history; purchases are custom events the shop names exactly.
    purchases = _scalar(
        settings,
        "select count(*) from raw.events where type = 'custom' and name = 'purchase_completed'",
    )
    derived = _scalar(
        settings,
        "select count(*) from marts.defined_events where definition_name = 'completed_purchase'",
    )
    assert purchases > 0
    assert derived == purchases
    definitions = "select count(distinct definition_name) from marts.defined_events"
    assert _scalar(settings, definitions) > 10

    # One asset per funnel, reporting that day's attempts as the facts table counts them.
    funnel_reports = {
        event.asset_key.path[-1]: event.event_specific_data.materialization.metadata
        for event in run.get_asset_materialization_events()
        if event.asset_key.path[0] == "funnels"
    }
    assert {"browse_to_purchase", "signup", "search_to_cart"} <= funnel_reports.keys()
    for name, metadata in funnel_reports.items():
        attempts, conversions = _facts_of_day(settings, name, YESTERDAY)
        assert metadata["attempts"].value == attempts, name
        assert metadata["conversions"].value == conversions, name
    assert sum(m["attempts"].value for m in funnel_reports.values()) > 0
    assert _scalar(settings, "select count(*) from marts.mart_funnel_conversion") > 0

    # A checkout click from the evening before the backfill's first day arrives only now. A
    # backfill of three days already derived is one dbt invocation over the range; looking back a
    # day (WindowConfig.lookback_hours) it picks up the late click, and changes nothing else.
    before = _defined_events_rows(settings)
    start, end = _partition_of(TODAY - timedelta(days=2)), _partition_of(TODAY)
    evening_before = datetime.combine(TODAY - timedelta(days=3), datetime.min.time(), tzinfo=UTC)
    late = click_event(
        occurred_at=iso(evening_before + timedelta(hours=22)),
        received_at=iso(datetime.now(tz=UTC)),
    )
    produce(settings.kafka_bootstrap, settings.topic, [encode(late)])
    _load(defs)
    instance = dg.DagsterInstance.ephemeral()
    backfill = _derive_defined_events(
        defs,
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
    )
    assert backfill.success
    logs = [entry.user_message for entry in instance.all_logs(backfill.run_id)]
    windows = [message for message in logs if "dbt window:" in message]
    assert len(windows) == 1
    assert f"'start': '{start} 00:00:00+00:00'" in windows[0]
    assert f"'end': '{_partition_of(TODAY + timedelta(days=1))} 00:00:00+00:00'" in windows[0]
    partitions = {
        event.partition
        for event in backfill.get_asset_materialization_events()
        if event.asset_key == DEFINED_EVENTS
    }
    assert partitions == {_partition_of(TODAY - timedelta(days=n)) for n in range(3)}
    after = _defined_events_rows(settings)
    assert before <= after
    added = after - before
    assert {event_id for _, _, event_id, _ in added} == {late["event_id"]}
    assert "clicked_checkout" in {definition for definition, _, _, _ in added}


def _waiting_for_the_warehouse(settings: Settings) -> int:
    return _scalar(
        settings,
        "select count(*) from pg_locks where locktype = 'advisory' and not granted "
        "and database = (select oid from pg_database where datname = current_database()) "
        "and ((classid::bigint << 32) | objid::bigint) = %s",
        WAREHOUSE_LOCK_KEY,
    )


def test_concurrent_partition_runs_take_turns(
    defs: dg.Definitions, settings: Settings, dagster_home: Path
) -> None:
    traffic.produce(settings, events=1200, days=3, seed=14)
    _load(defs)

    # Two partition runs launched together, each its own process as in a deployment, while a
    # third dbt run (played by this test) holds the warehouse.
    dagster = Path(sys.executable).with_name("dagster")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "RETROLYTICS_DATABASE_URL": settings.database_url,
        "RETROLYTICS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "RETROLYTICS_TOPIC": settings.topic,
    }
    # Output goes to files: a pipe nobody reads while the runs wait could fill and block them.
    logs = [dagster_home.parent / f"run_{i}.log" for i in range(2)]
    days = (YESTERDAY, TODAY - timedelta(days=2))
    runs: list[subprocess.Popen] = []
    try:
        with psycopg.connect(settings.database_url, autocommit=True) as holder:
            holder.execute("select pg_advisory_lock(%s)", (WAREHOUSE_LOCK_KEY,))
            for day, log in zip(days, logs, strict=True):
                with log.open("w") as out:
                    command = [
                        str(dagster),
                        *("asset", "materialize", "-m", "orchestration.definitions"),
                        # defined_events and what it reads: enough to need the warehouse,
                        # in less time than the whole graph.
                        *("--select", "*marts/defined_events"),
                        *("--partition", _partition_of(day)),
                    ]
                    runs.append(
                        subprocess.Popen(
                            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
                        )
                    )
            deadline = time.monotonic() + 240
            while _waiting_for_the_warehouse(settings) < 2:
                for run, log in zip(runs, logs, strict=True):
                    if run.poll() is not None:
                        tail = log.read_text()[-4000:]
                        pytest.fail(f"a run ended before it queued:\n{tail}")
                assert time.monotonic() < deadline, "the runs did not queue for the warehouse"
                time.sleep(0.5)
            holder.execute("select pg_advisory_unlock(%s)", (WAREHOUSE_LOCK_KEY,))
        for run in runs:
            run.wait(timeout=400)
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    for run, log in zip(runs, logs, strict=True):
        output = log.read_text()
        assert run.returncode == 0, output[-4000:]
        assert WAITING_MESSAGE in output
    # One after the other: the first derived all history and the second redid its window. That
    # such a rerun changes nothing is the first test's to show.
    assert _scalar(settings, "select count(*) from marts.defined_events") > 0


def test_freshness_check_fails_on_stale_events_and_passes_on_recent_ones(
    defs: dg.Definitions, settings: Settings
) -> None:
    job = defs.resolve_job_def("check_raw_events")

    def evaluate(max_age_minutes: int) -> dg.AssetCheckEvaluation:
        op_name = "raw__events_raw_events_fresh"  # the check's op: asset key + check name
        config = {"ops": {op_name: {"config": {"max_age_minutes": max_age_minutes}}}}
        result = job.execute_in_process(run_config=config)
        [evaluation] = result.get_asset_check_evaluations()
        return evaluation

    empty = evaluate(60)
    assert not empty.passed  # no raw.events at all yet

    three_hours_ago = datetime.now(tz=UTC) - timedelta(hours=3)
    produce(
        settings.kafka_bootstrap,
        settings.topic,
        [
            encode(click_event(occurred_at=iso(three_hours_ago), received_at=iso(three_hours_ago)))
            for _ in range(3)
        ],
    )
    _load(defs)
    stale = evaluate(60)
    assert not stale.passed
    assert stale.metadata["age_minutes"].value >= 180
    fresh = evaluate(240)
    assert fresh.passed
    assert fresh.metadata["events_received_last_hour"].value == 0


def test_the_sensor_run_request_runs(defs: dg.Definitions, settings: Settings, tmp_path) -> None:
    """What the declarations sensor asks for is a valid run: seed and everything downstream."""
    import shutil

    from orchestration.sensors import build_declaration_sensor

    traffic.produce(settings, events=400, days=1, seed=15)
    _load(defs)
    copy = tmp_path / "definitions"
    shutil.copytree(REPO / "definitions", copy)
    sensor = build_declaration_sensor(copy, name="declarations_changed_test")
    instance = dg.DagsterInstance.ephemeral()  # nothing materialized yet: a fresh deployment
    context = dg.build_sensor_context(definitions=defs, instance=instance)
    cursor = sensor.evaluate_tick(context).cursor
    checkout = copy / "events" / "cart_checkout.yml"
    checkout.write_text(checkout.read_text().replace("button.checkout", ".checkout"))
    context = dg.build_sensor_context(cursor=cursor, definitions=defs, instance=instance)
    [request] = sensor.evaluate_tick(context).run_requests
    run = _derive(
        defs,
        instance=instance,
        partition_key=request.partition_key,
        asset_selection=list(request.asset_selection),
        tags=request.tags,
    )
    assert run.success
    materialized = {e.asset_key for e in run.get_asset_materialization_events()}
    assert materialized == set(request.asset_selection)
    assert dg.AssetKey(["marts", "defined_events"]) in materialized
