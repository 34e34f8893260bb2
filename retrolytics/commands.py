"""``retrolytics definitions check|show|compile|pr-check`` and ``retrolytics dbt ...``.

Every command reads the declarations folder named by ``--definitions`` (or ``check``'s PATH),
else ``RETROLYTICS_DEFINITIONS_DIR``, else the project's ``definitions/``
(``retrolytics.warehouse.project``).

- ``check [PATH]``: validate every declaration below PATH; print
  ``file:line: what is wrong`` per problem and exit 1, or ``ok: …`` and exit 0.
- ``show NAME``: a definition's compiled SQL predicate over ``staging.stg_events``, with its
  regexes, literals escaped (``sql.py``): paste it after ``where`` to try it.
- ``compile``: write the dbt seeds (``dbt_project/seeds/event_definitions.csv``, …). Plain dbt
  users run ``retrolytics definitions compile && dbt build``.
- ``pr-check --state DIR``: what a pull request changes, built into a scratch schema
  (``pr_check.py``).
- ``retrolytics dbt ARGS…``: compile the seeds, then run dbt on the project with dbt's login
  (``RETROLYTICS_DBT_DATABASE_URL``), holding the warehouse lock (``warehouse.runner``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ingestion.settings import Settings
from retrolytics.language import events
from retrolytics.language.check import DefinitionsInvalid, check, load_catalog
from retrolytics.language.seeds import compile_seed
from retrolytics.warehouse import project, runner


def main(args: argparse.Namespace, settings: Settings) -> int:
    handlers = {
        "check": _check,
        "show": _show,
        "compile": _compile,
        "pr-check": lambda args: _pr_check(args, settings),
    }
    return handlers[args.action](args)


def _definitions_dir(args: argparse.Namespace) -> Path:
    return project.definitions_dir(getattr(args, "path", None) or args.definitions)


def _check(args: argparse.Namespace) -> int:
    catalog = check(_definitions_dir(args))
    for problem in catalog.problems:
        print(problem)
    if catalog.problems:
        print(f"{len(catalog.problems)} problem(s) found", file=sys.stderr)
        return 1
    print(catalog.summary())
    return 0


def _print_problems(error: DefinitionsInvalid) -> int:
    for problem in error.problems:
        print(problem)
    print(f"{len(error.problems)} problem(s) found; fix them first", file=sys.stderr)
    return 1


def _show(args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog(_definitions_dir(args))
    except DefinitionsInvalid as error:
        return _print_problems(error)
    by_name = {d.name: d for d in catalog.event_definitions}
    definition = by_name.get(args.name)
    if definition is None:
        known = ", ".join(sorted(by_name)) or "none"
        print(f"no event definition named {args.name!r} (known: {known})", file=sys.stderr)
        return 1
    print(events.describe_compiled(events.compile_definition(definition)))
    return 0


def _compile(args: argparse.Namespace) -> int:
    project_dir = Path(args.project_dir) if args.project_dir else project.dbt_project_dir()
    try:
        seed = compile_seed(_definitions_dir(args), project_dir)
    except DefinitionsInvalid as error:
        return _print_problems(error)
    written = ", ".join(str(p) for p in seed.paths)
    print(f"compiled {seed.definitions} definitions ({seed.conditions} conditions): {written}")
    return 0


def _pr_check(args: argparse.Namespace, settings: Settings) -> int:
    from retrolytics.warehouse import pr_check

    return pr_check.main(args, settings)


def dbt_main(args: argparse.Namespace, settings: Settings) -> int:
    """``retrolytics dbt …``: seeds first, then dbt with the project's profile and settings."""
    dbt_args = list(args.dbt_args)
    if dbt_args[:1] == ["--"]:
        dbt_args = dbt_args[1:]
    if not dbt_args:
        print("usage: retrolytics dbt <dbt command> [options], e.g. retrolytics dbt build")
        return 2
    try:
        result = runner.run_dbt(
            dbt_args,
            database_url=settings.dbt_url,
            definitions_dir=_definitions_dir(args),
            check=False,
        )
    except DefinitionsInvalid as error:
        return _print_problems(error)
    return 0 if result.success else 1
