"""Funnels: the language, its validator, and the seeds it compiles to.

A file under ``definitions/funnels/`` holds a list under ``funnels:``::

    funnels:
      - name: browse_to_purchase            # snake_case, unique across all funnel files
        description: From a product page to a confirmed order.
        owner: growth
        steps:                              # 2 to 20 steps
          - viewed_product                  # an event definition (definitions/events)
          - event: added_to_cart            # the same, written as a mapping with options
            within: 2h                      # reached at most 2h after the previous step
          - type: custom                    # a raw event type (and, for custom, its name)
            name: purchase_completed
        conversion_window: 7d               # from entering (step 1) to the last step
        order: ordered                      # ordered (default) | strict | unordered
        unit: user                          # device (default) | user (after identity stitching)
                                            # | session (an attempt never leaves its session)
        breakdown:                          # optional: one value per entry
          field: utm_source                 # an event field, `property: <name>`,
                                            # `session: <fct_sessions column>` or
                                            # `person: <trait>` (as of the event's time)
          attribution: first_touch          # first_touch (default) | last_touch | step_N |
                                            # all_events: the first / last non-empty value of
                                            # the attempt's steps, step N's event's value, or
                                            # each value's events walked apart
          unreached: keep                   # step_N only: keep (default: under `(none)`) |
                                            # leave_out (units short of step N in no value's row)
        exclusions:                         # optional: disqualify an attempt
          - event: removed_from_cart
            between: [added_to_cart, 3]     # steps by name or number; default first and last
                                            # (unordered: only the whole funnel, [1, N])
        exclusion_scope: window             # window (default): while the attempt is alive |
                                            # until_step: also after its deadline, up to its
                                            # step `between` ends at (ordered, unordered)
        hold_constant: [category]           # optional: properties equal on every step
        entries: sequential                 # sequential (default): a step 1 inside a live
                                            # attempt starts nothing | every_entry: each one
                                            # opens a window of its own (ordered and strict
                                            # only; ClickHouse windowFunnel, PostHog)
        broken_by: step_events              # strict only: step_events (default): an event
                                            # matching a step out of order ends the attempt |
                                            # any_event: so does any other event of the unit
                                            # (PostHog's strict funnels)

Durations are a whole number and a unit: ``s``, ``m``, ``h``, ``d`` or ``w`` (``30m``, ``7d``).
``conversion_window`` also takes calendar months, ``1mo`` to ``12mo`` (PostHog's ``month``
conversion window unit): the deadline is the entry's UTC date and time that many months later,
on the month's last day when it is shorter (Jan 31 + 1mo = Feb 28 or 29, same time of day).
What a funnel *means* (entries, re-entry, ties, windows, exclusions) is written down once, in
``retrolytics/semantics/funnels.py`` and the description of ``fct_funnel_entries``.

Compiling writes two dbt seeds, ``funnels`` (one row per funnel) and ``funnel_steps`` (one row
per step and per exclusion): data that generic SQL reads, never SQL text.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingestion.contract import EventType
from retrolytics.language import sql
from retrolytics.language.seed_format import csv_text, json_cell
from retrolytics.language.sources import Problem, YamlList, YamlMap
from retrolytics.language.validation import (
    Report,
    choice,
    describe,
    is_name,
    is_property_name,
    required_text,
    start_report,
    unknown_keys,
)

if TYPE_CHECKING:  # the catalogue is built by check.py, which imports this module
    from retrolytics.language.check import Catalog

FUNNEL_KEYS = (
    "name",
    "description",
    "owner",
    "steps",
    "conversion_window",
    "order",
    "unit",
    "breakdown",
    "exclusions",
    "hold_constant",
    "entries",
    "exclusion_scope",
    "broken_by",
)
STEP_KEYS = ("event", "type", "name", "within")
EXCLUSION_KEYS = ("event", "type", "name", "between")
BREAKDOWN_SOURCES = ("field", "property", "session", "person")
BREAKDOWN_KEYS = (*BREAKDOWN_SOURCES, "attribution", "unreached")
# For step_N attribution, what becomes of attempts that never reached step N: counted under
# `(none)` (keep), or in no breakdown value's row, only in `(all)` (leave_out, PostHog's rule).
UNREACHED = ("keep", "leave_out")
ORDERS = ("ordered", "strict", "unordered")
# How long an exclusion can disqualify an attempt: while it is alive (window, PostHog's funnels
# today), or also after its deadline, until the step its `between` ends at (until_step,
# PostHog's funnels before its UDF). retrolytics/semantics/funnels.py has the rule.
EXCLUSION_SCOPES = ("window", "until_step")
UNITS = ("device", "user", "session")
# Whether a step-1 event inside a live attempt opens a window of its own (every_entry: the best
# window over every step-1 event, as ClickHouse's windowFunnel and PostHog's funnel UDF count).
ENTRIES = ("sequential", "every_entry")
# Which events of the unit break a strict attempt: those matching a step (step_events), or every
# event, whatever its type (any_event, PostHog's strict funnels). retrolytics/semantics/funnels.py.
BROKEN_BY = ("step_events", "any_event")
EVENT_TYPES = tuple(t.value for t in EventType)
# Event columns a breakdown may read (the entry event's, or the attributed step's).
BREAKDOWN_FIELDS = (
    "type",
    "name",
    "page_url",
    "page_path",
    "page_title",
    "referrer",
    "target_text",
    "target_href",
    "utm_source",
    "utm_medium",
    "utm_campaign",
)
# Columns of fct_sessions a breakdown may read (of the session of the attributed event).
BREAKDOWN_SESSION_COLUMNS = (
    "landing_page",
    "exit_page",
    "referrer",
    "referrer_host",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "browser_family",
    "os_family",
    "device_family",
)
MIN_STEPS = 2
MAX_STEPS = 20
MAX_HOLD_CONSTANT = 5
MAX_WINDOW_SECONDS = 366 * 86_400
MAX_TEXT_LENGTH = 2048
DURATION_PATTERN = re.compile(r"([0-9]{1,9})\s*([smhdw])")
MONTHS_PATTERN = re.compile(r"([0-9]{1,9})\s*mo")
MAX_WINDOW_MONTHS = 12
SHORTEST_MONTH_SECONDS = 28 * 86_400
DURATION_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
ATTRIBUTION_PATTERN = re.compile(r"first_touch|last_touch|all_events|step_([0-9]{1,2})")


# -- the declarations -----------------------------------------------------------------------


@dataclass(frozen=True)
class EventRef:
    """What a step or an exclusion matches: an event definition, or a raw event type."""

    definition: str | None = None
    event_type: str | None = None
    event_name: str | None = None  # custom events only

    @property
    def label(self) -> str:
        if self.definition is not None:
            return self.definition
        if self.event_name is not None:
            return f"{self.event_type}:{self.event_name}"
        return str(self.event_type)


@dataclass(frozen=True)
class Step:
    event: EventRef
    within_seconds: int | None = None  # at most this long after the previous step
    line: int = 0


@dataclass(frozen=True)
class Exclusion:
    event: EventRef
    from_step: int  # 1-based: the attempt is disqualified after reaching this step…
    to_step: int  # …and before reaching this one
    line: int = 0


@dataclass(frozen=True)
class Breakdown:
    field: str | None = None
    property_name: str | None = None
    session_column: str | None = None  # of the event's session (fct_sessions)
    person_trait: str | None = None  # of the event's person, as of the event's time
    attribution: str = "first_touch"  # first_touch | last_touch | all_events | step
    attribution_step: int | None = None  # for attribution "step"
    unreached: str = "keep"  # for attribution "step": keep | leave_out

    @property
    def label(self) -> str:
        if self.field is not None:
            what = self.field
        elif self.session_column is not None:
            what = f"session {self.session_column}"
        elif self.person_trait is not None:
            what = f"person {self.person_trait}"
        else:
            what = f"property {self.property_name}"
        how = f"step_{self.attribution_step}" if self.attribution == "step" else self.attribution
        if self.unreached != "keep":
            how += f", unreached: {self.unreached}"
        return f"{what} ({how})"


@dataclass(frozen=True)
class Funnel:
    name: str
    description: str
    owner: str
    steps: tuple[Step, ...]
    conversion_window_seconds: int  # 0 when the window is in calendar months
    order: str = "ordered"
    unit: str = "device"
    breakdown: Breakdown | None = None
    exclusions: tuple[Exclusion, ...] = ()
    hold_constant: tuple[str, ...] = ()
    path: str = ""
    line: int = 0
    conversion_window_months: int = 0  # a calendar window (``1mo``): replaces the seconds
    entries: str = "sequential"  # sequential | every_entry
    exclusion_scope: str = "window"  # window | until_step (EXCLUSION_SCOPES)
    broken_by: str = "step_events"  # step_events | any_event (BROKEN_BY; strict only)

    @property
    def window_label(self) -> str:
        if self.conversion_window_months:
            return f"{self.conversion_window_months}mo"
        return format_duration(self.conversion_window_seconds)

    @property
    def options_label(self) -> str:
        """The declared options in one line, defaults included where they decide the numbers:
        ``ordered, per user, 7d window, breakdown utm_source (first_touch)``."""
        parts = [self.order, f"per {self.unit}", f"{self.window_label} window"]
        if self.entries != "sequential":
            parts.append(f"entries: {self.entries}")
        if self.broken_by != "step_events":
            parts.append(f"broken_by: {self.broken_by}")
        if self.hold_constant:
            parts.append(f"hold_constant: {', '.join(self.hold_constant)}")
        if self.exclusions:
            count = len(self.exclusions)
            noun = "exclusion" if count == 1 else "exclusions"
            parts.append(f"{count} {noun} (exclusion_scope: {self.exclusion_scope})")
        if self.breakdown is not None:
            parts.append(f"breakdown {self.breakdown.label}")
        return ", ".join(parts)

    def definitions_used(self) -> frozenset[str]:
        """The event definitions the funnel reads (steps and exclusions)."""
        refs = [s.event for s in self.steps] + [x.event for x in self.exclusions]
        return frozenset(r.definition for r in refs if r.definition is not None)


# -- parsing --------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else describe(value)


def parse_funnel(
    item: Any, path: str, line: int, index: int
) -> tuple[Funnel | None, list[Problem]]:
    """Validate one entry of a ``funnels:`` list; return the funnel or the problems.

    References to event definitions are checked later, against the whole catalogue
    (``check_references``), because definitions live in other files.
    """
    report = start_report(item, path, f"funnels[{index}]", "funnel")
    if not isinstance(item, YamlMap):
        report.add(
            line, f"must be a mapping with keys {', '.join(FUNNEL_KEYS)}; got {describe(item)}"
        )
        return None, report.problems
    unknown_keys(item, FUNNEL_KEYS, "a funnel", report)
    texts = {
        key: required_text(item, key, report, MAX_TEXT_LENGTH)
        for key in ("name", "description", "owner")
    }
    order = choice(item, "order", ORDERS, "ordered", report)
    unit = choice(item, "unit", UNITS, "device", report)
    window, window_months = _conversion_window(item, report)
    steps = _steps(item, order, window, window_months, report)
    exclusions = _exclusions(item, steps, order, report) if steps else ()
    exclusion_scope = _exclusion_scope(item, order, report)
    breakdown = _breakdown(item, len(steps or ()), report)
    hold_constant = _hold_constant(item, report)
    entries = _entries(item, order, report)
    broken_by = _broken_by(item, order, report)
    if report.problems or steps is None or window is None or window_months is None:
        return None, report.problems
    funnel = Funnel(
        name=texts["name"],
        description=texts["description"],
        owner=texts["owner"],
        steps=steps,
        conversion_window_seconds=window,
        order=order,
        unit=unit,
        breakdown=breakdown,
        exclusions=exclusions,
        hold_constant=hold_constant,
        path=path,
        line=item.line,
        conversion_window_months=window_months,
        entries=entries,
        exclusion_scope=exclusion_scope,
        broken_by=broken_by,
    )
    return funnel, []


def parse_duration(text: Any) -> int:
    """Seconds in a duration such as ``30m`` or ``7d``; ``ValueError`` says what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"must be a duration such as 30m, 2h or 7d; got {describe(text)}")
    match = DURATION_PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: write a whole number and one of s, m, h, d, w "
            "(30m, 2h, 7d)"
        )
    seconds = int(match.group(1)) * DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r} is zero; a window must be longer than that")
    if seconds > MAX_WINDOW_SECONDS:
        raise ValueError(f"{text!r} is longer than the longest window allowed, 366d")
    return seconds


