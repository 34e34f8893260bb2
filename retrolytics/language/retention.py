"""Retention: the language, its validator, and the seed it compiles to.

A file under ``definitions/retention/`` holds a list under ``retention:``::

    retention:
      - name: repeat_purchase              # snake_case, unique across all retention files
        description: Customers buying again in the weeks after their first order.
        owner: growth
        start_event: completed_purchase    # an event definition, or {type: t[, name: n]}
        return_event: completed_purchase   # the same forms, as funnel steps
        period: week                       # hour | day | week | month
        periods: 8                         # return periods after the cohort's (offsets 1..N)
        cohorting: first_time              # first_time (default): the unit's first start ever
                                           # | recurring: every period with a start
        unit: user                         # device (default) | user (after identity stitching)
        breakdown:                         # optional, one of: a value of the start event,
          property: plan                   # `field: <event field>` or `property: <name>` (a
                                           # return counts only with the same value), or of
                                           # its context: `session: <fct_sessions column>`,
                                           # `person: <trait>` (as of the start event's time)
        min_occurrences: 1                 # return events a unit needs in a period (default 1)
        week_start: monday                 # period: week only; monday (default) | sunday
        time_zone: Europe/Berlin           # IANA zone of the period boundaries (default UTC)

What a retention *means* (cohorts, offsets, incomplete periods, the cumulative view) is written
down once, in ``retrolytics/semantics/retention.py``. Compiling writes one dbt seed,
``retentions`` (one row per declaration): data that generic SQL reads, never SQL text.
"""

from __future__ import annotations

import difflib
import hashlib
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from retrolytics.language import sql
from retrolytics.language.funnels import (
    BREAKDOWN_FIELDS,
    BREAKDOWN_SESSION_COLUMNS,
    EventRef,
    event_ref,
)
from retrolytics.language.seed_format import csv_text, json_cell
from retrolytics.language.sources import Problem, YamlMap
from retrolytics.language.validation import (
    Report,
    choice,
    describe,
    is_property_name,
    required_text,
    start_report,
    unknown_keys,
    whole_number,
)

if TYPE_CHECKING:  # the catalogue is built by check.py, which imports this module
    from retrolytics.language.check import Catalog

RETENTION_KEYS = (
    "name",
    "description",
    "owner",
    "start_event",
    "return_event",
    "period",
    "periods",
    "cohorting",
    "unit",
    "breakdown",
    "min_occurrences",
    "week_start",
    "time_zone",
)
PERIODS = ("hour", "day", "week", "month")
COHORTINGS = ("first_time", "recurring")
UNITS = ("device", "user")
WEEK_STARTS = ("monday", "sunday")
BREAKDOWN_KEYS = ("field", "property", "session", "person")
MAX_PERIODS = 120
MAX_MIN_OCCURRENCES = 1000
MAX_TEXT_LENGTH = 2048
SEED = "retentions.csv"


@dataclass(frozen=True)
class Retention:
    name: str
    description: str
    owner: str
    start_event: EventRef
    return_event: EventRef
    period: str
    periods: int
    cohorting: str = "first_time"
    unit: str = "device"
    breakdown_field: str | None = None
    breakdown_property: str | None = None
    breakdown_session: str | None = None  # a column of the start event's session
    breakdown_person: str | None = None  # a trait of its person, as of its time
    min_occurrences: int = 1
    week_start: str = "monday"
    time_zone: str = "UTC"
    path: str = ""
    line: int = 0
    start_line: int = 0
    return_line: int = 0

    @property
    def has_breakdown(self) -> bool:
        return self.breakdown_label is not None

    @property
    def returns_match_value(self) -> bool:
        """A return counts for a value only with that value: breakdowns by an event's own
        field or property. A session or person breakdown describes the cohort member only."""
        return self.breakdown_field is not None or self.breakdown_property is not None

    @property
    def breakdown_label(self) -> str | None:
        for what, value in (
            ("field", self.breakdown_field),
            ("property", self.breakdown_property),
            ("session", self.breakdown_session),
            ("person", self.breakdown_person),
        ):
            if value is not None:
                return f"{what} {value}"
        return None

    def definitions_used(self) -> frozenset[str]:
        refs = (self.start_event, self.return_event)
        return frozenset(r.definition for r in refs if r.definition is not None)


# -- parsing --------------------------------------------------------------------------------


