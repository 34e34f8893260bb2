"""Dagster: how long the code location takes to load with 10, 200 and 500 definitions.

The code location reads its declarations from the configured folder
(``orchestration.project.DEFINITIONS_DIR``: ``RETROLYTICS_DEFINITIONS_DIR``, else ``definitions/``
in the project home). Each size gets a copy of the project's packages and dbt project in a
temporary folder with a generated ``definitions/``: N event definitions (the shipped ones, then
generated variants) and 20 funnels over them. Every process runs in that folder, which is then
its project home, so the seeds and manifest of each size stay out of the checkout's dbt project.
The copy is prepared as a deployment prepares it (compile the seeds, ``dbt parse``
into the manifest; timed apart), then every measurement runs in a fresh Python process with the
copy first on the path:

- ``import orchestration.definitions``: what every process that loads the code location pays
  (the webserver's code server, each run worker, the daemon);
- ``dagster definitions validate``: loading plus resolving and validating every asset, check,
  job, schedule and sensor, the closest to what a code server does before it can serve;
- one tick's worth of the declarations sensor's work (hashing every declaration).

Each is the median of three processes. ``import dagster, dagster_dbt`` alone is the floor.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_definitions import write_definitions
from benchmarks.common import REPO, Section, section_command
from ingestion.settings import state_dir

DEFINITION_COUNTS = (10, 200, 500)
FUNNELS = 20
REPEATS = 3
PACKAGES = ("ingestion", "retrolytics", "orchestration")
SENSOR_TICK = """
import json, time
from orchestration.project import DEFINITIONS_DIR
from orchestration.sensors import declaration_hashes
started = time.perf_counter()
declaration_hashes(DEFINITIONS_DIR)
print(json.dumps(time.perf_counter() - started))
"""


def project_copy(root: Path, definitions: int) -> Path:
    """The packages and dbt project under ``root``, with generated declarations."""
    ignore = shutil.ignore_patterns("__pycache__", "target", "logs", "*.csv")
    for name in (*PACKAGES, "dbt_project"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    shutil.copy(REPO / "workspace.yaml", root / "workspace.yaml")
    write_definitions(root / "definitions", definitions, funnels=FUNNELS)
    return root


def _environment(root: Path, dagster_home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
        # The stack's ports stay readable from the copy (dbt's profile renders with them).
        "RETROLYTICS_STATE_DIR": str(state_dir()),
        "DAGSTER_HOME": str(dagster_home),
    }


def timed(command: list[str], root: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process; raises with its output when it fails.

    CPU time (user + system, the process and what it waited for) barely moves when other work
    shares the machine; wall time does.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def median_of(command: list[str], root: Path, env: dict[str, str]) -> tuple[float, float]:
    """Median wall and median CPU seconds of REPEATS fresh processes."""
    runs = [timed(command, root, env) for _ in range(REPEATS)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def sensor_seconds(root: Path, env: dict[str, str]) -> str:
    """The median time one sensor tick spends hashing the declarations."""
    seconds = []
    for _ in range(REPEATS):
        done = subprocess.run(
            [sys.executable, "-c", SENSOR_TICK],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return "n/a"
        seconds.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return f"{statistics.median(seconds):.2f}"


def dagster_command() -> str:
    return str(Path(sys.executable).with_name("dagster"))


def run(quick: bool) -> Section:
    section = Section(
        "6. Dagster: loading the code location as definitions grow",
        section_command("dagster", quick),
    )
    python = sys.executable
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        floor = median_of(
            [python, "-c", "import dagster, dagster_dbt"], Path(tmp), _environment(Path(tmp), home)
        )
        for count in DEFINITION_COUNTS:
            root = project_copy(Path(tmp) / f"project_{count}", count)
            env = _environment(root, home)
            prepare, _ = timed(
                [python, "-c", "from orchestration.project import prepare; prepare()"], root, env
            )
            imported = median_of([python, "-c", "import orchestration.definitions"], root, env)
            validated = median_of(
                [dagster_command(), "definitions", "validate", "-m", "orchestration.definitions"],
                root,
                env,
            )
            rows.append(
                (
                    count,
                    FUNNELS,
                    f"{prepare:.1f}",
                    f"{imported[0]:.2f} / {imported[1]:.2f}",
                    f"{imported[1] - floor[1]:.2f}",
                    f"{validated[0]:.2f} / {validated[1]:.2f}",
                    sensor_seconds(root, env),
                )
            )
    section.add(
        f"Floor: `import dagster, dagster_dbt` in a fresh process takes {floor[0]:.2f} s wall, "
        f"{floor[1]:.2f} s CPU. Each figure is a fresh process, median of {REPEATS}; wall / CPU "
        "seconds (CPU time barely moves when other work shares the machine, wall time does)."
    )
    section.lines.append("")
    section.table(
        (
            "definitions",
            "funnels",
            "prepare: seeds + dbt parse (s, once per deploy)",
            "import orchestration.definitions (wall / CPU s)",
            "CPU above the floor (s)",
            "dagster definitions validate (wall / CPU s)",
            "sensor tick: hash the declarations (s)",
        ),
        rows,
    )
    return section