def format_duration(seconds: int) -> str:
    for unit in ("w", "d", "h", "m"):
        if seconds % DURATION_UNITS[unit] == 0:
            return f"{seconds // DURATION_UNITS[unit]}{unit}"
    return f"{seconds}s"


def parse_months(text: Any) -> int | None:
    """Months in a calendar window such as ``1mo``; None when ``text`` is not one.
    ``ValueError`` when it is written as months but is not a whole number from 1 to 12."""
    if not isinstance(text, str) or not text.strip().endswith("mo"):
        return None
    match = MONTHS_PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a number of months: write a whole number, as in 1mo")
    months = int(match.group(1))
    if not 1 <= months <= MAX_WINDOW_MONTHS:
        raise ValueError(f"{text!r}: a calendar window is 1mo to {MAX_WINDOW_MONTHS}mo")
    return months


def _conversion_window(item: YamlMap, report: Report) -> tuple[int | None, int | None]:
    """(seconds, months) of the conversion window: one of them is 0; None where invalid."""
    if "conversion_window" not in item:
        report.add(item.line, "missing required key 'conversion_window' (a duration such as 7d)")
        return None, None
    raw = item["conversion_window"]
    try:
        months = parse_months(raw)
        if months is not None:
            return 0, months
        return parse_duration(raw), 0
    except ValueError as exc:
        report.add(item.line_of("conversion_window"), f"conversion_window: {exc}")
        return None, None


