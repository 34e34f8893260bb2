"""The conftest's guard: the ``citus`` mark outside a Citus module stops the run instead of
letting CI skip a single-node test. Checked by running pytest on a module in a temporary folder,
with ``tests/conftest.py`` loaded as a plugin (nothing is written into the checkout)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

MARKED_TEST = """
import pytest


@pytest.mark.citus
def test_marked():
    assert 1 + 1 == 2
"""


def run_pytest_on(module: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(REPO / "pyproject.toml"),
            "--rootdir",
            str(module.parent),
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-q",
            str(module),
        ],
        cwd=REPO,  # `tests.conftest` is imported from the checkout
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_citus_mark_outside_a_citus_module_is_a_usage_error(tmp_path: Path) -> None:
    module = tmp_path / "test_single_node.py"
    module.write_text(MARKED_TEST)

    done = run_pytest_on(module)

    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "carry the `citus` mark" in done.stderr
    assert "test_single_node.py::test_marked" in done.stderr


def test_the_citus_mark_in_a_citus_module_is_accepted(tmp_path: Path) -> None:
    module = tmp_path / "test_on_citus.py"
    module.write_text(MARKED_TEST)

    done = run_pytest_on(module)

    # Passed where Citus is installed, skipped with the reason where it is not.
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert "carry the `citus` mark" not in done.stdout + done.stderr
