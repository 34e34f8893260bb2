"""Run the benchmarks and write benchmarks/RESULTS.md.

python -m benchmarks            # the full set (1M-event loads; tens of minutes)
python -m benchmarks --quick    # the same measurements on smaller data, a few minutes
python -m benchmarks --only loader freshness
"""

from __future__ import annotations

import argparse
import importlib
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import machine_description

BENCHMARKS = {
    "loader": "benchmarks.bench_loader",
    "freshness": "benchmarks.bench_freshness",
    "generator": "benchmarks.bench_generator",
    "definitions": "benchmarks.bench_definitions",
    "funnel_engines": "benchmarks.bench_funnel_engines",
    "funnel_hourly": "benchmarks.bench_funnel_hourly",
    "funnels": "benchmarks.bench_funnels",
    "bi": "benchmarks.bench_bi",
    "dagster": "benchmarks.bench_dagster",
    "sessions": "benchmarks.bench_sessions",
    "paths": "benchmarks.bench_paths",
    "retention": "benchmarks.bench_retention",
    "dbt_parse": "benchmarks.bench_dbt_parse",
}
RESULTS = Path(__file__).with_name("RESULTS.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller data, a few minutes")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    sections = []
    for name in args.only:
        print(f"== {name}", flush=True)
        sections.append(importlib.import_module(BENCHMARKS[name]).run(args.quick).markdown())

    mode = "quick" if args.quick else "full"
    header = [
        "# Benchmark results",
        "",
        f"Written by `python -m benchmarks{' --quick' if args.quick else ''}` ({mode} mode) on "
        f"{datetime.now(tz=UTC):%Y-%m-%d %H:%M} UTC. Ratios compare runs made side by side in",
        "this one run; absolute figures depend on a shared, noisy machine: reported, not trusted",
        "alone.",
        "",
        *machine_description(),
        "",
    ]
    args.output.write_text("\n".join(header) + "\n" + "\n".join(sections))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