def event_ref(raw: Any, where: str, line: int, report: Report) -> EventRef | None:
    """An event reference (a funnel's step or exclusion, a retention's start or return event):
    ``name``, ``{event: name}`` or ``{type: t[, name: n]}``."""
    if isinstance(raw, str):
        return _definition_ref(raw, where, line, report)
    if not isinstance(raw, YamlMap):
        report.add(
            line,
            f"{where} must be an event definition name or a mapping with 'event' or 'type'; "
            f"got {describe(raw)}",
        )
        return None
    has_event, has_type = "event" in raw, "type" in raw
    if has_event == has_type:
        report.add(
            raw.line,
            f"{where} needs exactly one of 'event' (an event definition) and 'type' (a raw "
            "event type)",
        )
        return None
    if has_event:
        if "name" in raw:
            report.add(
                raw.key_lines["name"], f"{where}.name goes with 'type: custom', not with 'event'"
            )
            return None
        return _definition_ref(raw["event"], f"{where}.event", raw.line_of("event"), report)
    event_type = raw["type"]
    if event_type not in EVENT_TYPES:
        report.add(
            raw.line_of("type"),
            f"{where}.type: unknown event type {_shown(event_type)} "
            f"(known: {', '.join(EVENT_TYPES)})",
        )
        return None
    name = raw.get("name")
    if name is not None and (event_type != "custom" or not isinstance(name, str) or not name):
        report.add(
            raw.line_of("name"),
            f"{where}.name must be a non-empty string, and only a custom event has one",
        )
        return None
    if isinstance(name, str) and ("\x00" in name or len(name) > 200):
        report.add(raw.line_of("name"), f"{where}.name must be at most 200 characters without NUL")
        return None
    return EventRef(event_type=event_type, event_name=name)


