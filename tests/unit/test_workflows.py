"""The GitHub workflows: actionlint (with shellcheck on every ``run:`` script) finds nothing,
and the two workflows agree on the artifact that carries production's state from one to the
other. `make workflow-lint` installs both tools."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from retrolytics.warehouse import pr_review
from tests.support.paths import REPO

WORKFLOWS = REPO / ".github" / "workflows"


def _actionlint() -> str:
    found = REPO / ".retrolytics" / "bin" / "actionlint"
    path = str(found) if found.is_file() else shutil.which("actionlint")
    assert path, "actionlint is not installed: run `make workflow-lint`"
    assert shutil.which("shellcheck"), "shellcheck is not installed: run `make workflow-lint`"
    return path


def _lint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_actionlint(), "-no-color", "-oneline", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))


def _step(workflow: dict, uses: str) -> dict:
    (step,) = [
        s for job in workflow["jobs"].values() for s in job["steps"] if uses in s.get("uses", "")
    ]
    return step


def test_actionlint_finds_nothing_in_the_workflows():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"deploy.yml", "pr-check.yml"}
    result = _lint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_reports_a_broken_workflow(tmp_path):
    """The linter really runs, shellcheck included: a typo in an expression and an unquoted
    variable are both reported."""
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    text = (WORKFLOWS / "pr-check.yml").read_text(encoding="utf-8")
    text = text.replace("${{ github.token }}", "${{ github.tokn }}", 1)
    broken.write_text(text.replace('"$comments" -F body', "$comments -F body"), encoding="utf-8")
    result = _lint(broken)
    assert result.returncode == 1
    assert '"tokn" is not defined' in result.stdout
    assert "SC2086" in result.stdout  # shellcheck: double quote to prevent globbing


def test_pr_check_downloads_what_deploy_uploads():
    deploy, pr_check = _load("deploy.yml"), _load("pr-check.yml")
    upload = _step(deploy, "actions/upload-artifact")["with"]
    download = _step(pr_check, "action-download-artifact")["with"]
    assert download["workflow"] == "deploy.yml"
    assert download["name"] == upload["name"]
    # PyYAML reads the key `on` as True (YAML 1.1).
    assert download["branch"] in deploy[True]["push"]["branches"]
    # The artifact holds the manifest and the declarations it was built from, side by side,
    # which is where pr-check looks: STATE/manifest.json and STATE/definitions.
    uploaded = upload["path"].split()
    assert uploaded == ["production-state/manifest.json", "production-state/definitions/"]
    run = next(
        s["run"]
        for j in pr_check["jobs"].values()
        for s in j["steps"]
        if "pr-check" in s.get("run", "")
    )
    assert f"--state {download['path']}" in run and "--format markdown" in run


def test_the_comment_is_found_by_the_marker_the_markdown_starts_with():
    text = (WORKFLOWS / "pr-check.yml").read_text(encoding="utf-8")
    assert f"marker='{pr_review.MARKER}'" in text
    assert "--output pr-check.md" in text and "body=@pr-check.md" in text


def test_every_secret_the_workflows_use_is_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for workflow in WORKFLOWS.glob("*.yml"):
        names = re.findall(r"secrets\.([A-Z0-9_]+)", workflow.read_text(encoding="utf-8"))
        assert names, workflow.name
        for name in names:
            assert f"`{name}`" in readme, f"{workflow.name}: secret {name} is not in the README"
