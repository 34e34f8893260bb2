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
   predicate and count (from the scratch build);
5. prints, for each funnel the change affects (its declaration, or a definition it reads), the
   units that reached each step over all history, in production and in the scratch build.

With ``--format markdown`` it writes the pull-request comment instead (``pr_review`` renders
it): the declarations as written on both sides and, per changed definition, examples of the
events it newly matches and no longer matches (``match_differences``). ``--output FILE`` writes
the report there and keeps the text report on stdout for the CI log.

PROD_TARGET_DIR holds the ``manifest.json`` of the last production run (dbt's target folder, or
the artifact CI keeps of it) and, in that artifact, the ``definitions/`` production was built
from, whose YAML the comment shows as "before". The scratch schemas are emptied when the check
starts and kept afterwards for a reviewer to query. Exit status: 0 when the build and its tests
pass.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from ingestion.settings import Settings
from retrolytics.language import events
from retrolytics.language.check import Catalog, check
from retrolytics.language.seeds import compile_seed
from retrolytics.language.sources import Problem
from retrolytics.warehouse import pr_review, project, runner

SEED_NODE = "seed.retrolytics.event_definitions"
MODEL_NODE = "model.retrolytics.defined_events"
FUNNEL_FACTS_NODE = "model.retrolytics.fct_funnel_entries"
FUNNEL_MART_NODE = "model.retrolytics.mart_funnel_conversion"
EVENTS_NODE = "model.retrolytics.stg_events"
EXAMPLES_SHOWN = 5
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


@dataclass(frozen=True)
class FunnelSide:
    """One funnel as one side built it: its version and the units that reached each step."""

    content_hash: str
    step_names: tuple[str, ...]
    units_reaching: tuple[int, ...]  # element k-1: distinct units that reached step k


@dataclass(frozen=True)
class FunnelChange:
    name: str
    before: FunnelSide | None  # None: new, or production never built it
    after: FunnelSide | None  # None: removed, or the scratch build did not rebuild funnels

    @property
    def kind(self) -> str:
        if self.before is None:
            return "new"
        return "removed" if self.after is None else "changed"


@dataclass(frozen=True)
class Example:
    """One event that one side's definition matches and the other side's does not."""

    event_id: str
    occurred_at: datetime
    page_path: str | None
    target_text: str | None
    hierarchy_part: str | None  # the elements the selector matched (the target without one)


@dataclass(frozen=True)
class Examples:
    count: int  # all such events
    shown: tuple[Example, ...]  # the first EXAMPLES_SHOWN of them, oldest first


@dataclass(frozen=True)
class MatchDifference:
    newly_matching: Examples
    no_longer_matching: Examples


@dataclass(frozen=True)
class Outcome:
    """Everything the check found, for the text report and the review comment."""

    definitions: list[DefinitionChange]
    funnels: list[FunnelChange] | None  # None: not rebuilt, or the build failed
    differences: dict[str, MatchDifference]  # per changed definition; empty if the build failed
    build_succeeded: bool
    scratch_schema: str


def main(args: argparse.Namespace, settings: Settings) -> int:
    definitions_dir = project.definitions_dir(args.definitions)
    project_dir = Path(args.project_dir) if args.project_dir else project.dbt_project_dir()
    state_dir = Path(args.state)
    if not (state_dir / "manifest.json").is_file():
        print(f"{state_dir}: no manifest.json here; pass the target folder of a production run")
        return 2
    if args.production_definitions and not Path(args.production_definitions).is_dir():
        print(f"{args.production_definitions}: no such folder (--production-definitions)")
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
    production = _relations(state_dir / "manifest.json")
    scratch = _relations(target_path / "manifest.json")
    changes = compare(settings.dbt_url, production=production, scratch=scratch, compiled=compiled)
    # A failed build leaves the scratch facts half made: no funnels or examples to compare.
    outcome = Outcome(
        definitions=changes,
        funnels=compare_funnels(settings.dbt_url, production=production, scratch=scratch)
        if result.success
        else None,
        differences=match_differences(settings.dbt_url, production, scratch, changes)
        if result.success and args.format == "markdown"
        else {},
        build_succeeded=bool(result.success),
        scratch_schema=args.scratch_schema,
    )
    _write_report(args, outcome, catalog, _production_definitions(args, state_dir))
    return 0 if result.success else 1