def _definition_ref(value: Any, where: str, line: int, report: Report) -> EventRef | None:
    if not is_name(value):
        report.add(
            line, f"{where} must name an event definition (snake_case); got {describe(value)}"
        )
        return None
    return EventRef(definition=value)


def _steps(
    item: YamlMap, order: str, window: int | None, window_months: int | None, report: Report
) -> tuple[Step, ...] | None:
    if "steps" not in item:
        report.add(item.line, f"missing required key 'steps' ({MIN_STEPS} to {MAX_STEPS} steps)")
        return None
    raw_steps = item["steps"]
    line = item.line_of("steps")
    if not isinstance(raw_steps, YamlList):
        report.add(
            line,
            f"'steps' must be a list of {MIN_STEPS} to {MAX_STEPS} steps; "
            f"got {describe(raw_steps)}",
        )
        return None
    if not MIN_STEPS <= len(raw_steps) <= MAX_STEPS:
        report.add(
            line, f"a funnel has {MIN_STEPS} to {MAX_STEPS} steps; this one has {len(raw_steps)}"
        )
        return None
    steps = []
    before = len(report.problems)
    for index, raw in enumerate(raw_steps):
        where = f"step {index + 1}"
        step_line = raw_steps.line_of(index)
        within = None
        if isinstance(raw, YamlMap):
            for key in raw:
                if key not in STEP_KEYS:
                    report.add(
                        raw.key_lines[key],
                        f"unknown key {key!r} in {where} (allowed: {', '.join(STEP_KEYS)})",
                    )
            if "within" in raw:
                within = _step_window(raw, index, order, window, window_months, where, report)
        ref = event_ref(raw, where, step_line, report)
        if ref is not None:
            steps.append(Step(event=ref, within_seconds=within, line=step_line))
    if len(report.problems) > before:
        return None
    return tuple(steps)


