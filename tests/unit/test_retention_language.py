"""The retention language: what it accepts, what it refuses (file:line), what it compiles to."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from retrolytics.language import retention
from retrolytics.language.check import check
from retrolytics.language.sources import parse_yaml
from tests.support.paths import REPO

VALID = """\
retention:
  - name: repeat_purchase
    description: Orders again.
    owner: growth
    start_event: completed_purchase
    return_event:
      type: custom
      name: purchase_completed
    period: week
    periods: 4
"""


def parse(text: str) -> tuple[list[retention.Retention], list[str]]:
    document = parse_yaml(text, "r.yml")
    found = [str(p) for p in document.problems]
    parsed = []
    for index, item in enumerate(document.data["retention"]):
        declared, problems = retention.parse_retention(
            item, "r.yml", document.data["retention"].line_of(index), index
        )
        found += [str(p) for p in problems]
        if declared is not None:
            parsed.append(declared)
    return parsed, found


def test_a_valid_declaration_and_its_defaults() -> None:
    (declared,), problems = parse(VALID)
    assert problems == []
    assert declared.start_event.definition == "completed_purchase"
    assert (declared.return_event.event_type, declared.return_event.event_name) == (
        "custom",
        "purchase_completed",
    )
    assert (declared.period, declared.periods, declared.cohorting, declared.unit) == (
        "week",
        4,
        "first_time",
        "device",
    )
    assert (declared.week_start, declared.time_zone, declared.min_occurrences) == (
        "monday",
        "UTC",
        1,
    )


@pytest.mark.parametrize(
    ("line_text", "line", "message"),
    [
        ("    period: fortnight", 9, "'period' must be one of hour, day, week, month"),
        ("    periods: 0", 10, "'periods' must be a whole number from 1 to 120"),
        ("    periods: true", 10, "'periods' must be a whole number"),
        ("    cohorting: once", 11, "'cohorting' must be one of first_time, recurring"),
        ("    unit: session", 11, "'unit' must be one of device, user"),
        ("    time_zone: Mars/Olympus", 11, "'time_zone' must be an IANA time zone"),
        ("    time_zone: Europe/Berln", 11, "did you mean 'Europe/Berlin'?"),
        ("    min_occurrences: 0", 11, "'min_occurrences' must be a whole number from 1"),
        ("    week_start: friday", 11, "'week_start' must be one of monday, sunday"),
        ("    breakdown: {person: [plan]}", 11, "breakdown.person must be a trait name"),
        ("    breakdown: {session: landing}", 11, "breakdown.session: unknown session column"),
        ("    breakdown: {user: plan}", 11, "'breakdown' must be a mapping with exactly one"),
        ("    breakdown: {field: colour}", 11, "breakdown.field: unknown field"),
        ("    colour: blue", 11, "unknown key 'colour' in a retention"),
    ],
)
def test_problems_name_their_line(line_text: str, line: int, message: str) -> None:
    """A line replacing period (line 9) or periods (10), or added after them (11)."""
    key = line_text.split(":")[0].strip()
    lines = VALID.splitlines()
    if key in ("period", "periods"):
        lines[line - 1] = line_text
    else:
        lines.append(line_text)
    declared, problems = parse("\n".join(lines) + "\n")
    assert declared == []
    expected = f"r.yml:{line}: retention 'repeat_purchase': "
    assert any(p.startswith(expected) and message in p for p in problems), problems


def test_week_start_needs_weekly_periods_and_a_missing_key_is_named() -> None:
    text = VALID.replace("period: week", "period: day") + "    week_start: sunday\n"
    _, problems = parse(text)
    assert problems == [
        "r.yml:11: retention 'repeat_purchase': 'week_start' applies to period: week only; "
        "this retention's period is day"
    ]
    _, problems = parse(VALID.replace("    start_event: completed_purchase\n", ""))
    assert problems == [
        "r.yml:2: retention 'repeat_purchase': missing required key 'start_event' (an event "
        "definition, or {type: ..., name: ...})"
    ]


def test_unknown_event_definitions_are_found_across_files(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "e.yml").write_text(
        "events:\n  - name: completed_purchase\n    description: d\n    owner: o\n"
        "    match:\n      - type: custom\n        name: purchase_completed\n"
    )
    (tmp_path / "retention").mkdir()
    (tmp_path / "retention" / "r.yml").write_text(
        VALID.replace("start_event: completed_purchase", "start_event: completed_purchse")
    )
    problems = [str(p) for p in check(tmp_path).problems]
    assert len(problems) == 1
    assert problems[0].endswith(
        "r.yml:5: retention 'repeat_purchase': start_event: unknown event definition "
        "'completed_purchse'; did you mean 'completed_purchase'?"
    )


def test_the_shipped_retentions_compile_to_one_seed_row_each() -> None:
    catalog = check(REPO / "definitions")
    assert catalog.problems == []
    declared = catalog.declarations["retention"]
    assert {r.name for r in declared} >= {"repeat_purchase", "signup_activity"}
    (text,) = retention.seed_files(declared).values()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["retention_name"] for r in rows] == sorted(r.name for r in declared)
    by_name = {r["retention_name"]: r for r in rows}
    assert by_name["repeat_purchase"]["time_zone"] == "Europe/Berlin"
    assert by_name["repeat_purchase"]["breakdown_property"] == '"category"'


def test_the_hash_follows_what_the_retention_computes() -> None:
    (declared,), _ = parse(VALID)
    (described,), _ = parse(VALID.replace("Orders again.", "Buys again."))
    (weekly_sunday,), _ = parse(VALID + "    week_start: sunday\n")
    assert retention.content_hash(declared) == retention.content_hash(described)
    assert retention.content_hash(declared) != retention.content_hash(weekly_sunday)
    shown = retention.describe_compiled(declared)
    assert "r.yml:2" in shown and "period              week" in shown


def test_definitions_show_prints_what_a_retention_compiles_to(capsys) -> None:
    from retrolytics import cli

    shipped = str(REPO / "definitions")
    assert cli.main(["definitions", "show", "repeat_purchase", "--definitions", shipped]) == 0
    out = capsys.readouterr().out
    assert "retention repeat_purchase (" in out and "repeat_purchase.yml:3) compiles to:" in out
    assert "time_zone           Europe/Berlin" in out
    assert 'breakdown_property  "category"' in out