def _production_definitions(args: argparse.Namespace, state_dir: Path) -> Path | None:
    """Where production's declarations are: ``--production-definitions``, else the
    ``definitions/`` folder the deploy keeps beside its manifest (deploy.yml)."""
    if args.production_definitions:
        return Path(args.production_definitions)
    beside = state_dir / "definitions"
    return beside if beside.is_dir() else None


def _write_report(
    args: argparse.Namespace, outcome: Outcome, change: Catalog, production_dir: Path | None
) -> None:
    """The text report on stdout; with ``--output`` the chosen format goes to that file and
    stdout keeps the text report, so a CI log stays readable next to the comment it posts."""
    if args.format == "markdown":
        production = check(production_dir) if production_dir is not None else None
        chosen = pr_review.render(outcome, change=change, production=production)
    else:
        chosen = text_report(outcome)
    if args.output is None:
        print(chosen)
        return
    Path(args.output).write_text(chosen + "\n", encoding="utf-8")
    print(text_report(outcome))
    print(f"\n{args.format} report written to {args.output}", file=sys.stderr)


def text_report(outcome: Outcome) -> str:
    parts = [report(outcome.definitions)]
    if outcome.build_succeeded:
        parts.append(funnel_report(outcome.funnels))
    else:
        parts.append("dbt build failed in the scratch schema: see the dbt log above")
    return "\n\n".join(parts)


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
    for key in (SEED_NODE, MODEL_NODE, FUNNEL_FACTS_NODE, FUNNEL_MART_NODE, EVENTS_NODE):
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