def _step_window(
    raw: YamlMap,
    index: int,
    order: str,
    window: int | None,
    window_months: int | None,
    where: str,
    report: Report,
) -> int | None:
    line = raw.line_of("within")
    if index == 0:
        report.add(line, f"{where}.within: the first step has no previous step to be within")
        return None
    if order == "unordered":
        report.add(
            line, f"{where}.within: an unordered funnel has no previous step; use conversion_window"
        )
        return None
    try:
        if parse_months(raw["within"]) is not None:
            raise ValueError(
                "months are for conversion_window only; write a step's bound in s, m, h, d or w"
            )
        seconds = parse_duration(raw["within"])
    except ValueError as exc:
        report.add(line, f"{where}.within: {exc}")
        return None
    if window_months:  # a calendar window is at least its months of 28 days
        shortest = window_months * SHORTEST_MONTH_SECONDS
        if seconds > shortest:
            report.add(
                line,
                f"{where}.within ({format_duration(seconds)}) is longer than the conversion_window "
                f"({window_months}mo) in a short month ({format_duration(shortest)})",
            )
            return None
    elif window is not None and seconds > window:
        report.add(
            line,
            f"{where}.within ({format_duration(seconds)}) is longer than the conversion_window "
            f"({format_duration(window)}), so it would never apply",
        )
        return None
    return seconds


def _exclusions(
    item: YamlMap, steps: tuple[Step, ...], order: str, report: Report
) -> tuple[Exclusion, ...]:
    if "exclusions" not in item:
        return ()
    raw_list = item["exclusions"]
    line = item.line_of("exclusions")
    if not isinstance(raw_list, YamlList) or not raw_list:
        report.add(line, f"'exclusions' must be a non-empty list; got {describe(raw_list)}")
        return ()
    exclusions = []
    for index, raw in enumerate(raw_list):
        where = f"exclusions[{index}]"
        item_line = raw_list.line_of(index)
        if not isinstance(raw, YamlMap):
            report.add(
                item_line, f"{where} must be a mapping with 'event' (or 'type') and 'between'"
            )
            continue
        for key in raw:
            if key not in EXCLUSION_KEYS:
                report.add(
                    raw.key_lines[key],
                    f"unknown key {key!r} in {where} (allowed: {', '.join(EXCLUSION_KEYS)})",
                )
        ref = event_ref(raw, where, item_line, report)
        bounds = _between(raw, steps, where, report)
        if ref is None or bounds is None:
            continue
        first, last = bounds
        if order == "unordered" and (first, last) != (1, len(steps)):
            report.add(
                raw.line_of("between"),
                f"{where}.between: an unordered funnel's exclusions span the whole funnel "
                f"([1, {len(steps)}], the default), as its steps have no order (PostHog "
                "refuses partial exclusions in unordered funnels too)",
            )
            continue
        # Unordered: any step may be the first, so none may be the excluded event.
        inside = range(1, last + 1) if order == "unordered" else range(first + 1, last + 1)
        for number in inside:
            if steps[number - 1].event == ref:
                report.add(
                    item_line,
                    f"{where}: {ref.label} is step {number}, inside the range it excludes "
                    f"(after step {first}, before step {last}); every attempt reaching step "
                    f"{number} would be excluded",
                )
                break
        else:
            exclusions.append(Exclusion(ref, first, last, item_line))
    return tuple(exclusions)


def _exclusion_scope(item: YamlMap, order: str, report: Report) -> str:
    """``exclusion_scope``: with exclusions, and ``until_step`` not on a strict funnel."""
    scope = choice(item, "exclusion_scope", EXCLUSION_SCOPES, "window", report)
    if "exclusion_scope" not in item or scope == "window":
        return scope
    line = item.line_of("exclusion_scope")
    if "exclusions" not in item:
        report.add(line, "'exclusion_scope' goes with 'exclusions'; this funnel has none")
    elif order == "strict":
        report.add(
            line,
            "'exclusion_scope: until_step' needs an ordered or unordered funnel: a strict "
            "attempt ends at the first step out of order, so nothing follows it to wait for "
            "(PostHog's strict funnels before its UDF ignored exclusions)",
        )
    elif item.get("entries") == "every_entry":
        report.add(
            line,
            "'exclusion_scope: until_step' goes with 'entries: sequential' (PostHog's funnels "
            "before its UDF, whose rule it is, entered sequentially; every_entry is its UDF's)",
        )
    return scope