def parse_retention(
    item: Any, path: str, line: int, index: int
) -> tuple[Retention | None, list[Problem]]:
    """Validate one entry of a ``retention:`` list; return the declaration or the problems.

    Event definitions are checked later, against the whole catalogue (``check_references``).
    """
    report = start_report(item, path, f"retention[{index}]", "retention")
    if not isinstance(item, YamlMap):
        report.add(
            line, f"must be a mapping with keys {', '.join(RETENTION_KEYS)}; got {describe(item)}"
        )
        return None, report.problems
    unknown_keys(item, RETENTION_KEYS, "a retention", report)
    texts = {
        key: required_text(item, key, report, MAX_TEXT_LENGTH)
        for key in ("name", "description", "owner")
    }
    start = _event(item, "start_event", report)
    returned = _event(item, "return_event", report)
    period = _period(item, report)
    periods = whole_number(item, "periods", 1, MAX_PERIODS, None, report)
    cohorting = choice(item, "cohorting", COHORTINGS, "first_time", report)
    unit = choice(item, "unit", UNITS, "device", report)
    breakdown = _breakdown(item, report)
    min_occurrences = whole_number(item, "min_occurrences", 1, MAX_MIN_OCCURRENCES, 1, report)
    week_start = _week_start(item, period, report)
    time_zone = _time_zone(item, report)
    if report.problems or None in (start, returned, period, periods, min_occurrences):
        return None, report.problems
    retention = Retention(
        name=texts["name"],
        description=texts["description"],
        owner=texts["owner"],
        start_event=start,
        return_event=returned,
        period=period,
        periods=periods,
        cohorting=cohorting,
        unit=unit,
        breakdown_field=breakdown.get("field"),
        breakdown_property=breakdown.get("property"),
        breakdown_session=breakdown.get("session"),
        breakdown_person=breakdown.get("person"),
        min_occurrences=min_occurrences,
        week_start=week_start,
        time_zone=time_zone,
        path=path,
        line=item.line,
        start_line=item.line_of("start_event"),
        return_line=item.line_of("return_event"),
    )
    return retention, []


def _event(item: YamlMap, key: str, report: Report) -> EventRef | None:
    if key not in item:
        report.add(
            item.line,
            f"missing required key {key!r} (an event definition, or {{type: ..., name: ...}})",
        )
        return None
    return event_ref(item[key], key, item.line_of(key), report)


def _period(item: YamlMap, report: Report) -> str | None:
    if "period" not in item:
        report.add(item.line, f"missing required key 'period' ({' | '.join(PERIODS)})")
        return None
    value = item["period"]
    if value not in PERIODS:
        report.add(
            item.line_of("period"),
            f"'period' must be one of {', '.join(PERIODS)}; got {describe(value)}",
        )
        return None
    return value


def _breakdown(item: YamlMap, report: Report) -> dict[str, str]:
    """``{source key: name}`` of the breakdown, empty without one (or after a problem)."""
    if "breakdown" not in item:
        return {}
    raw = item["breakdown"]
    line = item.line_of("breakdown")
    if not isinstance(raw, YamlMap) or len(raw) != 1 or next(iter(raw)) not in BREAKDOWN_KEYS:
        report.add(
            line,
            "'breakdown' must be a mapping with exactly one of 'field' (an event field of the "
            "start event), 'property' (one of its properties), 'session' (a column of its "
            "session) and 'person' (a trait of its person)",
        )
        return {}
    key, value = next(iter(raw.items()))
    known = {"field": BREAKDOWN_FIELDS, "session": BREAKDOWN_SESSION_COLUMNS}.get(key)
    if known is not None and value not in known:
        what = "field" if key == "field" else "session column"
        report.add(
            raw.line_of(key),
            f"breakdown.{key}: unknown {what} {describe(value)} (known: {', '.join(known)})",
        )
        return {}
    if known is None and not is_property_name(value):
        what = "a property name" if key == "property" else "a trait name"
        report.add(raw.line_of(key), f"breakdown.{key} must be {what}; got {describe(value)}")
        return {}
    return {key: value}


