"""Event definitions: the language, its parser, and what it compiles to.

A file under ``definitions/events/`` holds a list under ``events:``::

    events:
      - name: added_to_cart                 # snake_case, unique across all files
        description: A visitor put a product in the cart.
        owner: growth
        match:                              # conditions, OR'd together
          - type: click                     # one type or a list
            selector: "#add-to-cart"        # CSS over the target and its ancestors
          - type: custom
            name: cart_item_added           # the custom event's name
            properties: {source: quick_add} # equality on custom properties

Every key of a condition is optional, but a condition needs at least one and all given must
hold (AND). ``text``, ``href``, ``path`` and ``url`` take one operator, ``equals``,
``contains``, ``starts_with`` or ``regex`` (``path`` also ``like``: ``*`` is any run inside one
path segment, ``**`` any run across segments); a plain string means ``equals``.

Compiling turns each condition into one row of the ``event_definitions`` dbt seed: data, never
SQL. The row carries the selector's regex (``selectors.compile_selector``), a literal the
hierarchy must contain (a cheap ``strpos`` filter in front of the regex), and the definition's
content hash, which changes exactly when what the definition matches changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cssselect
from cssselect import parser as css

from ingestion.contract import ELEMENT_EVENT_TYPES, EventType, escape_ident, escape_value
from retrolytics.language import sql
from retrolytics.language.regex import RegexProblem, check_regex, like_pattern
from retrolytics.language.seed_format import csv_text
from retrolytics.language.selectors import SelectorError, compile_selector
from retrolytics.language.sources import Problem, YamlList, YamlMap
from retrolytics.language.validation import (
    Report,
    describe,
    required_text,
    start_report,
    unknown_keys,
)

EVENT_TYPES = tuple(t.value for t in EventType)
ELEMENT_TYPES = frozenset(t.value for t in ELEMENT_EVENT_TYPES)
OPERATORS = ("equals", "contains", "starts_with", "regex")
PATH_OPERATORS = (*OPERATORS, "like")
# condition key -> stg_events column it tests
VALUE_FIELDS = {
    "text": "target_text",
    "href": "target_href",
    "path": "page_path",
    "url": "page_url",
}
DEFINITION_KEYS = ("name", "description", "owner", "match")
CONDITION_KEYS = ("type", "name", "selector", "text", "href", "path", "url", "properties")
ELEMENT_ONLY_KEYS = ("selector", "text", "href")
MAX_VALUE_LENGTH = 2048

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class ValueMatch:
    """``op`` is one of ``PATH_OPERATORS``; ``like`` only ever appears before compiling."""

    op: str
    value: str


@dataclass(frozen=True)
class Condition:
    types: tuple[str, ...] = ()
    event_name: str | None = None
    selector: str | None = None
    text: ValueMatch | None = None
    href: ValueMatch | None = None
    path: ValueMatch | None = None
    url: ValueMatch | None = None
    properties: tuple[tuple[str, Scalar], ...] = ()
    line: int = 0


@dataclass(frozen=True)
class EventDefinition:
    name: str
    description: str
    owner: str
    conditions: tuple[Condition, ...]
    path: str = ""
    line: int = 0


# -- parsing --------------------------------------------------------------------------------


def parse_event_definition(
    item: Any, path: str, line: int, index: int
) -> tuple[EventDefinition | None, list[Problem]]:
    """Validate one entry of an ``events:`` list; return the definition or the problems."""
    report = start_report(item, path, f"events[{index}]", "event definition")
    if not isinstance(item, YamlMap):
        report.add(
            line, f"must be a mapping with keys {', '.join(DEFINITION_KEYS)}; got {describe(item)}"
        )
        return None, report.problems
    unknown_keys(item, DEFINITION_KEYS, "an event definition", report)
    texts = {
        key: required_text(item, key, report, MAX_VALUE_LENGTH)
        for key in ("name", "description", "owner")
    }
    conditions = _conditions(item, report)
    if report.problems or conditions is None:
        return None, report.problems
    definition = EventDefinition(
        name=texts["name"],
        description=texts["description"],
        owner=texts["owner"],
        conditions=conditions,
        path=path,
        line=item.line,
    )
    return definition, []


def _conditions(item: YamlMap, report: Report) -> tuple[Condition, ...] | None:
    if "match" not in item:
        report.add(item.line, "missing required key 'match' (a list of conditions)")
        return None
    match = item["match"]
    if isinstance(match, YamlMap):
        match = _single_condition_list(match)  # one condition without the list dash
    if not isinstance(match, YamlList):
        report.add(
            item.line_of("match"), f"'match' must be a list of conditions; got {describe(match)}"
        )
        return None
    if not match:
        report.add(item.line_of("match"), "'match' is empty: give at least one condition")
        return None
    parsed = [_condition(c, f"match[{i}]", match.line_of(i), report) for i, c in enumerate(match)]
    if any(c is None for c in parsed):
        return None
    return tuple(c for c in parsed if c is not None)


def _single_condition_list(condition: YamlMap) -> YamlList:
    items = YamlList([condition])
    items.line = condition.line
    items.item_lines = [condition.line]
    return items


def _condition(raw: Any, where: str, line: int, report: Report) -> Condition | None:
    before = len(report.problems)
    if not isinstance(raw, YamlMap):
        report.add(
            line,
            f"{where} must be a mapping of condition keys "
            f"({', '.join(CONDITION_KEYS)}); got {describe(raw)}",
        )
        return None
    unknown_keys(raw, CONDITION_KEYS, f"{where}", report)
    if not raw:
        report.add(
            raw.line,
            f"{where} is empty, which would match every event; give at least "
            f"one of {', '.join(CONDITION_KEYS)}",
        )
        return None
    types = _types(raw, where, report)
    event_name = _plain_text(raw, "name", where, report)
    selector = _selector(raw, where, report)
    values = {key: _value_match(raw, key, where, report) for key in VALUE_FIELDS}
    properties = _properties(raw, where, report)
    if types and not ELEMENT_TYPES.intersection(types):
        for key in ELEMENT_ONLY_KEYS:
            if key in raw:
                report.add(
                    raw.key_lines[key],
                    f"{where}.{key} tests the clicked element, but type {', '.join(types)} has "
                    f"none (element events: {', '.join(sorted(ELEMENT_TYPES))})",
                )
    if len(report.problems) > before:
        return None
    return Condition(
        types=types,
        event_name=event_name,
        selector=selector,
        properties=properties,
        line=raw.line,
        **values,
    )


def _types(raw: YamlMap, where: str, report: Report) -> tuple[str, ...]:
    if "type" not in raw:
        return ()
    value = raw["type"]
    items = value if isinstance(value, list) else [value]
    line = raw.line_of("type")
    if not items:
        report.add(line, f"{where}.type is an empty list; give one or more event types")
        return ()
    types = []
    for item in items:
        if not isinstance(item, str) or item not in EVENT_TYPES:
            report.add(
                line,
                f"{where}.type: unknown event type {describe(item)} "
                f"(known: {', '.join(EVENT_TYPES)})",
            )
        elif item not in types:
            types.append(item)
    return tuple(sorted(types))


def _plain_text(raw: YamlMap, key: str, where: str, report: Report) -> str | None:
    if key not in raw:
        return None
    value = raw[key]
    if not isinstance(value, str) or not value:
        report.add(
            raw.line_of(key), f"{where}.{key} must be a non-empty string; got {describe(value)}"
        )
        return None
    return value if _storable(value, f"{where}.{key}", raw.line_of(key), report) else None


def _storable(value: str, where: str, line: int, report: Report) -> bool:
    if "\x00" in value:
        report.add(line, f"{where} holds a NUL character, which PostgreSQL cannot store")
        return False
    if len(value) > MAX_VALUE_LENGTH:
        report.add(line, f"{where} is longer than {MAX_VALUE_LENGTH} characters")
        return False
    return True


def _selector(raw: YamlMap, where: str, report: Report) -> str | None:
    selector = _plain_text(raw, "selector", where, report)
    if selector is None:
        return None
    try:
        compile_selector(selector)
    except SelectorError as exc:
        report.add(raw.line_of("selector"), f"{where}.selector: {exc}")
        return None
    return selector


def _value_match(raw: YamlMap, key: str, where: str, report: Report) -> ValueMatch | None:
    if key not in raw:
        return None
    value = raw[key]
    line = raw.line_of(key)
    allowed = PATH_OPERATORS if key == "path" else OPERATORS
    if isinstance(value, str):
        value = {"equals": value}
    if isinstance(value, int | float) and not isinstance(value, bool):
        report.add(
            line,
            f"{where}.{key} must be text; got {describe(value)}: quote it "
            f'("{value}") to match that text',
        )
        return None
    if not isinstance(value, dict):
        report.add(
            line,
            f"{where}.{key} must be a string (meaning equals) or a mapping with one "
            f"operator ({', '.join(allowed)}); got {describe(value)}",
        )
        return None
    if len(value) != 1:
        given = ", ".join(str(k) for k in value) or "none"
        report.add(
            line, f"{where}.{key} needs exactly one operator ({', '.join(allowed)}); got {given}"
        )
        return None
    ((op, operand),) = value.items()
    if isinstance(value, YamlMap):
        line = value.line_of(op)
    if op not in allowed:
        hint = " ('like' works on path only)" if op == "like" else ""
        report.add(
            line, f"{where}.{key}: unknown operator {op!r} (allowed: {', '.join(allowed)}){hint}"
        )
        return None
    if not isinstance(operand, str) or not operand:
        report.add(line, f"{where}.{key}.{op} must be a non-empty string; got {describe(operand)}")
        return None
    if not _storable(operand, f"{where}.{key}.{op}", line, report):
        return None
    if op == "regex":
        try:
            check_regex(operand)
        except RegexProblem as exc:
            report.add(line, f"{where}.{key}.regex: invalid regex {operand!r}: {exc}")
            return None
    return ValueMatch(op, operand)


def _properties(raw: YamlMap, where: str, report: Report) -> tuple[tuple[str, Scalar], ...]:
    if "properties" not in raw:
        return ()
    value = raw["properties"]
    line = raw.line_of("properties")
    if not isinstance(value, dict) or not value:
        report.add(
            line,
            f"{where}.properties must be a non-empty mapping of property names to "
            f"values; got {describe(value)}",
        )
        return ()
    pairs = []
    for key, item in value.items():
        item_line = value.line_of(key) if isinstance(value, YamlMap) else line
        if not isinstance(key, str) or not key:
            report.add(
                item_line,
                f"{where}.properties: the key {describe(key)} must be a non-empty string",
            )
        elif isinstance(item, dict | list):
            report.add(
                item_line,
                f"{where}.properties.{key}: must be a string, number, boolean "
                "or null (nested objects and lists are not supported)",
            )
        elif isinstance(item, float) and not math.isfinite(item):
            report.add(item_line, f"{where}.properties.{key}: must be a finite number")
        elif _storable(key, f"{where}.properties key", item_line, report) and (
            not isinstance(item, str)
            or _storable(item, f"{where}.properties.{key}", item_line, report)
        ):
            pairs.append((key, item))
    return tuple(sorted(pairs))


# -- compiling ------------------------------------------------------------------------------

SEED_COLUMNS = (
    "definition_name",
    "condition_index",
    "content_hash",
    "description",
    "owner",
    "event_types",
    "event_name",
    "selector",
    "selector_regex",
    "selector_literal",
    "text_op",
    "text_value",
    "href_op",
    "href_value",
    "path_op",
    "path_value",
    "url_op",
    "url_value",
    "properties",
)
# Free text travels through the seed as JSON (jsonb columns): dbt reads seed cells with agate,
# which turns '', 'null' and ' NULL ' into SQL NULL; a JSON string never looks like that. The
# event types are a JSON array too (dbt's unit tests cannot mock text[] columns).
JSON_COLUMNS = frozenset(
    {
        "description",
        "owner",
        "event_types",
        "event_name",
        "selector",
        "selector_regex",
        "selector_literal",
        "text_value",
        "href_value",
        "path_value",
        "url_value",
        "properties",
    }
)


@dataclass(frozen=True)
class CompiledCondition:
    """One row of the ``event_definitions`` seed: a condition as data, ready for matching."""

    definition_name: str
    condition_index: int
    content_hash: str
    description: str
    owner: str
    event_types: tuple[str, ...] | None = None
    event_name: str | None = None
    selector: str | None = None
    selector_regex: str | None = None
    selector_literal: str | None = None
    text_op: str | None = None
    text_value: str | None = None
    href_op: str | None = None
    href_value: str | None = None
    path_op: str | None = None
    path_value: str | None = None
    url_op: str | None = None
    url_value: str | None = None
    properties: Mapping[str, Scalar] | None = None

    def matching_fields(self) -> dict[str, Any]:
        """What decides which events match: everything but names, texts and position."""
        skip = {"definition_name", "condition_index", "content_hash", "description", "owner"}
        values = {k: getattr(self, k) for k in SEED_COLUMNS if k not in skip}
        values["event_types"] = list(self.event_types) if self.event_types else None
        values["properties"] = dict(self.properties) if self.properties else None
        return values

    def seed_row(self) -> dict[str, str]:
        row = {}
        for column in SEED_COLUMNS:
            value = getattr(self, column)
            if value is None:
                row[column] = ""
            elif column == "properties":
                row[column] = sql.canonical_json(dict(value))
            elif column == "event_types":
                row[column] = sql.canonical_json(list(value))
            elif column in JSON_COLUMNS:
                row[column] = sql.canonical_json(value)
            else:
                row[column] = str(value)
        return row

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CompiledCondition:
        """From a row of the ``event_definitions`` table as psycopg returns it."""
        values = {column: record.get(column) for column in SEED_COLUMNS}
        if values["event_types"] is not None:
            values["event_types"] = tuple(values["event_types"])
        return cls(**values)


def compile_definition(definition: EventDefinition) -> list[CompiledCondition]:
    """The seed rows of one definition, all carrying its content hash."""
    unhashed = [_compile_condition(definition, i, c) for i, c in enumerate(definition.conditions)]
    digest = content_hash(definition.name, unhashed)
    return [_with_hash(row, digest) for row in unhashed]


def _with_hash(row: CompiledCondition, digest: str) -> CompiledCondition:
    values = {column: getattr(row, column) for column in SEED_COLUMNS}
    values["content_hash"] = digest
    return CompiledCondition(**values)


def content_hash(name: str, conditions: Sequence[CompiledCondition]) -> str:
    """Changes exactly when what the definition matches changes: hashed over the *compiled*
    conditions, so a new selector compiler that writes different regexes re-derives too, and a
    new description or owner does not."""
    document = [name, [c.matching_fields() for c in conditions]]
    return hashlib.sha256(sql.canonical_json(document).encode()).hexdigest()[:16]


def _compile_condition(
    definition: EventDefinition, index: int, condition: Condition
) -> CompiledCondition:
    values: dict[str, Any] = {}
    for key in VALUE_FIELDS:
        match: ValueMatch | None = getattr(condition, key)
        if match is None:
            continue
        if match.op == "like":
            values[f"{key}_op"], values[f"{key}_value"] = "regex", like_pattern(match.value)
        else:
            values[f"{key}_op"], values[f"{key}_value"] = match.op, match.value
    selector = condition.selector
    return CompiledCondition(
        definition_name=definition.name,
        condition_index=index,
        content_hash="",
        description=definition.description,
        owner=definition.owner,
        event_types=condition.types or None,
        event_name=condition.event_name,
        selector=selector,
        selector_regex=compile_selector(selector) if selector else None,
        selector_literal=required_literal(selector) if selector else None,
        properties=dict(condition.properties) or None,
        **values,
    )


def required_literal(selector: str) -> str | None:
    """A piece of text the hierarchy string must contain for ``selector`` to match, if any.

    Only a necessary condition (``strpos`` in front of the regex), so it may over-match: the
    longest of the ids, classes and ``=``/``^=`` attribute tests of a single selector (a comma
    list has no common piece). Written exactly as ``ingestion.contract`` writes the hierarchy.
    """
    try:
        parsed = cssselect.parse(selector)
    except cssselect.SelectorError:
        return None
    if len(parsed) != 1:
        return None
    pieces = list(_literal_pieces(parsed[0].parsed_tree))
    return max(pieces, key=len) if pieces else None


def _literal_pieces(node: Any) -> Iterable[str]:
    if isinstance(node, css.CombinedSelector):
        yield from _literal_pieces(node.selector)
        yield from _literal_pieces(node.subselector)
    elif isinstance(node, css.Hash):
        yield "#" + escape_ident(node.id)
        yield from _literal_pieces(node.selector)
    elif isinstance(node, css.Class):
        if not re.search(r"\s", node.class_name):
            yield "." + escape_ident(node.class_name)
        yield from _literal_pieces(node.selector)
    elif isinstance(node, css.Attrib):
        yield from _attribute_pieces(node)
        yield from _literal_pieces(node.selector)
    elif isinstance(node, css.Function | css.Pseudo):
        yield from _literal_pieces(node.selector)


def _attribute_pieces(node: css.Attrib) -> Iterable[str]:
    name = node.attrib.lower()
    value = None if node.value is None else node.value.value
    if name == "id":
        if node.operator == "=" and value:
            yield "#" + escape_ident(value)
        return
    opening = f'[{escape_ident(name)}="'
    if node.operator == "=":
        yield opening + escape_value(value or "") + '"]'
    elif node.operator == "^=" and value:
        yield opening + escape_value(value)
    else:
        yield opening


def compile_all(definitions: Iterable[EventDefinition]) -> list[CompiledCondition]:
    return [row for d in sorted(definitions, key=lambda d: d.name) for row in compile_definition(d)]


def seed_csv(rows: Iterable[CompiledCondition]) -> str:
    return csv_text(SEED_COLUMNS, (row.seed_row() for row in rows))


# -- rendering SQL for people ---------------------------------------------------------------


def condition_predicate(condition: CompiledCondition) -> str:
    """The condition as a SQL boolean over ``staging.stg_events`` columns, literals escaped.

    Same semantics, term for term, as the ``condition_matches`` dbt macro the model uses.
    """
    q = sql.quote_literal
    terms = []
    if condition.event_types:
        types = condition.event_types
        terms.append(
            f"type = {q(types[0])}" if len(types) == 1 else f"type = any({sql.text_array(types)})"
        )
    if condition.event_name is not None:
        terms.append(f"name = {q(condition.event_name)}")
    if condition.selector_literal is not None:
        terms.append(f"strpos(hierarchy, {q(condition.selector_literal)}) > 0")
    for key, column in VALUE_FIELDS.items():
        op, value = getattr(condition, f"{key}_op"), getattr(condition, f"{key}_value")
        if op is not None:
            terms.append(_value_term(column, op, q(value)))
    if condition.properties:
        terms.append(f"properties @> {sql.jsonb(condition.properties)}")
    if condition.selector_regex is not None:  # the costly test last, as in the macro
        terms.append(f"hierarchy ~ {q(condition.selector_regex)}")
    return " and ".join(terms)


def _value_term(column: str, op: str, literal: str) -> str:
    if op == "equals":
        return f"{column} = {literal}"
    if op == "contains":
        return f"strpos({column}, {literal}) > 0"
    if op == "starts_with":
        return f"starts_with({column}, {literal})"
    if op == "regex":
        return f"{column} ~ {literal}"
    raise ValueError(f"unknown operator {op!r}")


def definition_predicate(conditions: Sequence[CompiledCondition]) -> str:
    """All conditions of one definition, OR'd, one per line."""
    ordered = sorted(conditions, key=lambda c: c.condition_index)
    return "\n or ".join(f"({condition_predicate(c)})" for c in ordered)


def describe_compiled(conditions: Sequence[CompiledCondition]) -> str:
    """``show`` output: SQL comments naming the definition and each compiled regex, then the
    predicate, so the whole text can be pasted after ``where``."""
    first = conditions[0]
    lines = [
        f"-- {first.definition_name}: {json.dumps(first.description, ensure_ascii=False)}",
        f"-- owner {json.dumps(first.owner, ensure_ascii=False)}, content hash "
        f"{first.content_hash}, {len(conditions)} condition(s)",
    ]
    for c in sorted(conditions, key=lambda c: c.condition_index):
        if c.selector is not None:
            lines.append(
                f"-- condition {c.condition_index}: selector {json.dumps(c.selector)} "
                f"compiles to {json.dumps(c.selector_regex)}"
            )
        for key in VALUE_FIELDS:
            if getattr(c, f"{key}_op") == "regex":
                lines.append(
                    f"-- condition {c.condition_index}: {key} regex "
                    f"{json.dumps(getattr(c, f'{key}_value'))}"
                )
    lines.append(definition_predicate(conditions))
    return "\n".join(lines)
