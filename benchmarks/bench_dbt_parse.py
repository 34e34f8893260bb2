"""dbt's parse on windowed runs: the window as ``--vars`` beside it as environment variables.

Every hourly run passes dbt a new window. dbt keeps its parse between invocations
(``target/partial_parse.msgpack``) but throws it all away when ``--vars`` change, so a window
passed as ``--vars`` re-parses the whole project on every run. Passed as environment variables
(``RETROLYTICS_WINDOW_*``, read by ``macros/retroactive.sql``; how Dagster and the tests pass it),
only the models that read them are parsed again.

Each way runs ``dbt parse`` through ``retrolytics.warehouse.runner.run_dbt`` for consecutive
hourly windows in its own copy of the dbt project, after one invocation that leaves a parse state
behind. The figure is dbt's own parse time (``target/perf_info.json``: ``load_all_elapsed``,
without the Python start-up every invocation pays besides), median over the windows.
"""

from __future__ import annotations

import itertools
import json
import statistics
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.bench_definitions import dbt_project_copy
from benchmarks.common import REPO, Section, scratch, section_command
from retrolytics.warehouse import runner

FIRST_HOUR = datetime(2026, 11, 20, tzinfo=UTC)


def hourly_windows(count: int) -> list[dict[str, str]]:
    hours = [FIRST_HOUR + timedelta(hours=n) for n in range(count + 1)]
    return [
        {"start": start.isoformat(), "end": end.isoformat()}
        for start, end in itertools.pairwise(hours)
    ]


def parse_seconds(project: Path, database_url: str, how: str, window: dict[str, Any]) -> float:
    """One ``dbt parse`` with the window passed ``how`` ("vars" or "environment")."""
    given = {"dbt_vars": window} if how == "vars" else {"window": window}
    runner.run_dbt(
        ["parse", "--quiet"],
        database_url=database_url,
        project_dir=project,
        definitions_dir=REPO / "definitions",
        **given,
    )
    return json.loads((project / "target" / "perf_info.json").read_text())["load_all_elapsed"]


def run(quick: bool) -> Section:
    section = Section(
        "8. dbt parse on windowed runs: --vars against environment variables",
        section_command("dbt_parse", quick),
    )
    windows = hourly_windows(4 if quick else 10)
    rows = []
    with scratch("parse") as settings, tempfile.TemporaryDirectory() as tmp:
        for how in ("vars", "environment"):
            project = dbt_project_copy(Path(tmp), f"dbt_project_{how}")
            first = parse_seconds(project, settings.dbt_url, how, windows[0])
            later = [parse_seconds(project, settings.dbt_url, how, w) for w in windows[1:]]
            rows.append((how, f"{first:.2f}", f"{statistics.median(later):.2f}", len(later)))
    section.add(
        "A windowed invocation's parse, seconds (dbt's load_all_elapsed): the first in a fresh "
        "copy of the project, then the median of the next hourly windows."
    )
    section.add("")
    header = ("window passed as", "first parse (s)", "next windows, median (s)", "windows")
    section.table(header, rows)
    vars_median, env_median = (float(row[2]) for row in rows)
    section.add("")
    section.add(f"Environment variables ÷ --vars, next windows: {env_median / vars_median:.2f}.")
    return section
