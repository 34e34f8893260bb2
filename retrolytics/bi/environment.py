"""Superset's own virtualenv under the state folder, installed from the pinned, hashed
requirements file committed beside this module, so its pins never touch the project's lock."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from retrolytics.bi import BiError

REQUIREMENTS = Path(__file__).with_name("superset-requirements.txt")
MARKER = ".retrolytics-requirements.sha256"


def _uv() -> list[str]:
    """uv, as the Makefile runs it: on the PATH, else ``python3 -m uv``."""
    found = shutil.which("uv")
    if found:
        return [found]
    python3 = shutil.which("python3")
    if (
        python3
        and subprocess.run([python3, "-m", "uv", "--version"], capture_output=True).returncode == 0
    ):
        return [python3, "-m", "uv"]
    raise BiError("uv is needed to install Superset: `python3 -m pip install uv`")


def requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def executable(env: Path, name: str) -> Path:
    return env / "bin" / name


def is_current(env: Path) -> bool:
    marker = env / MARKER
    return (
        marker.is_file()
        and marker.read_text().strip() == requirements_digest()
        and executable(env, "superset").exists()
    )


def ensure(env: Path, say: Callable[[str], None]) -> None:
    """Install or update the environment unless it already matches the requirements file."""
    if is_current(env):
        return
    say(f"installing Apache Superset into {env} (once per requirements change; minutes)")
    uv = _uv()
    (env / MARKER).unlink(missing_ok=True)
    if not executable(env, "python").exists():
        _run([*uv, "venv", "--quiet", "--python", sys.executable, str(env)])
    python = str(executable(env, "python"))
    _run([*uv, "pip", "sync", "--quiet", "--require-hashes", "--python", python, str(REQUIREMENTS)])
    (env / MARKER).write_text(requirements_digest() + "\n")


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BiError(
            f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stderr.strip()[-2000:]}"
        )