def _week_start(item: YamlMap, period: str | None, report: Report) -> str:
    if "week_start" not in item:
        return "monday"
    value = choice(item, "week_start", WEEK_STARTS, "monday", report)
    if period is not None and period != "week":
        report.add(
            item.line_of("week_start"),
            f"'week_start' applies to period: week only; this retention's period is {period}",
        )
    return value


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _time_zone(item: YamlMap, report: Report) -> str:
    if "time_zone" not in item:
        return "UTC"
    value = item["time_zone"]
    if not isinstance(value, str) or value not in _known_zones():
        hint = ""
        if isinstance(value, str):
            close = difflib.get_close_matches(value, sorted(_known_zones()), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        report.add(
            item.line_of("time_zone"),
            f"'time_zone' must be an IANA time zone such as Europe/Berlin or UTC; "
            f"got {describe(value)}{hint}",
        )
        return "UTC"
    return value


def check_references(catalog: Catalog) -> list[Problem]:
    """The start and return events must name event definitions of the catalogue."""
    known = {d.name for d in catalog.declarations.get("events", [])}
    problems = []
    for retention in catalog.declarations.get("retention", []):
        for key, ref, line in (
            ("start_event", retention.start_event, retention.start_line),
            ("return_event", retention.return_event, retention.return_line),
        ):
            if ref.definition is None or ref.definition in known:
                continue
            hint = difflib.get_close_matches(ref.definition, sorted(known), n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            problems.append(
                Problem(
                    retention.path,
                    line,
                    f"retention {retention.name!r}: {key}: unknown event definition "
                    f"{ref.definition!r}{suggestion}",
                )
            )
    return problems


# -- compiling ------------------------------------------------------------------------------

COLUMNS = (
    "retention_name",
    "content_hash",
    "description",
    "owner",
    "start_definition",
    "start_type",
    "start_name",
    "return_definition",
    "return_type",
    "return_name",
    "period",
    "periods",
    "cohorting",
    "unit",
    "breakdown_field",
    "breakdown_property",
    "breakdown_session",
    "breakdown_person",
    "min_occurrences",
    "week_start",
    "time_zone",
)


def _semantics(retention: Retention) -> dict[str, Any]:
    """What decides the retention's facts and mart: everything but description and owner."""

    def ref(r: EventRef) -> list[Any]:
        return [r.definition, r.event_type, r.event_name]

    return {
        "name": retention.name,
        "start": ref(retention.start_event),
        "return": ref(retention.return_event),
        "period": retention.period,
        "periods": retention.periods,
        "cohorting": retention.cohorting,
        "unit": retention.unit,
        "breakdown": retention.breakdown_label,
        "min_occurrences": retention.min_occurrences,
        "week_start": retention.week_start,
        "time_zone": retention.time_zone,
    }


def content_hash(retention: Retention) -> str:
    """Changes exactly when what the retention computes changes (not its description/owner)."""
    return hashlib.sha256(sql.canonical_json(_semantics(retention)).encode()).hexdigest()[:16]


def seed_row(retention: Retention) -> dict[str, str]:
    start, back = retention.start_event, retention.return_event
    return {
        "retention_name": retention.name,
        "content_hash": content_hash(retention),
        "description": json_cell(retention.description),
        "owner": json_cell(retention.owner),
        "start_definition": start.definition or "",
        "start_type": start.event_type or "",
        "start_name": json_cell(start.event_name),
        "return_definition": back.definition or "",
        "return_type": back.event_type or "",
        "return_name": json_cell(back.event_name),
        "period": retention.period,
        "periods": str(retention.periods),
        "cohorting": retention.cohorting,
        "unit": retention.unit,
        "breakdown_field": retention.breakdown_field or "",
        "breakdown_property": json_cell(retention.breakdown_property),
        "breakdown_session": retention.breakdown_session or "",
        "breakdown_person": json_cell(retention.breakdown_person),
        "min_occurrences": str(retention.min_occurrences),
        "week_start": retention.week_start,
        "time_zone": retention.time_zone,
    }


def seed_files(retentions: Iterable[Retention]) -> dict[str, str]:
    """The ``retentions`` seed's CSV text by file name."""
    ordered = sorted(retentions, key=lambda r: r.name)
    return {SEED: csv_text(COLUMNS, (seed_row(r) for r in ordered))}


def describe_compiled(retention: Retention) -> str:
    """``retrolytics definitions show NAME`` for a retention: its seed row, one key a line."""
    row = seed_row(retention)
    width = max(len(key) for key in row)
    lines = [f"retention {retention.name} ({retention.path}:{retention.line}) compiles to:"]
    lines += [f"  {key.ljust(width)}  {value}" for key, value in row.items()]
    return "\n".join(lines)
