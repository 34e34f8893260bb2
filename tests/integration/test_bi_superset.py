"""`retrolytics bi up` end to end: a real Apache Superset (installed into its own environment
under the state folder) on a small derived warehouse, read in Debian's Chromium.

One Superset start for the module: `bi up` runs twice (the second only re-provisions), the
browser logs in once, and `bi down` stops it at the end.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ingestion.stack.ports import pick_free_ports
from retrolytics.bi import bundle, metadata
from retrolytics.bi.superset import METADATA_DATABASE, SupersetPaths
from retrolytics.warehouse import runner
from tests.support.funnels import shipped_shop
from tests.support.paths import REPO

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
CHART_DEADLINE_MS = 300_000  # a busy machine: the dashboard's first queries wait for a worker


@dataclass(frozen=True)
class Warehouse:
    owner_url: str  # the owner's login, this module's database
    bi_url: str  # the stack's BI login (bi_reader), this module's database


@dataclass(frozen=True)
class Superset:
    url: str
    dashboard_url: str
    password: str
    objects_first: dict[str, list[tuple]]  # what the first `bi up` left in the metadata
    objects_second: dict[str, list[tuple]]  # and the second


@pytest.fixture(scope="module")
def warehouse(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """Four days of shop traffic, derived with the shipped declarations; the BI group's grants."""
    folder = tmp_path_factory.mktemp("bi")
    with shipped_shop(stack.database_url, folder, events=3000, seed=5) as (url, project, _):
        runner.run_dbt(["run-operation", "create_bi_role"], database_url=url, project_dir=project)
        database = conninfo_to_dict(url)["dbname"]
        yield Warehouse(url, make_conninfo(stack.bi_database_url, dbname=database))


def retrolytics_bi(
    action: str, warehouse: Warehouse, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The command as a user runs it, with the module's database as the BI connection."""
    env = {**os.environ, "RETROLYTICS_BI_DATABASE_URL": warehouse.bi_url, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "retrolytics.cli", "bi", action, *options],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1500,
    )


def superset_objects(stack) -> dict[str, list[tuple]]:
    """The objects `bi up` provisions, found in Superset's metadata database by their names
    (a copy would have a new id and uuid, and the same name), with their ids."""
    named = {
        "database": bundle.DATABASE_NAME,
        "charts": expected_charts(),
        "marts": list(metadata.MARTS),
        "slug": bundle.DASHBOARD_SLUG,
    }
    ours = "(select id from dashboards where slug = %(slug)s)"
    queries = {
        "databases": "select id, database_name from dbs where database_name = %(database)s",
        "datasets": "select id, table_name from tables where table_name = any(%(marts)s) and "
        "database_id in (select id from dbs where database_name = %(database)s)",
        "charts": "select id, slice_name from slices where slice_name = any(%(charts)s)",
        "dashboards": "select id, slug from dashboards where slug = %(slug)s",
        "dashboard_charts": f"select slice_id from dashboard_slices where dashboard_id in {ours}",
    }
    url = psycopg.conninfo.make_conninfo(stack.database_url, dbname=METADATA_DATABASE)
    with psycopg.connect(url) as conn:
        return {
            kind: conn.execute(query + " order by 1", named).fetchall()
            for kind, query in queries.items()
        }


@pytest.fixture(scope="module")
def superset(stack, warehouse: Warehouse) -> Iterator[Superset]:
    first = retrolytics_bi("up", warehouse)
    try:
        assert first.returncode == 0, first.stderr
        objects_first = superset_objects(stack)
        second = retrolytics_bi("up", warehouse)
        assert second.returncode == 0, second.stderr
        url = re.search(r"^Superset: (\S+)$", second.stdout, re.M).group(1)
        dashboard_url = re.search(r"^dashboard: (\S+)$", second.stdout, re.M).group(1)
        password = SupersetPaths.current().admin_password.read_text().strip()
        yield Superset(url, dashboard_url, password, objects_first, superset_objects(stack))
    finally:
        down = retrolytics_bi("down", warehouse)
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def logged_in(superset: Superset) -> Iterator:
    """A Chromium page logged in to Superset through its login form."""
    if not CHROMIUM.exists():
        pytest.fail(f"Debian's Chromium is missing at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = chromium.new_page(viewport={"width": 1600, "height": 1200})
        page.goto(f"{superset.url}/login/")
        page.locator("input#username").fill("admin")
        page.locator("input#password").fill(superset.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r".*/superset/welcome/.*"), timeout=120_000)
        yield page
        chromium.close()


def expected_charts() -> list[str]:
    described = metadata.read(REPO / "definitions", REPO / "dbt_project")
    return sorted(chart.title for chart in bundle.layout(described).charts)


