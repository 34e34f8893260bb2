"""Where the dbt project and the declarations are: one place, read from settings.

- declarations: ``--definitions DIR``, else ``RETROLYTICS_DEFINITIONS_DIR``, else
  ``definitions/`` in the project home;
- dbt project: ``RETROLYTICS_DBT_PROJECT_DIR``, else ``dbt_project/`` in the project home, else
  the copy the package ships (an installed wheel), unpacked into the state folder.

The project home is ``ingestion.settings.project_home()``: ``RETROLYTICS_HOME``, else the nearest
folder from the working directory up that holds ``definitions/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from importlib import resources
from pathlib import Path

from ingestion.settings import project_home, state_dir

# The wheel carries the dbt project as package data here (pyproject: force-include).
PACKAGED_PROJECT = "dbt_project"
_BUILD_OUTPUT = ("target", "logs", "dbt_packages")


def definitions_dir(override: str | Path | None = None) -> Path:
    """The declarations folder: an explicit ``--definitions``, else the setting, else the home's."""
    chosen = override or os.environ.get("RETROLYTICS_DEFINITIONS_DIR")
    return Path(chosen) if chosen else project_home() / "definitions"


def dbt_project_dir() -> Path:
    """The dbt project to build: the setting, the home's ``dbt_project/``, or the packaged one."""
    chosen = os.environ.get("RETROLYTICS_DBT_PROJECT_DIR")
    if chosen:
        return Path(chosen)
    local = project_home() / "dbt_project"
    if (local / "dbt_project.yml").exists():
        return local
    return _unpacked_project()


def _unpacked_project() -> Path:
    """The packaged project, copied where dbt may write (seeds, target/): the package's own
    folder may be read-only. Copied again whenever the packaged files change."""
    packaged = resources.files("retrolytics.warehouse") / PACKAGED_PROJECT
    with resources.as_file(packaged) as source:
        if not (source / "dbt_project.yml").exists():
            raise FileNotFoundError(
                f"no dbt project: none in {project_home()} and none packaged with retrolytics; "
                "set RETROLYTICS_DBT_PROJECT_DIR or RETROLYTICS_HOME"
            )
        target = state_dir() / "dbt_project"
        stamp = target / ".packaged-fingerprint"
        fingerprint = _fingerprint(source)
        if not stamp.exists() or stamp.read_text() != fingerprint:
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(*_BUILD_OUTPUT))
            stamp.write_text(fingerprint)
        return target


def _fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not set(path.relative_to(folder).parts) & set(_BUILD_OUTPUT):
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
