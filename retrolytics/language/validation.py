"""What every declaration kind's parser shares: collecting problems, naming rules, messages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from retrolytics.language.sources import Problem, YamlMap

NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
MAX_NAME_LENGTH = 63  # a PostgreSQL identifier
NAME_RULE = (
    "the name must be snake_case: lower-case letters and digits in words joined by single "
    f"underscores, starting with a letter, at most {MAX_NAME_LENGTH} characters"
)


@dataclass
class Report:
    """Collects problems for one declaration; ``label`` prefixes its messages."""

    path: str
    label: str
    problems: list[Problem] = field(default_factory=list)

    def add(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, f"{self.label}: {message}"))


def is_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and bool(NAME_PATTERN.fullmatch(value))
        and (len(value) <= MAX_NAME_LENGTH)
    )


def describe(value: Any) -> str:
    """What a YAML value is, for a message: ``a number (3)``, ``a list``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def start_report(item: Any, path: str, position: str, noun: str) -> Report:
    """A report labelled with the item's position (``funnels[2]``), or ``<noun> 'name'`` once the
    item names itself; a name that breaks the naming rule is reported here."""
    report = Report(path, position)
    name = item.get("name") if isinstance(item, YamlMap) else None
    if isinstance(name, str) and name:
        report.label = f"{noun} {name!r}"
        if not is_name(name):
            report.add(item.line_of("name"), NAME_RULE)
    return report


def unknown_keys(mapping: YamlMap, allowed: Sequence[str], what: str, report: Report) -> None:
    for key in mapping:
        if key not in allowed:
            report.add(
                mapping.key_lines.get(key, mapping.line),
                f"unknown key {key!r} in {what} (allowed: {', '.join(allowed)})",
            )


def required_text(mapping: YamlMap, key: str, report: Report, max_length: int) -> str:
    """A non-empty string without NUL characters, at most ``max_length``; "" after a problem."""
    if key not in mapping:
        report.add(mapping.line, f"missing required key {key!r}")
        return ""
    value = mapping[key]
    if not isinstance(value, str) or not value.strip():
        report.add(
            mapping.line_of(key), f"{key!r} must be a non-empty string; got {describe(value)}"
        )
        return ""
    if "\x00" in value or len(value) > max_length:
        report.add(
            mapping.line_of(key),
            f"{key!r} must be at most {max_length} characters without NUL characters",
        )
        return ""
    return value.strip()


def choice(mapping: YamlMap, key: str, allowed: Sequence[str], default: str, report: Report) -> str:
    """The value of an optional ``key`` that must be one of ``allowed`` (``default`` when absent
    or, with a problem reported, not allowed)."""
    if key not in mapping:
        return default
    value = mapping[key]
    if value not in allowed:
        report.add(
            mapping.line_of(key),
            f"{key!r} must be one of {', '.join(allowed)}; got {describe(value)}",
        )
        return default
    return value


def is_property_name(value: Any) -> bool:
    """An event or person property's name: text of 1 to 200 characters, no NUL."""
    return isinstance(value, str) and 0 < len(value) <= 200 and "\x00" not in value


def whole_number(
    item: YamlMap, key: str, low: int, high: int, default: int | None, report: Report
) -> int | None:
    """The value of ``key``, a whole number from ``low`` to ``high``; ``default`` when absent
    (a problem when there is no default), None after a problem."""
    if key not in item:
        if default is None:
            report.add(item.line, f"missing required key {key!r} (a whole number, {low} to {high})")
        return default
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        report.add(
            item.line_of(key),
            f"{key!r} must be a whole number from {low} to {high}; got {describe(value)}",
        )
        return None
    return value