def test_the_big_number_on_the_dashboard_equals_the_mart(
    superset: Superset, logged_in, warehouse: Warehouse
) -> None:
    page = logged_in
    page.goto(superset.dashboard_url)
    holder = page.locator(".dashboard-component-chart-holder", has_text=bundle.BIG_NUMBER_TITLE)
    number = holder.locator(".header-line")
    number.wait_for(timeout=CHART_DEADLINE_MS)
    shown = int(number.inner_text().replace(",", "").strip())
    with psycopg.connect(warehouse.owner_url) as conn:
        sessions = conn.execute("select sum(sessions) from marts.mart_sessions_daily").fetchone()[0]
    assert sessions > 0
    assert shown == sessions
    # Every chart drew something (a canvas, a table, the number), not an error message. The
    # dashboard draws charts as they scroll into view.
    holders = page.locator(".dashboard-component-chart-holder")
    assert holders.count() == len(expected_charts())
    for index in range(holders.count()):
        holder = holders.nth(index)
        holder.scroll_into_view_if_needed()
        drawn = holder.locator("canvas, table, .header-line").first
        drawn.wait_for(timeout=CHART_DEADLINE_MS)
    page.evaluate("window.scrollTo(0, 0)")
    screenshot = SupersetPaths.current().root / "dashboard.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"dashboard screenshot: {screenshot}")


def run_sql(page, superset: Superset, query: str) -> tuple[int, dict]:
    """SQL Lab's own endpoint, in the browser's logged-in session with its CSRF token."""
    api = page.request
    databases = api.get(f"{superset.url}/api/v1/database/").json()["result"]
    [database_id] = [db["id"] for db in databases if db["database_name"] == bundle.DATABASE_NAME]
    csrf = api.get(f"{superset.url}/api/v1/security/csrf_token/").json()["result"]
    body = {
        "database_id": database_id,
        "sql": query,
        "schema": bundle.SCHEMA,
        "runAsync": False,
        "client_id": secrets.token_hex(5),
        "queryLimit": 10,
    }
    headers = {"X-CSRFToken": csrf, "Referer": superset.url, "Content-Type": "application/json"}
    response = api.post(
        f"{superset.url}/api/v1/sqllab/execute/", data=json.dumps(body), headers=headers
    )
    return response.status, response.json()


def test_the_bi_connection_reads_the_marts_and_nothing_else(
    superset: Superset, logged_in, warehouse: Warehouse
) -> None:
    status, answer = run_sql(
        logged_in, superset, "select count(*) as n from marts.mart_funnel_conversion"
    )
    assert status == 200, answer
    with psycopg.connect(warehouse.owner_url) as conn:
        rows = conn.execute("select count(*) from marts.mart_funnel_conversion").fetchone()[0]
    assert answer["data"] == [{"n": rows}] and rows > 0
    for schema_name, table in (
        ("raw", "events"),
        ("staging", "stg_events"),
        ("intermediate", "int_device_persons"),
    ):
        status, answer = run_sql(logged_in, superset, f"select 1 from {schema_name}.{table}")
        message = " ".join(error["message"] for error in answer.get("errors", []))
        assert status != 200 and f"permission denied for schema {schema_name}" in message, answer


def test_bi_up_again_overwrites_the_same_objects(superset: Superset) -> None:
    first, second = superset.objects_first, superset.objects_second
    assert first == second  # the same ids: overwritten, not added
    assert sorted(name for _id, name in second["charts"]) == expected_charts()
    assert [name for _id, name in second["databases"]] == [bundle.DATABASE_NAME]
    assert sorted(table for _id, table in second["datasets"]) == sorted(metadata.MARTS)
    assert [slug for _id, slug in second["dashboards"]] == [bundle.DASHBOARD_SLUG]
    on_dashboard = sorted(chart_id for (chart_id,) in second["dashboard_charts"])
    assert on_dashboard == sorted(chart_id for chart_id, _name in second["charts"])


def test_bad_input_gets_a_message_not_a_traceback(
    superset: Superset, warehouse: Warehouse, stack, tmp_path: Path
) -> None:
    running = int(superset.url.rsplit(":", 1)[1])
    moved = retrolytics_bi("up", warehouse, "--port", str(running + 1))
    assert moved.returncode == 1 and "`retrolytics bi down` first" in moved.stderr
    unknown = retrolytics_bi("up", warehouse, "--colour")
    assert unknown.returncode == 2 and "unrecognized arguments: --colour" in unknown.stderr
    # Another state folder (no Superset of its own yet): a port another program holds ...
    apart = {"RETROLYTICS_STATE_DIR": str(tmp_path), "RETROLYTICS_DATABASE_URL": stack.database_url}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        busy = retrolytics_bi("up", warehouse, "--port", str(taken), env=apart)
    assert busy.returncode == 1 and f"port {taken} on 127.0.0.1 is taken" in busy.stderr
    # ... and a warehouse that does not answer.
    [closed] = pick_free_ports(1)
    gone = {**apart, "RETROLYTICS_DATABASE_URL": f"postgresql://x:y@127.0.0.1:{closed}/x"}
    stopped = retrolytics_bi("up", warehouse, env=gone)
    assert stopped.returncode == 1 and "does not answer" in stopped.stderr
    assert "retrolytics stack up" in stopped.stderr
    for result in (moved, unknown, busy, stopped):
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "superset" / "venv").exists()  # refused before installing anything