def _between(
    raw: YamlMap, steps: tuple[Step, ...], where: str, report: Report
) -> tuple[int, int] | None:
    if "between" not in raw:
        return 1, len(steps)
    value = raw["between"]
    line = raw.line_of("between")
    if not isinstance(value, list) or len(value) != 2:
        report.add(
            line,
            f"{where}.between must be two steps, [from, to], by name or number; "
            f"got {describe(value)}",
        )
        return None
    numbers = [_step_number(v, steps, f"{where}.between", line, report) for v in value]
    if None in numbers:
        return None
    first, last = numbers
    assert first is not None and last is not None
    if first >= last:
        report.add(line, f"{where}.between: step {first} must come before step {last}")
        return None
    return first, last


def _step_number(
    value: Any, steps: tuple[Step, ...], where: str, line: int, report: Report
) -> int | None:
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        if not 1 <= value <= len(steps):
            report.add(line, f"{where}: there is no step {value} (steps are 1 to {len(steps)})")
            return None
        return value
    if isinstance(value, str):
        numbers = [i + 1 for i, s in enumerate(steps) if s.event.label == value]
        if len(numbers) == 1:
            return numbers[0]
        if numbers:
            report.add(line, f"{where}: {value!r} is steps {numbers}; give the step number instead")
        else:
            report.add(line, f"{where}: {value!r} is not one of the funnel's steps")
        return None
    report.add(line, f"{where}: a step is a name or a number; got {describe(value)}")
    return None


def _breakdown(item: YamlMap, step_count: int, report: Report) -> Breakdown | None:
    if "breakdown" not in item:
        return None
    raw = item["breakdown"]
    line = item.line_of("breakdown")
    if not isinstance(raw, YamlMap):
        report.add(
            line,
            "'breakdown' must be a mapping with 'field', 'property', 'session' or 'person'; "
            f"got {describe(raw)}",
        )
        return None
    for key in raw:
        if key not in BREAKDOWN_KEYS:
            report.add(
                raw.key_lines[key],
                f"unknown key {key!r} in breakdown (allowed: {', '.join(BREAKDOWN_KEYS)})",
            )
    if sum(key in raw for key in BREAKDOWN_SOURCES) != 1:
        report.add(
            raw.line,
            "breakdown needs exactly one of 'field' (an event field), 'property', 'session' "
            "(a session column) and 'person' (a person trait)",
        )
        return None
    if not _breakdown_source_valid(raw, report):
        return None
    attribution = raw.get("attribution", "first_touch")
    match = ATTRIBUTION_PATTERN.fullmatch(attribution) if isinstance(attribution, str) else None
    if match is None:
        report.add(
            raw.line_of("attribution"),
            "breakdown.attribution must be first_touch, last_touch, all_events or step_N; "
            f"got {describe(attribution)}",
        )
        return None
    step = int(match.group(1)) if match.group(1) else None
    if step is not None and step_count and not 1 <= step <= step_count:
        report.add(
            raw.line_of("attribution"),
            f"breakdown.attribution: there is no step {step} (steps are 1 to {step_count})",
        )
        return None
    unreached = _unreached(raw, step, report)
    if unreached is None:
        return None
    return Breakdown(
        field=raw.get("field"),
        property_name=raw.get("property"),
        session_column=raw.get("session"),
        person_trait=raw.get("person"),
        attribution="step" if step is not None else attribution,
        attribution_step=step,
        unreached=unreached,
    )


def _unreached(raw: YamlMap, step: int | None, report: Report) -> str | None:
    """``breakdown.unreached``: only beside step_N attribution; None when invalid."""
    if "unreached" not in raw:
        return "keep"
    value = raw["unreached"]
    line = raw.line_of("unreached")
    if value not in UNREACHED:
        report.add(
            line,
            f"breakdown.unreached must be one of {', '.join(UNREACHED)}; got {describe(value)}",
        )
        return None
    if step is None:
        report.add(
            line,
            "breakdown.unreached goes with attribution step_N (the other attributions always "
            "have a step to read)",
        )
        return None
    return value


def _breakdown_source_valid(raw: YamlMap, report: Report) -> bool:
    """The one source key present names something a breakdown can read."""
    for key, known in (("field", BREAKDOWN_FIELDS), ("session", BREAKDOWN_SESSION_COLUMNS)):
        if key in raw and raw[key] not in known:
            what = "field" if key == "field" else "session column"
            report.add(
                raw.line_of(key),
                f"breakdown.{key}: unknown {what} {_shown(raw[key])} (known: {', '.join(known)})",
            )
            return False
    for key, what in (("property", "a property name"), ("person", "a trait name")):
        if key in raw and not is_property_name(raw[key]):
            report.add(
                raw.line_of(key), f"breakdown.{key} must be {what}; got {describe(raw[key])}"
            )
            return False
    return True


