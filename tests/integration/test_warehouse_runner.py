"""The one way to run dbt holds the warehouse lock on every path, the CLI's included, and every
command that reads declarations reads the folder it is pointed at."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from retrolytics.language.seeds import SEED_RELATIVE_PATH
from retrolytics.warehouse import runner
from tests.support.paths import REPO
from tests.support.warehouse import copy_project

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "retrolytics.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_retrolytics_dbt_waits_for_the_warehouse_lock(database_url: str) -> None:
    env = {**os.environ, "RETROLYTICS_DATABASE_URL": database_url}
    with runner.warehouse_lock(database_url):
        process = cli("dbt", "parse", env=env)
        waited = process.stderr.readline()  # blocks until the CLI reports that it waits
        assert runner.WAITING_MESSAGE in waited, waited
        assert process.poll() is None  # still waiting while the lock is held
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, out + err


def test_every_command_reads_the_declarations_folder_it_is_given(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    shutil.copytree(REPO / "definitions", mine)
    (mine / "events" / "extra.yml").write_text(
        "events:\n  - name: only_in_my_folder\n    description: d\n    owner: me\n"
        "    match:\n      - type: pageview\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RETROLYTICS_DEFINITIONS_DIR"}
    by_option = cli("definitions", "show", "only_in_my_folder", "--definitions", str(mine), env=env)
    by_setting = cli(
        "definitions",
        "show",
        "only_in_my_folder",
        env={**env, "RETROLYTICS_DEFINITIONS_DIR": str(mine)},
    )
    checked = cli("definitions", "check", "--definitions", str(mine), env=env)
    default = cli("definitions", "show", "only_in_my_folder", env=env)
    for process in (by_option, by_setting):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert "type" in out
    out, _ = checked.communicate(timeout=120)
    assert checked.returncode == 0 and "27 definitions" in out, out
    _, err = default.communicate(timeout=120)
    assert default.returncode == 1 and "no event definition named 'only_in_my_folder'" in err


def test_compile_and_dbt_write_the_seeds_of_the_folder_they_are_given(
    tmp_path: Path, database_url: str
) -> None:
    project_dir, mine = copy_project(tmp_path)  # a project copy: the checkout's seeds stay as is
    (mine / "events" / "extra.yml").write_text(
        "events:\n  - name: only_in_my_folder\n    description: d\n    owner: me\n"
        "    match:\n      - type: pageview\n"
    )
    seed = project_dir / SEED_RELATIVE_PATH
    env = {k: v for k, v in os.environ.items() if k != "RETROLYTICS_DEFINITIONS_DIR"}
    env |= {
        "RETROLYTICS_DBT_PROJECT_DIR": str(project_dir),
        "RETROLYTICS_DATABASE_URL": database_url,
    }

    compiled = cli("definitions", "compile", "--definitions", str(mine), env=env)
    out, err = compiled.communicate(timeout=120)
    assert compiled.returncode == 0, out + err
    assert "only_in_my_folder" in seed.read_text()

    seed.unlink()
    listed = cli(
        "dbt",
        "--definitions",
        str(mine),
        "ls",
        "--resource-type",
        "seed",
        "--quiet",
        "--output",
        "name",
        env=env,
    )
    out, err = listed.communicate(timeout=300)
    assert listed.returncode == 0, out + err
    assert "event_definitions" in out.split()  # dbt found the seed `retrolytics dbt` compiled
    assert "only_in_my_folder" in seed.read_text()
