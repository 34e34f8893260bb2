"""The path semantics, written down once, and a plain-Python reference that follows them.

The dbt models (``fct_paths``, ``mart_path_edges``, ``mart_path_top``) must produce exactly what
this module computes from the same events; the tests compare the two row by row.

The unit's stream
-----------------
The unit is the device (``anonymous_id``) or, with ``unit: user``, the person the event belongs
to at its time (the identity rules of ``retrolytics/semantics/funnels.py``, shared with funnels
and sessions). An event is dropped first if it matches any ``exclude`` entry (even when it also
matches the anchor). Otherwise its *label*, the node it is in a path, is, in this precedence:

1. the anchor's label (the definition's name, or ``type`` / ``custom:<name>`` for a raw type)
   when the event matches the anchor;
2. with ``step_kind: definitions`` or ``both``: the first definition of the declaration's
   ``definitions`` list that the event matches (the list's order is the precedence; without a
   list every event definition is a step, in code-point order of their names, which is
   PostgreSQL's ``"C"`` collation, so ``a_b`` before ``ab``);
3. with ``step_kind: pageviews`` or ``both``: a pageview's ``page_path`` (a pageview without a
   path is no step).

An event with no label is not in the stream: it neither is a step nor keeps a path alive. The
stream is in the order ``occurred_at``, then ``event_id``, then ``anonymous_id``, so events at
the same instant are ordered by their ids, deterministically (PostHog leaves such ties to
ClickHouse's sort; Mixpanel and Amplitude do not document theirs).

Segments
--------
A unit's stream is cut into *segments*: where the time since the previous stream event is
``gap_minutes`` or more (default 30; exactly the gap starts a new segment, as PostHog's
``arraySplit`` with ``x.3 < 1800`` and our sessions do); or, with ``gap: session``, a segment is
the unit's stream events in one session of ``fct_sessions`` (the device's events, *all* of
them, split by 30 minutes of inactivity), so a person's two devices' sessions are two segments
even when they overlap in time. With ``collapse_repeats: true`` (the default, and PostHog's only
behaviour) consecutive events of a segment with the same label are one step at the first one's
time; with ``false`` each event is a step.

Anchoring (PostHog's rules)
---------------------------
``start: X``: a segment's path is its first step labelled X and the steps after it, at most
``steps`` in all (X included). ``end: X``: its first step labelled X and the steps before it, at
most ``steps`` in all. One path per segment: a second X in the same segment starts no second
path (PostHog's ``indexOf`` on the session's path); a segment without X has no path. So a path
never crosses a gap, and ``units`` counts a unit once per edge however many paths it walks,
while ``paths`` counts each segment's path. Mixpanel's Flows count every occurrence of the
anchor (its "totals") and Amplitude's Journeys count paths within sessions; we match PostHog.

Facts and marts
---------------
``fct_paths``: one row per unit and segment (key: path, unit, segment start and its device,
``anonymous_id``: the first event's device, or the session's), with its stream events counted
and, when it holds the anchor, the path's steps and their times. ``mart_path_edges``: per path,
step index k (the source's position in the path, from 1 at its first step: for an ``end`` path
the first shown step, as PostHog numbers them), source and target labels: ``paths`` with that
edge at k, ``units`` distinct units among them, ``median_seconds_between``
(``percentile_cont(0.5)``) of the target's time minus the source's. ``mart_path_top``: the
``top_paths`` most frequent complete paths (the whole step sequence of a path): ``paths``,
``units``, ranked by paths, then units, then the steps joined with U+0001 in code-point order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from retrolytics.language.paths import PathDeclaration
from retrolytics.semantics.funnels import (
    Event,
    _session_event,
    identity_periods,
    matches,
    percentile_cont,
    person_of,
)


@dataclass(frozen=True)
class Segment:
    path_name: str
    unit_id: str
    anonymous_id: str
    segment_start: datetime
    segment_end: datetime
    event_count: int
    steps: tuple[str, ...]  # empty when the segment holds no anchor
    step_times: tuple[datetime, ...]

    @property
    def has_path(self) -> bool:
        return bool(self.steps)


@dataclass(frozen=True)
class Edge:
    path_name: str
    step_index: int
    source: str
    target: str
    paths: int
    units: int
    median_seconds_between: float


@dataclass(frozen=True)
class TopPath:
    path_name: str
    rank: int
    steps: tuple[str, ...]
    step_count: int
    paths: int
    units: int


@dataclass(frozen=True)
class _Item:
    event: Event
    label: str
    segment_key: tuple  # () with a gap in minutes; the session's (device, start) otherwise


def label_of(declaration: PathDeclaration, event: Event, precedence: Sequence[str]) -> str | None:
    """The event's node in a path, or None when it is no step (exclusions aside)."""
    if matches(declaration.anchor, event):
        return declaration.anchor.label
    for name in precedence:
        if name in event.definitions:
            return name
    if declaration.uses_pageviews and event.type == "pageview":
        return event.fields.get("page_path")
    return None