def _hold_constant(item: YamlMap, report: Report) -> tuple[str, ...]:
    if "hold_constant" not in item:
        return ()
    value = item["hold_constant"]
    line = item.line_of("hold_constant")
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(is_property_name(n) for n in names):
        report.add(
            line,
            f"'hold_constant' must be a property name or a list of them; got {describe(value)}",
        )
        return ()
    if len(set(names)) != len(names):
        report.add(line, "'hold_constant' names a property twice")
        return ()
    if len(names) > MAX_HOLD_CONSTANT:
        report.add(line, f"'hold_constant' holds at most {MAX_HOLD_CONSTANT} properties")
        return ()
    return tuple(names)


def _entries(item: YamlMap, order: str, report: Report) -> str:
    """``entries``: every_entry only where a window starts at step 1 (ordered, strict)."""
    entries = choice(item, "entries", ENTRIES, "sequential", report)
    if entries == "every_entry" and order == "unordered":
        report.add(
            item.line_of("entries"),
            "entries: every_entry needs an ordered or strict funnel: an unordered attempt "
            "enters at any step, so there is no step-1 event to open each window at",
        )
    return entries


def _broken_by(item: YamlMap, order: str, report: Report) -> str:
    """``broken_by``: which events break a strict attempt; strict funnels only."""
    broken_by = choice(item, "broken_by", BROKEN_BY, "step_events", report)
    if "broken_by" in item and order != "strict":
        report.add(
            item.line_of("broken_by"),
            f"'broken_by' needs 'order: strict'; this funnel is {order}: only a strict attempt "
            "is broken by an event in between (an ordered one skips other events, an unordered "
            "one takes its steps in any order)",
        )
    return broken_by


