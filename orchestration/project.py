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
from pathlib import Path

from dagster_dbt import DbtProject
from dagster_dbt.dbt_project import DagsterDbtProjectPreparer
from dagster_shared.record import replace

from ingestion.settings import Settings
from retrolytics.language.seeds import compile_seed
from retrolytics.warehouse import project, runner

# Where the settings point (retrolytics.warehouse.project), as when the code location loads.
DBT_PROJECT_DIR = project.dbt_project_dir()
DEFINITIONS_DIR = project.definitions_dir()
PREPARE_COMMAND = "uv run dagster-dbt project prepare-and-package --file orchestration/project.py"


def dbt_environment(settings: Settings) -> dict[str, str | None]:
    """What ``dbt_project/profiles.yml`` reads, for dbt's login (``runner.dbt_environment``)."""
    return runner.dbt_environment(settings.dbt_url)


def compile_definitions(definitions_dir: Path = DEFINITIONS_DIR) -> str:
    """Write the seeds dbt reads from the YAML declarations; returns what was written.

    Raises ``DefinitionsInvalid`` listing ``file:line: problem`` when a declaration is bad, so a
    run fails before dbt touches the warehouse.
    """
    seed = compile_seed(definitions_dir, DBT_PROJECT_DIR)
    return f"{seed.definitions} definitions ({seed.conditions} conditions) into {seed.path.name}"


def dbt_executable() -> str:
    """dbt from PATH, else the one installed next to this Python (a venv that is not active)."""
    return shutil.which("dbt") or os.fspath(Path(sys.executable).with_name("dbt"))


class RetrolyticsPreparer(DagsterDbtProjectPreparer):
    """``dbt parse`` needs the generated seeds on disk and a profile it can render."""

    def prepare(self, project: DbtProject) -> None:
        compile_definitions()
        path = os.pathsep.join([str(Path(dbt_executable()).parent), os.environ.get("PATH", "")])
        with runner.environment({**dbt_environment(Settings.from_env()), "PATH": path}):
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