def _order(event: Event) -> tuple:
    return (event.occurred_at, event.event_id, event.anonymous_id.encode())


def unit_streams(
    declaration: PathDeclaration, events: Sequence[Event], known: Iterable[str]
) -> dict[str, list[_Item]]:
    """Each unit's stream (labelled, not excluded events) in stream order."""
    precedence = declaration.step_definitions(known)
    periods = identity_periods(events)
    sessions = {}
    if declaration.gap_minutes is None:
        from retrolytics.semantics import sessions as session_rules

        sessions = session_rules.session_of_events([_session_event(e) for e in events])
    streams: dict[str, list[_Item]] = defaultdict(list)
    for event in events:
        if any(matches(ref, event) for ref in declaration.exclude):
            continue
        label = label_of(declaration, event, precedence)
        if label is None:
            continue
        unit = event.anonymous_id if declaration.unit == "device" else person_of(event, periods)[0]
        key = ()
        if declaration.gap_minutes is None:
            session = sessions[event.event_id]
            key = (session.anonymous_id, session.session_start)
        streams[unit].append(_Item(event, label, key))
    for stream in streams.values():
        stream.sort(key=lambda item: _order(item.event))
    return streams


def _split(declaration: PathDeclaration, stream: list[_Item]) -> list[list[_Item]]:
    if declaration.gap_minutes is None:
        by_session: dict[tuple, list[_Item]] = defaultdict(list)
        for item in stream:
            by_session[item.segment_key].append(item)
        return list(by_session.values())
    gap = timedelta(minutes=declaration.gap_minutes)
    segments: list[list[_Item]] = []
    for item in stream:
        if not segments or item.event.occurred_at - segments[-1][-1].event.occurred_at >= gap:
            segments.append([])
        segments[-1].append(item)
    return segments


def _anchored(declaration: PathDeclaration, steps: list[_Item]) -> list[_Item]:
    labels = [item.label for item in steps]
    anchor = declaration.anchor.label
    if anchor not in labels:
        return []
    at = labels.index(anchor)  # the first occurrence: one path per segment
    if declaration.anchor_at == "start":
        return steps[at : at + declaration.steps]
    return steps[max(0, at - declaration.steps + 1) : at + 1]


def segments(
    declaration: PathDeclaration, events: Sequence[Event], known: Iterable[str] = ()
) -> list[Segment]:
    """fct_paths for one declaration: every segment of every unit, with its path if any."""
    rows = []
    for unit, stream in unit_streams(declaration, events, known).items():
        for segment in _split(declaration, stream):
            steps = segment
            if declaration.collapse_repeats:
                steps = [
                    item for i, item in enumerate(segment)
                    if i == 0 or item.label != segment[i - 1].label
                ]  # fmt: skip
            path = _anchored(declaration, steps)
            first = segment[0]
            device, start = (
                first.segment_key
                if declaration.gap_minutes is None
                else (first.event.anonymous_id, first.event.occurred_at)
            )
            rows.append(
                Segment(
                    path_name=declaration.name,
                    unit_id=unit,
                    anonymous_id=device,
                    segment_start=start,
                    segment_end=segment[-1].event.occurred_at,
                    event_count=len(segment),
                    steps=tuple(item.label for item in path),
                    step_times=tuple(item.event.occurred_at for item in path),
                )
            )
    return rows


def edges(declaration: PathDeclaration, rows: Iterable[Segment]) -> list[Edge]:
    """mart_path_edges for one declaration."""
    found: dict[tuple[int, str, str], list[tuple[str, float]]] = defaultdict(list)
    for row in rows:
        if row.path_name != declaration.name:
            continue
        for k in range(len(row.steps) - 1):
            seconds = (row.step_times[k + 1] - row.step_times[k]).total_seconds()
            found[(k + 1, row.steps[k], row.steps[k + 1])].append((row.unit_id, seconds))
    return [
        Edge(
            path_name=declaration.name,
            step_index=index,
            source=source,
            target=target,
            paths=len(walked),
            units=len({unit for unit, _ in walked}),
            median_seconds_between=percentile_cont([s for _, s in walked], 0.5) or 0.0,
        )
        for (index, source, target), walked in found.items()
    ]


def top_paths(declaration: PathDeclaration, rows: Iterable[Segment]) -> list[TopPath]:
    """mart_path_top for one declaration."""
    found: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for row in rows:
        if row.path_name == declaration.name and row.has_path:
            found[row.steps].append(row.unit_id)
    ranked = sorted(
        found.items(), key=lambda kv: (-len(kv[1]), -len(set(kv[1])), "\x01".join(kv[0]))
    )
    return [
        TopPath(declaration.name, rank, steps, len(steps), len(units), len(set(units)))
        for rank, (steps, units) in enumerate(ranked[: declaration.top_paths], start=1)
    ]
