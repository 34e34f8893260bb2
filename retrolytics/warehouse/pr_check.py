"""``retrolytics definitions pr-check``: what a pull request changes, proven on real data.

One command for CI and reviewers::

    retrolytics definitions pr-check --state PROD_TARGET_DIR [--scratch-schema pr_42]

1. validates every declaration (``file:line: problem``, exit 1);
2. compiles the seeds and tries each regex in PostgreSQL itself;
3. ``dbt build --select state:modified+ --defer --favor-state --state PROD_TARGET_DIR`` in the
   ``scratch`` target: only what changed and what depends on it, into schemas prefixed with the
   scratch schema (``pr_42_staging``, ``pr_42_marts``); everything else is read from production;
4. prints, for each new, changed or removed definition, its production predicate and match
   count (from production's ``event_definitions`` and ``defined_events``) next to the new
   predicate and count (from the scratch build).

PROD_TARGET_DIR holds the ``manifest.json`` of the last production run (dbt's target folder, or
the artifact CI keeps of it). The scratch schemas are emptied when the check starts and kept
afterwards for a reviewer to query. Exit status: 0 when the build and its tests pass.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from ingestion.settings import Settings
from retrolytics.language import events
from retrolytics.language.check import check
from retrolytics.language.seeds import compile_seed
from retrolytics.language.sources import Problem
from retrolytics.warehouse import project, runner

SEED_NODE = "seed.retrolytics.event_definitions"
MODEL_NODE = "model.retrolytics.defined_events"
REGEX_FIELDS = ("selector_regex", "text_value", "href_value", "path_value", "url_value")


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str

    def identifier(self) -> pgsql.Composed:
        return pgsql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class DefinitionChange:
    name: str
    before: list[events.CompiledCondition]  # empty: the definition is new
    after: list[events.CompiledCondition]  # empty: the definition was removed
    matched_before: int | None
    matched_after: int | None

    @property
    def kind(self) -> str:
        if not self.before:
            return "new"
        return "removed" if not self.after else "changed"


def main(args: argparse.Namespace, settings: Settings) -> int:
    definitions_dir = project.definitions_dir(args.definitions)
    project_dir = Path(args.project_dir) if args.project_dir else project.dbt_project_dir()
    state_dir = Path(args.state)
    if not (state_dir / "manifest.json").is_file():
        print(f"{state_dir}: no manifest.json here; pass the target folder of a production run")
        return 2
    catalog = check(definitions_dir)
    if catalog.problems:
        _print_problems(catalog.problems)
        return 1
    compile_seed(definitions_dir, project_dir)
    compiled = events.compile_all(catalog.event_definitions)
    problems = regex_problems_in_postgres(settings.dbt_url, catalog.event_definitions)
    if problems:
        _print_problems(problems)
        return 1
    drop_scratch_schemas(settings.dbt_url, state_dir / "manifest.json", args.scratch_schema)
    target_path = project_dir / "target" / "pr_check"
    result = runner.run_dbt(
        [
            "build",
            "--select",
            "state:modified+",
            "--defer",
            "--favor-state",
            "--state",
            str(state_dir),
        ],
        database_url=settings.dbt_url,
        project_dir=project_dir,
        target="scratch",
        scratch_schema=args.scratch_schema,
        target_path=target_path,
        check=False,
    )
    changes = compare(
        settings.dbt_url,
        production=_relations(state_dir / "manifest.json"),
        scratch=_relations(target_path / "manifest.json"),
        compiled=compiled,
    )
    print(report(changes))
    if not result.success:
        print("\ndbt build failed in the scratch schema: see the dbt log above")
        return 1
    return 0


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) found")


def regex_problems_in_postgres(
    database_url: str, definitions: list[events.EventDefinition]
) -> list[Problem]:
    """Compile every regex of every definition in PostgreSQL (``'' ~ pattern``), where it will
    run, so an ARE-only refusal is reported against its file and line, not as a failed build."""
    problems = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        for definition in definitions:
            for condition, row in zip(
                definition.conditions, events.compile_definition(definition), strict=True
            ):
                for field in REGEX_FIELDS:
                    pattern = getattr(row, field)
                    is_regex = (
                        field == "selector_regex"
                        or getattr(row, field.replace("_value", "_op")) == "regex"
                    )
                    if pattern is None or not is_regex:
                        continue
                    try:
                        conn.execute("select '' ~ %s", (pattern,))
                    except psycopg.Error as error:
                        problems.append(
                            Problem(
                                definition.path,
                                condition.line,
                                f"event definition {definition.name!r}: PostgreSQL refuses the "
                                f"regex {pattern!r} ({field}): {error.diag.message_primary}",
                            )
                        )
    return problems


def drop_scratch_schemas(database_url: str, manifest_path: Path, scratch_schema: str) -> None:
    """Start from empty scratch schemas (``<scratch>_staging`` …), so every run builds the
    change from scratch. They are left in place afterwards for a reviewer to query."""
    runner.dbt_environment(database_url, scratch_schema=scratch_schema)  # validates the name
    nodes = json.loads(manifest_path.read_text(encoding="utf-8")).get("nodes", {})
    custom = {n.get("config", {}).get("schema") for n in nodes.values()} - {None}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in sorted(custom):
            schema = pgsql.Identifier(f"{scratch_schema}_{name}")
            conn.execute(pgsql.SQL("drop schema if exists {} cascade").format(schema))


def _relations(manifest_path: Path) -> dict[str, Relation]:
    if not manifest_path.is_file():
        return {}
    nodes = json.loads(manifest_path.read_text(encoding="utf-8")).get("nodes", {})
    found = {}
    for key in (SEED_NODE, MODEL_NODE):
        node = nodes.get(key)
        if node is not None:
            found[key] = Relation(node["schema"], node.get("alias") or node["name"])
    return found


def compare(
    database_url: str,
    *,
    production: dict[str, Relation],
    scratch: dict[str, Relation],
    compiled: list[events.CompiledCondition],
) -> list[DefinitionChange]:
    """The definitions whose content hash differs between production and this change."""
    after = _by_name(compiled)
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = _by_name(_read_conditions(conn, production.get(SEED_NODE)))
        changed = sorted(
            name
            for name in set(before) | set(after)
            if _hash(before.get(name)) != _hash(after.get(name))
        )
        counts_before = _count(conn, production.get(MODEL_NODE), changed)
        counts_after = _count(conn, scratch.get(MODEL_NODE), changed)
    return [
        DefinitionChange(
            name=name,
            before=before.get(name, []),
            after=after.get(name, []),
            matched_before=counts_before.get(name),
            matched_after=counts_after.get(name),
        )
        for name in changed
    ]


def _by_name(
    conditions: list[events.CompiledCondition],
) -> dict[str, list[events.CompiledCondition]]:
    grouped: dict[str, list[events.CompiledCondition]] = defaultdict(list)
    for condition in conditions:
        grouped[condition.definition_name].append(condition)
    return dict(grouped)


def _hash(conditions: list[events.CompiledCondition] | None) -> str | None:
    return conditions[0].content_hash if conditions else None


def _exists(conn: psycopg.Connection, relation: Relation | None) -> bool:
    if relation is None:
        return False
    found = conn.execute(
        "select to_regclass(%s) is not null",
        (pgsql.Identifier(relation.schema, relation.name).as_string(conn),),
    ).fetchone()
    return bool(found and found[0])


def _read_conditions(
    conn: psycopg.Connection, relation: Relation | None
) -> list[events.CompiledCondition]:
    if not _exists(conn, relation):
        return []
    assert relation is not None
    columns = pgsql.SQL(", ").join(pgsql.Identifier(c) for c in events.SEED_COLUMNS)
    query = pgsql.SQL("select {} from {}").format(columns, relation.identifier())
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(query).fetchall()
    return [events.CompiledCondition.from_record(row) for row in rows]


def _count(conn: psycopg.Connection, relation: Relation | None, names: list[str]) -> dict[str, int]:
    if not names or not _exists(conn, relation):
        return {}
    assert relation is not None
    query = pgsql.SQL(
        "select definition_name, count(*) from {} where definition_name = any(%s) group by 1"
    ).format(relation.identifier())
    counts = dict.fromkeys(names, 0)
    counts.update(dict(conn.execute(query, (names,)).fetchall()))
    return counts


def report(changes: list[DefinitionChange]) -> str:
    if not changes:
        return "No event definition changed."
    lines = [f"{len(changes)} event definition(s) changed:"]
    for change in changes:
        lines += ["", f"== {change.name} ({change.kind})"]
        lines += _side("before (production)", change.before, change.matched_before)
        lines += _side("after (this change)", change.after, change.matched_after)
    return "\n".join(lines)


def _side(label: str, conditions: list[events.CompiledCondition], count: Any) -> list[str]:
    if not conditions:
        return [f"-- {label}: not defined"]
    matched = "not built" if count is None else f"{count} events matched"
    header = f"-- {label}: hash {conditions[0].content_hash}, {matched}"
    return [header, events.definition_predicate(conditions)]