def compare_funnels(
    database_url: str, *, production: dict[str, Relation], scratch: dict[str, Relation]
) -> list[FunnelChange] | None:
    """The funnels whose version or step counts differ between production and the scratch
    build; None when the change did not rebuild the funnels (nothing they read changed)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        after = _funnel_sides(conn, scratch)
        if after is None:
            return None
        before = _funnel_sides(conn, production) or {}
    return [
        FunnelChange(name, before.get(name), after.get(name))
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]


def _funnel_sides(
    conn: psycopg.Connection, relations: dict[str, Relation]
) -> dict[str, FunnelSide] | None:
    facts, mart = relations.get(FUNNEL_FACTS_NODE), relations.get(FUNNEL_MART_NODE)
    if not (_exists(conn, facts) and _exists(conn, mart)):
        return None
    assert facts is not None and mart is not None
    # Units over all history, each counted once per step however many attempts it made;
    # excluded attempts count nowhere, as in the mart.
    reached = pgsql.SQL(
        "select funnel_name, max(content_hash), array_agg(units order by step) from ("
        " select funnel_name, max(content_hash) as content_hash, step,"
        "  count(distinct unit_id) as units"
        " from {} cross join lateral generate_series(1, furthest_step) as step"
        " where outcome <> 'excluded' group by funnel_name, step"
        ") as per_step group by funnel_name"
    ).format(facts.identifier())
    names = pgsql.SQL(
        "select funnel_name, array_agg(step_name order by step_number) from ("
        " select distinct funnel_name, step_number, step_name from {}"
        ") as steps group by funnel_name"
    ).format(mart.identifier())
    step_names = dict(conn.execute(names).fetchall())
    return {
        name: FunnelSide(content_hash, tuple(step_names.get(name, ())), tuple(units))
        for name, content_hash, units in conn.execute(reached).fetchall()
    }


def funnel_report(changes: list[FunnelChange] | None) -> str:
    if changes is None:
        return "No funnel rebuilt: the change touches nothing a funnel reads."
    if not changes:
        return "No funnel's step counts changed."
    lines = [f"{len(changes)} funnel(s) changed (units that reached each step, all history):"]
    for change in changes:
        lines += ["", f"== {change.name} ({change.kind})"]
        sides = (change.before, change.after)
        names = next(side.step_names for side in reversed(sides) if side is not None)
        steps = max(len(side.units_reaching) for side in sides if side is not None)
        lines.append(f"   {'step':<32} {'before':>10} {'after':>10}")
        for number in range(1, steps + 1):
            name = names[number - 1] if number <= len(names) else ""
            counts = [_units_at(side, number) for side in sides]
            lines.append(f"   {f'{number} {name}':<32} {counts[0]:>10} {counts[1]:>10}")
    return "\n".join(lines)


def _units_at(side: FunnelSide | None, step: int) -> str:
    if side is None:
        return "-"
    return str(side.units_reaching[step - 1]) if step <= len(side.units_reaching) else "0"


def match_differences(
    database_url: str,
    production: dict[str, Relation],
    scratch: dict[str, Relation],
    changes: list[DefinitionChange],
) -> dict[str, MatchDifference]:
    """Per changed definition, the events only the change matches and those only production
    matches: how many, and the oldest few with the part of their hierarchy the selector took."""
    before, after = production.get(MODEL_NODE), scratch.get(MODEL_NODE)
    raw_events = production.get(EVENTS_NODE)  # the same raw events on both sides
    with psycopg.connect(database_url, autocommit=True) as conn:
        if not (_exists(conn, after) and _exists(conn, raw_events)):
            return {}
        assert after is not None and raw_events is not None
        built_before = before if _exists(conn, before) else None
        return {
            change.name: MatchDifference(
                newly_matching=_only_in(
                    conn, change.name, (after, built_before), raw_events, change.after
                ),
                no_longer_matching=_only_in(
                    conn, change.name, (built_before, after), raw_events, change.before
                ),
            )
            for change in changes
        }


def _only_in(
    conn: psycopg.Connection,
    name: str,
    sides: tuple[Relation | None, Relation | None],
    raw_events: Relation,
    conditions: list[events.CompiledCondition],
) -> Examples:
    """The definition's events in ``sides[0]`` that ``sides[1]`` lacks (all of them when
    ``sides[1]`` was never built; none when ``sides[0]`` was not)."""
    side, other = sides
    if side is None:
        return Examples(0, ())
    missing = pgsql.SQL("true")
    if other is not None:
        missing = pgsql.SQL(
            "not exists (select from {} as o where o.definition_name = s.definition_name"
            " and o.event_id = s.event_id and o.anonymous_id = s.anonymous_id"
            " and o.occurred_at = s.occurred_at)"
        ).format(other.identifier())
    only = pgsql.SQL("from {} as s where s.definition_name = %s and {}").format(
        side.identifier(), missing
    )
    count = conn.execute(pgsql.SQL("select count(*) ") + only, (name,)).fetchone()
    shown = pgsql.SQL(
        "select s.event_id::text, s.occurred_at, s.page_path, s.target_text,"
        " (select e.hierarchy from {} as e where e.event_id = s.event_id"
        "  and e.anonymous_id = s.anonymous_id and e.occurred_at = s.occurred_at) "
    ).format(raw_events.identifier())
    order = pgsql.SQL(" order by s.occurred_at, s.event_id limit %s")
    rows = conn.execute(shown + only + order, (name, EXAMPLES_SHOWN)).fetchall()
    regexes = [c.selector_regex for c in conditions if c.selector_regex is not None]
    return Examples(
        count[0] if count else 0,
        tuple(
            Example(event_id, occurred_at, path, text, matching_part(hierarchy, regexes))
            for event_id, occurred_at, path, text, hierarchy in rows
        ),
    )


_ELEMENT = re.compile(r"(?:[^;\\]|\\.)+")  # one element of the hierarchy; ';' separates them


def matching_part(hierarchy: str | None, selector_regexes: Sequence[str]) -> str | None:
    """The shortest run of elements (root first) that a selector of the definition matches in
    ``hierarchy``; the target element when none does (the event matched on something else).

    A selector regex accepts any chain that holds the elements it needs, so the run is found by
    dropping ancestors from the root while it still matches, then descendants from the target.
    """
    if not hierarchy:
        return None
    elements = _ELEMENT.findall(hierarchy)
    if not elements:
        return hierarchy
    for regex in selector_regexes:
        pattern = re.compile(regex)
        if pattern.search(hierarchy) is None:
            continue
        start = max(
            (i for i in range(len(elements)) if pattern.search(";".join(elements[i:]))),
            default=0,
        )
        end = min(
            (
                j
                for j in range(start + 1, len(elements) + 1)
                if pattern.search(";".join(elements[start:j]))
            ),
            default=len(elements),
        )
        return ";".join(elements[start:end])
    return elements[-1]
