"""``definitions/privacy.yml``: the redaction rules, validated with ``file:line`` problems and
compiled for the ingest path (``ingestion.redaction``)::

    privacy:
      drop_query_parameters: [token, email, coupon]     # replaces the default list
      drop_text_for_selectors: ["[data-private]", "input", "#account .balance"]
      properties:
        drop: [email]
        hash: [customer_number]
      ip: none                                          # or: truncated

Every key is optional; without the file the defaults of ``ingestion.redaction`` apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ingestion.redaction import DEFAULT_PRIVATE_SELECTORS, IP_MODES, Redaction
from retrolytics.language.selectors import SelectorError, compile_selector
from retrolytics.language.sources import Problem, YamlList, YamlMap, load_yaml
from retrolytics.language.validation import Report, describe, unknown_keys

FILE_NAME = "privacy.yml"
KEYS = ("drop_query_parameters", "drop_text_for_selectors", "properties", "ip")
PROPERTY_KEYS = ("drop", "hash")


def check(root: Path, shown: str) -> tuple[Redaction, list[Problem]]:
    """The rules of ``root/privacy.yml`` (the defaults when there is none), or the problems."""
    path = root / FILE_NAME
    if not path.exists():
        return _compiled(None, list(DEFAULT_PRIVATE_SELECTORS), {}, "none"), []
    document = load_yaml(path, shown)
    report = Report(shown, "privacy")
    data = document.data
    if document.problems:
        return Redaction(), document.problems
    if not isinstance(data, YamlMap) or set(data) != {"privacy"}:
        report.add(1, "the file holds one top-level key, 'privacy:', with a mapping")
        return Redaction(), report.problems
    rules = data["privacy"]
    if not isinstance(rules, YamlMap):
        report.add(data.line_of("privacy"), f"must be a mapping; got {describe(rules)}")
        return Redaction(), report.problems
    unknown_keys(rules, KEYS, "privacy", report)
    parameters = _names(rules, "drop_query_parameters", report)
    selectors = _names(rules, "drop_text_for_selectors", report)
    properties = _properties(rules, report)
    ip = rules.get("ip", "none")
    if ip not in IP_MODES:
        report.add(rules.line_of("ip"), f"'ip' must be one of {', '.join(IP_MODES)}; got {ip!r}")
    if selectors is None:
        selectors = list(DEFAULT_PRIVATE_SELECTORS)
    for selector in selectors:
        try:
            compile_selector(selector)
        except SelectorError as exc:
            report.add(rules.line_of("drop_text_for_selectors"), f"selector {selector!r}: {exc}")
    if report.problems:
        return Redaction(), report.problems
    return _compiled(parameters, selectors, properties, ip), []


def _compiled(
    parameters: list[str] | None, selectors: list[str], properties: dict[str, list[str]], ip: str
) -> Redaction:
    defaults = Redaction()
    return Redaction(
        query_parameters=(
            frozenset(p.lower() for p in parameters)
            if parameters is not None
            else defaults.query_parameters
        ),
        private_text=tuple(compile_selector(s) for s in selectors),
        drop_properties=frozenset(properties.get("drop", [])),
        hash_properties=frozenset(properties.get("hash", [])),
        ip=ip,
    )


def _names(rules: YamlMap, key: str, report: Report) -> list[str] | None:
    if key not in rules:
        return None
    value = rules[key]
    if not isinstance(value, YamlList) or not all(isinstance(v, str) and v for v in value):
        report.add(rules.line_of(key), f"'{key}' must be a list of strings; got {describe(value)}")
        return []
    return list(value)


def _properties(rules: YamlMap, report: Report) -> dict[str, list[str]]:
    if "properties" not in rules:
        return {}
    value: Any = rules["properties"]
    if not isinstance(value, YamlMap):
        report.add(
            rules.line_of("properties"), f"'properties' must be a mapping; got {describe(value)}"
        )
        return {}
    unknown_keys(value, PROPERTY_KEYS, "privacy.properties", report)
    return {key: _names(value, key, report) or [] for key in PROPERTY_KEYS if key in value}