def check_references(catalog: Catalog) -> list[Problem]:
    """Every step and exclusion must name an event definition of the catalogue."""
    known = {d.name for d in catalog.declarations.get("events", [])}
    problems = []
    for funnel in catalog.declarations.get("funnels", []):
        refs = [(f"step {i + 1}", s.event, s.line) for i, s in enumerate(funnel.steps)]
        refs += [(f"exclusions[{i}]", x.event, x.line) for i, x in enumerate(funnel.exclusions)]
        for where, ref, line in refs:
            if ref.definition is None or ref.definition in known:
                continue
            hint = difflib.get_close_matches(ref.definition, sorted(known), n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            problems.append(
                Problem(
                    funnel.path,
                    line,
                    f"funnel {funnel.name!r}: {where}: unknown event definition "
                    f"{ref.definition!r}{suggestion}",
                )
            )
    return problems


# -- compiling ------------------------------------------------------------------------------

FUNNEL_COLUMNS = (
    "funnel_name",
    "content_hash",
    "description",
    "owner",
    "step_count",
    "conversion_window_seconds",
    "conversion_window_months",
    "order_mode",
    "unit",
    "breakdown_field",
    "breakdown_property",
    "breakdown_session",
    "breakdown_person",
    "attribution",
    "attribution_step",
    "attribution_unreached",
    "hold_constant",
    "entries",
    "exclusion_scope",
    "broken_by",
)
STEP_COLUMNS = (
    "funnel_name",
    "role",
    "position",
    "label",
    "definition_name",
    "event_type",
    "event_name",
    "within_seconds",
    "from_step",
    "to_step",
)
# As in the event definitions seed: free text travels as JSON strings (jsonb columns), because
# dbt reads the CSV cells '', 'null' and ' NULL ' as SQL NULL.
FUNNELS_SEED = "funnels.csv"
FUNNEL_STEPS_SEED = "funnel_steps.csv"


def _semantics(funnel: Funnel) -> dict[str, Any]:
    """What decides the funnel's facts: everything but description and owner."""

    def ref(r: EventRef) -> list[Any]:
        return [r.definition, r.event_type, r.event_name]

    breakdown = funnel.breakdown
    return {
        "name": funnel.name,
        "steps": [[ref(s.event), s.within_seconds] for s in funnel.steps],
        "window": funnel.conversion_window_seconds,
        "order": funnel.order,
        # Only when used, so the hashes of funnels declared before months existed stay.
        **(
            {"window_months": funnel.conversion_window_months}
            if funnel.conversion_window_months
            else {}
        ),
        "unit": funnel.unit,
        "breakdown": None if breakdown is None else _breakdown_semantics(breakdown),
        "exclusions": [[ref(x.event), x.from_step, x.to_step] for x in funnel.exclusions],
        "hold_constant": list(funnel.hold_constant),
        # Only when used, so the hashes of funnels declared before it existed stay.
        **({"entries": funnel.entries} if funnel.entries != "sequential" else {}),
        # Only when not the default, so the hashes of funnels declared before it stay.
        **(
            {"exclusion_scope": funnel.exclusion_scope}
            if funnel.exclusion_scope != "window"
            else {}
        ),
        # Only when not the default, so the hashes of funnels declared before it stay.
        **({"broken_by": funnel.broken_by} if funnel.broken_by != "step_events" else {}),
    }


def _breakdown_semantics(breakdown: Breakdown) -> list[Any]:
    described = [
        breakdown.field,
        breakdown.property_name,
        breakdown.attribution,
        breakdown.attribution_step,
    ]
    # Appended only when used, so the hashes of funnels declared before these existed stay.
    if breakdown.session_column is not None or breakdown.person_trait is not None:
        described += [breakdown.session_column, breakdown.person_trait]
    if breakdown.attribution in ("first_touch", "last_touch"):
        # Their rule changed (the first / last non-empty value, no longer the entry's or the
        # last step's own): the facts of funnels declared before must re-derive.
        described.append("non_empty")
    if breakdown.unreached != "keep":
        described.append({"unreached": breakdown.unreached})
    return described


def content_hash(funnel: Funnel) -> str:
    """Changes exactly when what the funnel computes changes (not its description or owner).

    The facts also re-derive when a definition the funnel reads changes: the model combines
    this hash with the definitions' hashes (``int_funnel_versions``).
    """
    return hashlib.sha256(sql.canonical_json(_semantics(funnel)).encode()).hexdigest()[:16]


def funnel_row(funnel: Funnel) -> dict[str, str]:
    breakdown = funnel.breakdown or Breakdown()
    return {
        "funnel_name": funnel.name,
        "content_hash": content_hash(funnel),
        "description": json_cell(funnel.description),
        "owner": json_cell(funnel.owner),
        "step_count": str(len(funnel.steps)),
        "conversion_window_seconds": str(funnel.conversion_window_seconds),
        "conversion_window_months": str(funnel.conversion_window_months),
        "order_mode": funnel.order,
        "unit": funnel.unit,
        "breakdown_field": breakdown.field or "",
        "breakdown_property": json_cell(breakdown.property_name),
        "breakdown_session": breakdown.session_column or "",
        "breakdown_person": json_cell(breakdown.person_trait),
        "attribution": breakdown.attribution if funnel.breakdown else "",
        "attribution_step": ""
        if breakdown.attribution_step is None
        else str(breakdown.attribution_step),
        "attribution_unreached": breakdown.unreached if breakdown.attribution == "step" else "",
        "hold_constant": json_cell(list(funnel.hold_constant)),
        "entries": funnel.entries,
        "exclusion_scope": funnel.exclusion_scope,
        "broken_by": funnel.broken_by,
    }


def _ref_cells(ref: EventRef) -> dict[str, str]:
    return {
        "label": json_cell(ref.label),
        "definition_name": ref.definition or "",
        "event_type": ref.event_type or "",
        "event_name": json_cell(ref.event_name),
    }


def step_rows(funnel: Funnel) -> list[dict[str, str]]:
    rows = []
    for position, step in enumerate(funnel.steps, start=1):
        rows.append(
            {
                "funnel_name": funnel.name,
                "role": "step",
                "position": str(position),
                **_ref_cells(step.event),
                "within_seconds": "" if step.within_seconds is None else str(step.within_seconds),
                "from_step": "",
                "to_step": "",
            }
        )
    for position, exclusion in enumerate(funnel.exclusions, start=1):
        rows.append(
            {
                "funnel_name": funnel.name,
                "role": "exclusion",
                "position": str(position),
                **_ref_cells(exclusion.event),
                "within_seconds": "",
                "from_step": str(exclusion.from_step),
                "to_step": str(exclusion.to_step),
            }
        )
    return rows


def seed_files(funnels: Iterable[Funnel]) -> dict[str, str]:
    """The two seeds' CSV text by file name (``retrolytics definitions compile`` writes them
    into ``dbt_project/seeds``)."""
    ordered = sorted(funnels, key=lambda f: f.name)
    return {
        FUNNELS_SEED: csv_text(FUNNEL_COLUMNS, (funnel_row(f) for f in ordered)),
        FUNNEL_STEPS_SEED: csv_text(STEP_COLUMNS, (r for f in ordered for r in step_rows(f))),
    }
