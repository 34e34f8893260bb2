"""The dbt project as Dagster sees it, and how its manifest is prepared.

The manifest is prepared at build time, not parsed on every import of the code location::

    uv run dagster-dbt project prepare-and-package --file orchestration/project.py

(``make install`` runs it). That compiles ``definitions/events/*.yml`` into the
``event_definitions`` seed and runs ``dbt parse`` into ``dbt_project/target/manifest.json``.
Under ``dagster dev`` the same preparation runs on every load, so edits to models or definitions
show up after a reload; everywhere else (``dagster-webserver``, run workers, the test suite) a
missing manifest is an error that names the command above.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dagster_dbt import DbtProject
from dagster_dbt.dbt_project import DagsterDbtProjectPreparer
from dagster_shared.record import replace

from ingestion.settings import PROJECT_ROOT, Settings

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
# The declarations: the project's own folder, or another checkout (a benchmark, a fork).
DEFINITIONS_DIR = Path(
    os.environ.get("RETROLYTICS_DEFINITIONS_DIR") or PROJECT_ROOT / "definitions"
)
PREPARE_COMMAND = "uv run dagster-dbt project prepare-and-package --file orchestration/project.py"


def dbt_environment(settings: Settings) -> dict[str, str | None]:
    """What ``dbt_project/profiles.yml`` reads, from the loader's own database URL."""
    from retrolytics.language import dbt_runner

    return dbt_runner.dbt_environment(settings.dbt_url)


def compile_definitions(definitions_dir: Path = DEFINITIONS_DIR) -> str:
    """Write the seeds dbt reads from the YAML declarations; returns what was written.

    Raises ``DefinitionsInvalid`` listing ``file:line: problem`` when a declaration is bad, so a
    run fails before dbt touches the warehouse.
    """
    from retrolytics.language import dbt_runner

    seed = dbt_runner.compile_seed(definitions_dir, DBT_PROJECT_DIR)
    return f"{seed.definitions} definitions ({seed.conditions} conditions) into {seed.path.name}"


@contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) variables for the block, then restore them.

    dbt runs as a subprocess that inherits this process's environment.
    """
    saved = {key: os.environ.get(key) for key in values}
    try:
        _apply(values)
        yield
    finally:
        _apply(saved)


def _apply(values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def dbt_executable() -> str:
    """dbt from PATH, else the one installed next to this Python (a venv that is not active)."""
    return shutil.which("dbt") or os.fspath(Path(sys.executable).with_name("dbt"))


class RetrolyticsPreparer(DagsterDbtProjectPreparer):
    """``dbt parse`` needs the generated seeds on disk and a profile it can render."""

    def prepare(self, project: DbtProject) -> None:
        compile_definitions()
        path = os.pathsep.join([str(Path(dbt_executable()).parent), os.environ.get("PATH", "")])
        with environment({**dbt_environment(Settings.from_env()), "PATH": path}):
            super().prepare(project)


# DbtProject takes no preparer argument in this dagster-dbt; swap ours into the record.
dbt_project = replace(
    DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR),
    preparer=RetrolyticsPreparer(),
)
dbt_project.prepare_if_dev()


def prepare() -> Path:
    """Compile the declarations and parse the dbt project: what the build-time command does."""
    dbt_project.preparer.prepare(dbt_project)
    return require_manifest(dbt_project.manifest_path)


def require_manifest(path: Path) -> Path:
    """The prepared manifest, or an error that says how to prepare it."""
    if not path.exists():
        raise FileNotFoundError(
            f"the dbt manifest {path} does not exist yet; prepare it with `{PREPARE_COMMAND}` "
            "(make install does), or start the UI with `dagster dev`, which prepares it itself"
        )
    return path
