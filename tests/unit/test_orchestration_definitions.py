"""The Dagster code location loads and has the shape the design asks for.

No warehouse needed here: the asset graph, partitions, schedules and the declarations sensor are
checked on the prepared dbt manifest, and ``dagster definitions validate`` runs as users run it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from tests.support.paths import REPO

DBT_TEST_PREFIXES = ("not_null", "unique", "accepted_values", "relationships")


@pytest.fixture(scope="module")
def defs(prepared_dbt_project: Path) -> dg.Definitions:
    from orchestration.definitions import defs

    return defs


@pytest.fixture(scope="module")
def manifest(defs: dg.Definitions) -> dict:
    from orchestration.project import dbt_project

    return json.loads(dbt_project.manifest_path.read_text())


def _graph(defs: dg.Definitions):  # -> an asset graph
    return defs.resolve_asset_graph()


def test_dagster_definitions_validate_passes(defs: dg.Definitions, tmp_path: Path) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Validation successful for code location orchestration" in output


def test_every_dbt_model_and_seed_is_an_asset_with_its_relation_as_key(
    defs: dg.Definitions, manifest: dict
) -> None:
    graph = _graph(defs)
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    for node in manifest["nodes"].values():
        if node["resource_type"] in ("model", "seed"):
            schema = node["config"].get("schema") or node["schema"]
            assert f"{schema}/{node['alias']}" in keys, node["unique_id"]
    assert {"raw/events", "staging/stg_events", "marts/defined_events"} <= keys
    assert graph.get(dg.AssetKey(["staging", "stg_events"])).group_name == "staging"
    assert graph.get(dg.AssetKey(["staging", "event_definitions"])).group_name == "definitions"
    assert graph.get(dg.AssetKey(["raw", "events"])).group_name == "raw"


def test_stg_events_reads_the_raw_events_asset(defs: dg.Definitions) -> None:
    graph = _graph(defs)
    parents = graph.get(dg.AssetKey(["staging", "stg_events"])).parent_keys
    assert dg.AssetKey(["raw", "events"]) in parents
    assert not graph.get(dg.AssetKey(["raw", "events"])).is_materializable


def test_windowed_models_are_daily_partitioned_with_a_single_run_backfill(
    defs: dg.Definitions, manifest: dict
) -> None:
    from orchestration.partitions import daily_partitions

    graph = _graph(defs)
    windowed = [
        node
        for node in manifest["nodes"].values()
        if node["config"].get("materialized") == "distributed_incremental"
    ]
    assert any(node["name"] == "defined_events" for node in windowed)
    for node in windowed:
        asset = graph.get(dg.AssetKey([node["config"]["schema"], node["alias"]]))
        assert asset.partitions_def == daily_partitions, node["name"]
        assert asset.backfill_policy == dg.BackfillPolicy.single_run(), node["name"]
    for current in (["staging", "stg_events"], ["staging", "event_definitions"]):
        assert graph.get(dg.AssetKey(current)).partitions_def is None


def test_sessions_and_persons_are_daily_partitioned_assets_in_their_folders_groups(
    defs: dg.Definitions,
) -> None:
    from orchestration.partitions import daily_partitions

    graph = _graph(defs)
    windowed = {
        ("intermediate", "int_sessions_plan"): "intermediate",
        ("marts", "fct_sessions"): "marts",
        ("marts", "mart_sessions_daily"): "marts",
        ("marts", "dim_persons"): "marts",
        ("marts", "dim_person_traits"): "marts",
        ("marts", "dim_devices"): "marts",
    }
    for key, group in windowed.items():
        asset = graph.get(dg.AssetKey(list(key)))
        assert asset.group_name == group, key
        assert asset.partitions_def == daily_partitions, key
    plan = dg.AssetKey(["intermediate", "int_sessions_plan"])
    assert plan in graph.get(dg.AssetKey(["marts", "fct_sessions"])).parent_keys
    for current in (["staging", "stg_user_agents"], ["intermediate", "int_session_events"]):
        assert graph.get(dg.AssetKey(current)).partitions_def is None, current
    assert (
        dg.AssetKey(["raw", "user_agents"])
        in graph.get(dg.AssetKey(["staging", "stg_user_agents"])).parent_keys
    )


def test_dbt_tests_are_asset_checks_next_to_the_freshness_check(
    defs: dg.Definitions, manifest: dict
) -> None:
    graph = _graph(defs)
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    tests = [n for n in manifest["nodes"].values() if n["resource_type"] == "test"]
    # A test belongs to one asset when it is generic (attached to a model or column), reads one
    # model, or names its model in `meta: {dagster: {ref: ...}}`; such tests become checks.
    attached = [
        test
        for test in tests
        if test.get("attached_node")
        or len(test["depends_on"]["nodes"]) == 1
        or test["config"].get("meta", {}).get("dagster", {}).get("ref")
    ]
    assert len(attached) > 20
    for test in attached:
        assert any(name == test["name"] for _, name in checks), test["unique_id"]
    assert ("raw/events", "raw_events_fresh") in checks
    # dbt's tests of the raw.events source are checks of the raw events asset too
    assert any(asset == "raw/events" and name.startswith("source_") for asset, name in checks)


def test_every_declared_funnel_is_an_asset_downstream_of_the_mart(defs: dg.Definitions) -> None:
    from orchestration.assets.funnels import declared_funnels
    from orchestration.partitions import daily_partitions

    graph = _graph(defs)
    funnels = declared_funnels()
    assert len(funnels) >= 3
    for funnel in funnels:
        asset = graph.get(dg.AssetKey(["funnels", funnel.name]))
        assert asset.group_name == "funnels"
        assert dg.AssetKey(["marts", "mart_funnel_conversion"]) in asset.parent_keys
        assert asset.partitions_def == daily_partitions
        assert asset.owners == [f"team:{funnel.owner}"]
        assert asset.metadata["steps"] == [step.event.label for step in funnel.steps]
        assert funnel.name in asset.metadata["query"]


def test_jobs_schedules_and_sensor_are_registered(defs: dg.Definitions) -> None:
    assert {"derive", "load_raw_events", "check_raw_events", "maintain_raw_events"} <= {
        job.name for job in defs.resolve_all_job_defs()
    }
    schedules = {s.name: s for s in defs.schedules}
    assert schedules["derive_today_hourly"].cron_schedule == "5 * * * *"
    assert schedules["finalise_yesterday_daily"].cron_schedule == "0 2 * * *"
    assert schedules["drain_topic_every_5_minutes"].job_name == "load_raw_events"
    assert schedules["maintain_raw_events_daily"].job_name == "maintain_raw_events"
    assert schedules["maintain_raw_events_daily"].cron_schedule == "0 1 * * *"
    assert [s.name for s in defs.sensors] == ["declarations_changed"]


def test_schedules_pick_today_and_yesterday(defs: dg.Definitions) -> None:
    from orchestration.schedules import derive_today_hourly, finalise_yesterday_daily

    moment = datetime(2026, 3, 1, 0, 5, tzinfo=UTC)
    context = dg.build_schedule_context(scheduled_execution_time=moment)
    assert derive_today_hourly(context).partition_key == "2026-03-01"
    assert finalise_yesterday_daily(context).partition_key == "2026-02-28"


def test_partition_window_becomes_the_dbt_window_environment(defs: dg.Definitions) -> None:
    from orchestration.partitions import daily_partitions, dbt_window
    from retrolytics.warehouse.runner import window_environment

    window = daily_partitions.time_window_for_partition_key("2026-11-20")
    assert dbt_window(window, 6) == {
        "start": "2026-11-20 00:00:00+00:00",
        "end": "2026-11-21 00:00:00+00:00",
        "lookback_hours": 6,
    }
    assert window_environment(dbt_window(window, None)) == {
        "RETROLYTICS_WINDOW_START": "2026-11-20 00:00:00+00:00",
        "RETROLYTICS_WINDOW_END": "2026-11-21 00:00:00+00:00",
        "RETROLYTICS_WINDOW_LOOKBACK_HOURS": None,  # unset: the model's default
    }
    with pytest.raises(ValueError, match="lookback_hours"):
        dbt_window(window, -1)
    with pytest.raises(ValueError, match="not since"):
        window_environment({"since": "2026-11-20"})


def test_a_bad_history_start_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.partitions import HISTORY_START_ENV, history_start

    monkeypatch.setenv(HISTORY_START_ENV, "last tuesday")
    with pytest.raises(ValueError, match=f"{HISTORY_START_ENV}='last tuesday' is not a date"):
        history_start()


def test_a_missing_manifest_says_how_to_prepare_it(defs: dg.Definitions, tmp_path: Path) -> None:
    from orchestration.project import require_manifest

    with pytest.raises(FileNotFoundError, match="dagster-dbt project prepare-and-package"):
        require_manifest(tmp_path / "manifest.json")


# -- the declarations sensor -----------------------------------------------------------------


def _tick(sensor: dg.SensorDefinition, cursor: str | None, instance: dg.DagsterInstance):
    from orchestration.definitions import defs

    context = dg.build_sensor_context(cursor=cursor, definitions=defs, instance=instance)
    return sensor.evaluate_tick(context)


@pytest.fixture
def built_instance(defs: dg.Definitions):  # -> DagsterInstance
    """An instance that has materialized every asset once, as after the first scheduled run."""
    with dg.instance_for_test() as instance:
        for key in _graph(defs).materializable_asset_keys:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))
        yield instance


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def definitions_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "definitions"
    shutil.copytree(REPO / "definitions", copy)
    return copy


def test_sensor_records_first_then_launches_only_for_real_changes(
    defs: dg.Definitions, definitions_copy: Path, built_instance: dg.DagsterInstance
) -> None:
    from orchestration.sensors import build_declaration_sensor

    sensor = build_declaration_sensor(definitions_copy, name="declarations_changed_test")
    first = _tick(sensor, None, built_instance)
    assert not first.run_requests
    assert first.cursor
    assert not _tick(sensor, first.cursor, built_instance).run_requests

    # A new description or owner matches the same events: nothing to re-derive.
    checkout = definitions_copy / "events" / "cart_checkout.yml"
    _edit(checkout, "A click on the checkout button of the cart.", "The cart's checkout button.")
    reworded = _tick(sensor, first.cursor, built_instance)
    assert not reworded.run_requests

    _edit(checkout, "selector: form#cart button.checkout", "selector: form#cart .checkout")
    changed = _tick(sensor, reworded.cursor, built_instance)
    assert len(changed.run_requests) == 1
    request = changed.run_requests[0]
    selected = {key.to_user_string() for key in request.asset_selection}
    assert {"staging/event_definitions", "marts/defined_events"} <= selected
    assert "staging/stg_events" not in selected  # upstream of the change: untouched
    assert not any(key.startswith("funnels/") for key in selected)  # no funnel reads it
    assert request.partition_key == datetime.now(tz=UTC).strftime("%Y-%m-%d")
    assert "clicked_checkout" in request.tags["retrolytics/changed"]
    assert not _tick(sensor, changed.cursor, built_instance).run_requests

    # A definition three funnels read: those funnels' assets join, the others stay out.
    _edit(checkout, 'selector: "#add-to-cart"', 'selector: "button#add-to-cart"')
    added = _tick(sensor, changed.cursor, built_instance)
    [request] = added.run_requests
    funnels = {k.path[-1] for k in request.asset_selection if k.path[0] == "funnels"}
    assert funnels == {"browse_to_purchase", "search_to_cart", "visit_to_cart"}

    # A funnel edit: its seeds, the facts, the mart and its own asset; no event definitions.
    signup = definitions_copy / "funnels" / "signup.yml"
    _edit(signup, "conversion_window: 1d", "conversion_window: 2d")
    [request] = _tick(sensor, added.cursor, built_instance).run_requests
    selected = {key.to_user_string() for key in request.asset_selection}
    assert {
        "staging/funnels",
        "marts/fct_funnel_entries",
        "marts/mart_funnel_conversion",
        "funnels/signup",
    } <= selected
    assert not selected & {"staging/event_definitions", "marts/defined_events"}
    assert not any(k.startswith("funnels/") and k != "funnels/signup" for k in selected)
    assert "signup" in request.tags["retrolytics/changed"]

    # On a fresh deployment the staging views the change reads are built in the same run.
    with dg.instance_for_test() as fresh:
        [first_run] = _tick(sensor, reworded.cursor, fresh).run_requests
    assert "staging/stg_events" in {key.to_user_string() for key in first_run.asset_selection}


def test_sensor_launches_nothing_for_invalid_declarations(
    defs: dg.Definitions, definitions_copy: Path, built_instance: dg.DagsterInstance
) -> None:
    from orchestration.sensors import build_declaration_sensor

    sensor = build_declaration_sensor(definitions_copy, name="declarations_changed_test")
    cursor = _tick(sensor, None, built_instance).cursor
    checkout = definitions_copy / "events" / "cart_checkout.yml"
    _edit(checkout, "selector: form#cart button.checkout", "selector: form#cart button:hover")
    broken = _tick(sensor, cursor, built_instance)
    assert not broken.run_requests
    assert "cart_checkout.yml:" in broken.skip_message
    assert broken.cursor in (None, cursor)  # the last good state stays the baseline


def test_every_declared_retention_is_an_asset_downstream_of_its_mart(
    defs: dg.Definitions,
) -> None:
    from orchestration.assets.retention import declared_retentions
    from orchestration.partitions import daily_partitions

    graph = _graph(defs)
    retentions = declared_retentions()
    assert {r.name for r in retentions} >= {"repeat_purchase", "signup_activity"}
    for retention in retentions:
        asset = graph.get(dg.AssetKey(["retention", retention.name]))
        assert asset.group_name == "retention"
        assert dg.AssetKey(["marts", "mart_retention"]) in asset.parent_keys
        assert asset.partitions_def == daily_partitions
        assert asset.metadata["period"] == retention.period
        assert asset.metadata["declared_in"].endswith(f".yml:{retention.line}")
    mart = graph.get(dg.AssetKey(["marts", "mart_retention"]))
    assert mart.partitions_def == daily_partitions  # downstream of the windowed models


def test_sensor_rederives_only_the_edited_retention(
    defs: dg.Definitions, definitions_copy: Path, built_instance: dg.DagsterInstance
) -> None:
    from orchestration.sensors import build_declaration_sensor

    sensor = build_declaration_sensor(definitions_copy, name="declarations_changed_test")
    cursor = _tick(sensor, None, built_instance).cursor
    _edit(definitions_copy / "retention" / "signup_activity.yml", "periods: 7", "periods: 14")
    [request] = _tick(sensor, cursor, built_instance).run_requests
    selected = {key.to_user_string() for key in request.asset_selection}
    assert {"staging/retentions", "marts/mart_retention", "retention/signup_activity"} <= selected
    assert not selected & {"retention/repeat_purchase", "marts/defined_events"}
    assert not any(key.startswith("funnels/") for key in selected)
    assert "retention signup_activity" in request.tags["retrolytics/changed"]


def test_a_retention_report_counts_cohorts_and_shows_unknown_periods_blank() -> None:
    from orchestration.assets.retention import _report

    monday, tuesday = datetime(2026, 11, 2), datetime(2026, 11, 3)
    rows = [
        (monday, 0, 4, 4, 1.0),
        (monday, 1, 4, 1, 0.25),
        (tuesday, 0, 2, 2, 1.0),
        (tuesday, 1, 2, None, None),
    ]
    result = _report("signup_activity", rows)
    assert result.asset_key == dg.AssetKey(["retention", "signup_activity"])
    assert (result.metadata["cohorts"], result.metadata["units"]) == (2, 6)
    table = result.metadata["retention_table"].value
    assert "| 2026-11-02 00:00 | 1 | 4 | 1 | 25.0% |" in table
    assert "| 2026-11-03 00:00 | 1 | 2 |  |  |" in table
