"""The built wheel works outside a checkout: it carries the dbt project and the snippet, and
finds the declarations from settings, not from where its files happen to lie."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support.paths import REPO
from tests.support.warehouse import load_traffic

pytestmark = pytest.mark.integration


def uv() -> list[str]:
    """The uv that installed this project: on PATH, or the module `make install` puts beside
    the system's python3."""
    for command in (["uv"], ["python3", "-m", "uv"]):
        if (
            shutil.which(command[0])
            and subprocess.run([*command, "--version"], capture_output=True, check=False).returncode
            == 0
        ):
            return command
    raise AssertionError("no uv found (make install installs it with `python3 -m pip`)")


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv outside the checkout with the wheel (and the locked dependencies) installed."""
    root = tmp_path_factory.mktemp("installed")
    run([*uv(), "build", "--wheel", "--out-dir", str(root / "dist")], cwd=REPO)
    (wheel,) = (root / "dist").glob("retrolytics-*.whl")
    requirements = root / "requirements.txt"
    exported = run(
        [*uv(), "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project"], cwd=REPO
    )
    requirements.write_text(exported.stdout)
    venv = root / "venv"
    run([*uv(), "venv", "--python", sys.executable, str(venv)])
    python = venv / "bin" / "python"
    run([*uv(), "pip", "install", "--python", str(python), "-r", str(requirements)])
    run([*uv(), "pip", "install", "--python", str(python), "--no-deps", str(wheel)])
    return venv


def test_the_wheel_checks_and_builds_a_users_own_declarations(
    installed: Path, database_url: str, tmp_path: Path
) -> None:
    # A user's folder: their declarations, nothing of the checkout.
    work = tmp_path / "my-analytics"
    shutil.copytree(REPO / "definitions", work / "definitions")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RETROLYTICS_", "VIRTUAL_ENV", "PYTHON"))
    }
    env |= {"RETROLYTICS_DATABASE_URL": database_url, "RETROLYTICS_STATE_DIR": str(tmp_path / "s")}
    retrolytics = str(installed / "bin" / "retrolytics")
    load_traffic(database_url, count=800)

    checked = run([retrolytics, "definitions", "check"], cwd=work, env=env)
    built = run([retrolytics, "dbt", "build", "--select", "+defined_events"], cwd=work, env=env)

    assert checked.stdout.startswith("ok: "), checked.stdout
    assert "Completed successfully" in built.stdout, built.stdout
    # The packaged project was unpacked into the state folder; the checkout was not used.
    assert (tmp_path / "s" / "dbt_project" / "dbt_project.yml").exists()
    assert str(REPO) not in built.stdout
    with psycopg.connect(database_url) as conn:
        definitions = conn.execute(
            "select count(distinct definition_name) from marts.defined_events"
        ).fetchone()[0]
    assert definitions > 0


def test_the_wheel_carries_the_snippet(installed: Path) -> None:
    python = str(installed / "bin" / "python")
    found = run(
        [python, "-c", "import ingestion.collector as c; print(c.SNIPPET_PATH.read_text()[:200])"],
        cwd=installed,
    )
    assert "retrolytics" in found.stdout
