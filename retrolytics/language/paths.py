"""Paths: the language, its validator, and the seeds it compiles to.

A file under ``definitions/paths/`` holds a list under ``paths:``::

    paths:
      - name: after_product_view            # snake_case, unique across all path files
        description: What shoppers do right after viewing a product.
        owner: growth
        start: viewed_product               # the anchor: `start` or `end`, exactly one; an
                                            # event definition, or {type: custom, name: x}
        steps: 5                            # 2 to 20 steps, the anchor included
        step_kind: both                     # definitions (default) | pageviews | both
        definitions: [added_to_cart, ...]   # optional: the definitions that are steps, in
                                            # precedence order (default: all, alphabetical)
        gap_minutes: 30                     # a path ends after this long without a step
                                            # (default 30); or `gap: session` (fct_sessions)
        collapse_repeats: true              # default true: a step repeated in a row is one step
        exclude: [viewed_home]              # optional: events dropped before the walk
        unit: device                        # device (default) | user (identity stitching)
        top_paths: 20                       # how many complete paths mart_path_top keeps

What an event is as a step: the anchor's label when it matches the anchor; else, with
``definitions`` (or ``both``), the first definition of the precedence list it matches; else, with
``pageviews`` (or ``both``), a pageview's ``page_path``. Everything else is no step. What a path
*means* (segments, anchoring, ties, collapsing) is written once in
``retrolytics/semantics/paths.py``.

Compiling writes two dbt seeds, ``paths`` (one row per declaration) and ``path_nodes`` (its
anchor, its step definitions with their precedence, its exclusions): data, never SQL.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrolytics.language import sql
from retrolytics.language.funnels import EventRef, event_ref
from retrolytics.language.seed_format import csv_text, json_cell
from retrolytics.language.sources import Problem, YamlList, YamlMap
from retrolytics.language.validation import (
    Report,
    choice,
    describe,
    is_name,
    required_text,
    start_report,
    unknown_keys,
    whole_number,
)

if TYPE_CHECKING:  # the catalogue is built by check.py, which imports this module
    from retrolytics.language.check import Catalog

PATH_KEYS = (
    "name",
    "description",
    "owner",
    "start",
    "end",
    "steps",
    "step_kind",
    "definitions",
    "gap_minutes",
    "gap",
    "collapse_repeats",
    "exclude",
    "unit",
    "top_paths",
)
STEP_KINDS = ("definitions", "pageviews", "both")
UNITS = ("device", "user")
MIN_STEPS = 2
MAX_STEPS = 20
DEFAULT_GAP_MINUTES = 30
MAX_GAP_MINUTES = 7 * 24 * 60
DEFAULT_TOP_PATHS = 20
MAX_TOP_PATHS = 1000
MAX_TEXT_LENGTH = 2048


@dataclass(frozen=True)
class PathDeclaration:
    name: str
    description: str
    owner: str
    anchor: EventRef
    anchor_at: str  # "start" | "end"
    steps: int
    step_kind: str = "definitions"
    definitions: tuple[str, ...] | None = None  # None: every definition, alphabetical
    gap_minutes: int | None = DEFAULT_GAP_MINUTES  # None: the session splits paths
    collapse_repeats: bool = True
    exclude: tuple[EventRef, ...] = ()
    unit: str = "device"
    top_paths: int = DEFAULT_TOP_PATHS
    path: str = ""
    line: int = 0
    anchor_line: int = 0
    definitions_line: int = 0

    @property
    def gap_label(self) -> str:
        return "the session" if self.gap_minutes is None else f"{self.gap_minutes} minutes"

    @property
    def uses_definitions(self) -> bool:
        return self.step_kind in ("definitions", "both")

    @property
    def uses_pageviews(self) -> bool:
        return self.step_kind in ("pageviews", "both")

    def step_definitions(self, known: Iterable[str]) -> tuple[str, ...]:
        """The definitions that are steps, in precedence order (first wins)."""
        if not self.uses_definitions:
            return ()
        if self.definitions is not None:
            return self.definitions
        return tuple(sorted(known))  # code point order, as PostgreSQL's "C" collation

    def definitions_used(self, known: Iterable[str] = ()) -> frozenset[str]:
        refs = [self.anchor, *self.exclude]
        named = {r.definition for r in refs if r.definition is not None}
        return frozenset(named | set(self.step_definitions(known)))


# -- parsing --------------------------------------------------------------------------------


def parse_path(
    item: Any, path: str, line: int, index: int
) -> tuple[PathDeclaration | None, list[Problem]]:
    """Validate one entry of a ``paths:`` list; return the declaration or the problems.
    References to event definitions are checked against the whole catalogue later."""
    report = start_report(item, path, f"paths[{index}]", "path")
    if not isinstance(item, YamlMap):
        report.add(
            line, f"must be a mapping with keys {', '.join(PATH_KEYS)}; got {describe(item)}"
        )
        return None, report.problems
    unknown_keys(item, PATH_KEYS, "a path", report)
    texts = {
        key: required_text(item, key, report, MAX_TEXT_LENGTH)
        for key in ("name", "description", "owner")
    }
    anchor_at, anchor = _anchor(item, report)
    steps = whole_number(item, "steps", MIN_STEPS, MAX_STEPS, None, report)
    step_kind = choice(item, "step_kind", STEP_KINDS, "definitions", report)
    unit = choice(item, "unit", UNITS, "device", report)
    definitions = _definition_list(item, step_kind, report)
    gap_minutes = _gap(item, report)
    collapse = _boolean(item, "collapse_repeats", True, report)
    exclude = _exclusions(item, anchor, report)
    top_paths = whole_number(item, "top_paths", 1, MAX_TOP_PATHS, DEFAULT_TOP_PATHS, report)
    if report.problems or anchor is None or steps is None or top_paths is None:
        return None, report.problems
    declaration = PathDeclaration(
        name=texts["name"],
        description=texts["description"],
        owner=texts["owner"],
        anchor=anchor,
        anchor_at=anchor_at,
        steps=steps,
        step_kind=step_kind,
        definitions=definitions,
        gap_minutes=gap_minutes,
        collapse_repeats=collapse,
        exclude=exclude,
        unit=unit,
        top_paths=top_paths,
        path=path,
        line=item.line,
        anchor_line=item.line_of(anchor_at),
        definitions_line=item.line_of("definitions"),
    )
    return declaration, []


def _anchor(item: YamlMap, report: Report) -> tuple[str, EventRef | None]:
    present = [key for key in ("start", "end") if key in item]
    if len(present) != 1:
        report.add(
            item.line,
            "a path needs exactly one of 'start' (what people do after it) and 'end' (what "
            f"leads to it); got {' and '.join(present) or 'neither'}",
        )
        return "start", None
    key = present[0]
    return key, event_ref(item[key], key, item.line_of(key), report)


def _boolean(item: YamlMap, key: str, default: bool, report: Report) -> bool:
    value = item.get(key, default)
    if not isinstance(value, bool):
        report.add(item.line_of(key), f"{key!r} must be true or false; got {describe(value)}")
        return default
    return value


def _gap(item: YamlMap, report: Report) -> int | None:
    """Minutes of inactivity that end a path; None for ``gap: session``."""
    if "gap" in item and "gap_minutes" in item:
        report.add(item.line_of("gap"), "give 'gap_minutes' or 'gap: session', not both")
        return DEFAULT_GAP_MINUTES
    if "gap" in item:
        if item["gap"] != "session":
            report.add(
                item.line_of("gap"),
                f"'gap' takes only 'session' (for minutes write gap_minutes: N); got "
                f"{describe(item['gap'])}",
            )
        return None
    minutes = whole_number(item, "gap_minutes", 1, MAX_GAP_MINUTES, DEFAULT_GAP_MINUTES, report)
    return DEFAULT_GAP_MINUTES if minutes is None else minutes


def _definition_list(item: YamlMap, step_kind: str, report: Report) -> tuple[str, ...] | None:
    if "definitions" not in item:
        return None
    value = item["definitions"]
    line = item.line_of("definitions")
    if step_kind == "pageviews":
        report.add(line, "'definitions' goes with step_kind definitions or both, not pageviews")
        return None
    if not isinstance(value, YamlList) or not value or not all(is_name(v) for v in value):
        report.add(
            line,
            f"'definitions' must be a non-empty list of event definition names; got "
            f"{describe(value)}",
        )
        return None
    repeated = sorted({v for v in value if value.count(v) > 1})
    if repeated:
        report.add(line, f"'definitions' names {', '.join(repeated)} more than once")
        return None
    return tuple(value)


def _exclusions(item: YamlMap, anchor: EventRef | None, report: Report) -> tuple[EventRef, ...]:
    if "exclude" not in item:
        return ()
    raw_list = item["exclude"]
    if not isinstance(raw_list, YamlList) or not raw_list:
        report.add(
            item.line_of("exclude"), f"'exclude' must be a non-empty list; got {describe(raw_list)}"
        )
        return ()
    refs = []
    for index, raw in enumerate(raw_list):
        where = f"exclude[{index}]"
        ref = event_ref(raw, where, raw_list.line_of(index), report)
        if ref is not None and ref == anchor:
            report.add(raw_list.line_of(index), f"{where}: {ref.label} is the anchor itself")
        elif ref is not None:
            refs.append(ref)
    return tuple(refs)


def check_references(catalog: Catalog) -> list[Problem]:
    """Every definition a path names (anchor, step list, exclusions) must exist."""
    known = {d.name for d in catalog.declarations.get("events", [])}
    problems = []
    for declaration in catalog.declarations.get("paths", []):
        named = [(declaration.anchor_at, declaration.anchor, declaration.anchor_line)]
        named += [("definitions", EventRef(definition=d), declaration.definitions_line)
                  for d in declaration.definitions or ()]  # fmt: skip
        named += [(f"exclude[{i}]", r, declaration.line) for i, r in enumerate(declaration.exclude)]
        for where, ref, line in named:
            if ref.definition is None or ref.definition in known:
                continue
            hint = difflib.get_close_matches(ref.definition, sorted(known), n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            problems.append(
                Problem(
                    declaration.path,
                    line,
                    f"path {declaration.name!r}: {where}: unknown event definition "
                    f"{ref.definition!r}{suggestion}",
                )
            )
    return problems


# -- compiling ------------------------------------------------------------------------------

PATHS_SEED = "paths.csv"
PATH_NODES_SEED = "path_nodes.csv"
PATH_COLUMNS = (
    "path_name",
    "content_hash",
    "description",
    "owner",
    "anchor_at",
    "anchor_label",
    "step_limit",
    "step_kind",
    "gap_seconds",
    "gap_session",
    "collapse_repeats",
    "unit",
    "top_paths",
)
NODE_COLUMNS = ("path_name", "role", "position", "definition_name", "event_type", "event_name")


def _ref(ref: EventRef) -> list[Any]:
    return [ref.definition, ref.event_type, ref.event_name]


def content_hash(declaration: PathDeclaration, known: Iterable[str] = ()) -> str:
    """Changes exactly when what the path computes changes (not its description, owner or
    top_paths, which only the mart reads). ``known``: every definition name, for a path whose
    steps are all definitions."""
    semantics = {
        "name": declaration.name,
        "anchor": [declaration.anchor_at, _ref(declaration.anchor)],
        "steps": declaration.steps,
        "step_kind": declaration.step_kind,
        "definitions": list(declaration.step_definitions(known)),
        "gap_minutes": declaration.gap_minutes,
        "collapse_repeats": declaration.collapse_repeats,
        "exclude": [_ref(r) for r in declaration.exclude],
        "unit": declaration.unit,
    }
    return hashlib.sha256(sql.canonical_json(semantics).encode()).hexdigest()[:16]


def path_row(declaration: PathDeclaration, known: Iterable[str]) -> dict[str, str]:
    gap = declaration.gap_minutes
    return {
        "path_name": declaration.name,
        "content_hash": content_hash(declaration, known),
        "description": json_cell(declaration.description),
        "owner": json_cell(declaration.owner),
        "anchor_at": declaration.anchor_at,
        "anchor_label": json_cell(declaration.anchor.label),
        "step_limit": str(declaration.steps),
        "step_kind": declaration.step_kind,
        "gap_seconds": "0" if gap is None else str(gap * 60),
        "gap_session": "true" if gap is None else "false",
        "collapse_repeats": "true" if declaration.collapse_repeats else "false",
        "unit": declaration.unit,
        "top_paths": str(declaration.top_paths),
    }


def node_rows(declaration: PathDeclaration, known: Iterable[str]) -> list[dict[str, str]]:
    def row(role: str, position: int, ref: EventRef) -> dict[str, str]:
        return {
            "path_name": declaration.name,
            "role": role,
            "position": str(position),
            "definition_name": ref.definition or "",
            "event_type": ref.event_type or "",
            "event_name": json_cell(ref.event_name),
        }

    rows = [row("anchor", 0, declaration.anchor)]
    steps = declaration.step_definitions(known)
    rows += [row("step", i, EventRef(definition=d)) for i, d in enumerate(steps, start=1)]
    rows += [row("exclude", i, r) for i, r in enumerate(declaration.exclude, start=1)]
    return rows


def seed_files(catalog: Catalog) -> dict[str, str]:
    """The two seeds' CSV text by file name."""
    known = [d.name for d in catalog.event_definitions]
    ordered = sorted(catalog.declarations.get("paths", []), key=lambda p: p.name)
    return {
        PATHS_SEED: csv_text(PATH_COLUMNS, (path_row(p, known) for p in ordered)),
        PATH_NODES_SEED: csv_text(NODE_COLUMNS, (r for p in ordered for r in node_rows(p, known))),
    }


def describe_compiled(declaration: PathDeclaration, known: Iterable[str]) -> str:
    """What ``retrolytics definitions show NAME`` prints for a path: the rules it compiles to."""
    steps = declaration.step_definitions(known)
    pages = "a pageview's page_path" if declaration.uses_pageviews else ""
    precedence = " > ".join(steps) if steps else ""
    kinds = " then ".join(part for part in (precedence and f"[{precedence}]", pages) if part)
    excluded = ", ".join(r.label for r in declaration.exclude) or "(none)"
    lines = [
        f"path {declaration.name} ({declaration.path}:{declaration.line})",
        f"  {declaration.anchor_at}: {declaration.anchor.label}",
        f"  steps: {declaration.steps} (the anchor included)",
        f"  a step is: the anchor, else {kinds}",
        f"  excluded before the walk: {excluded}",
        f"  a path never crosses: {declaration.gap_label} without a step"
        if declaration.gap_minutes is not None
        else "  a path never leaves: the session (fct_sessions)",
        f"  repeats collapsed: {'yes' if declaration.collapse_repeats else 'no'}",
        f"  unit: {declaration.unit}; top paths kept: {declaration.top_paths}",
        f"  content hash: {content_hash(declaration, known)}",
    ]
    return "\n".join(lines)
