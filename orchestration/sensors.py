"""The sensor that notices edited declarations and re-derives only what they affect.

Every tick it reads ``definitions/``, computes one content hash per declaration (for an event
definition the hash of what it *matches*, the same ``content_hash`` the seed and the
``defined_events`` ledger carry, so rewording a description re-derives nothing) and compares
them with the hashes stored in the sensor's cursor. When something changed it launches one run
of today's partition selecting the seed the changed kind compiles into and everything
downstream of it, minus the per-funnel assets of funnels the change does not touch. The models
then re-derive the changed declarations over all history themselves (their ledgers compare
content hashes), and only those.

The first tick only records the hashes: the schedules build the initial state. Upstream assets
that were never materialized (a fresh deployment) join the run, so it never reads a table that
does not exist yet.
Invalid files launch nothing; the tick is skipped with the validator's ``file:line`` messages.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from orchestration.assets.dbt import EVENT_DEFINITIONS_SEED, dbt_current, dbt_daily
from orchestration.assets.funnels import (
    funnel_asset_keys,
    funnel_assets,
    funnel_seed_keys,
    funnel_steps,
)
from orchestration.assets.paths import path_assets, path_seed_keys
from orchestration.assets.retention import (
    retention_asset_keys,
    retention_assets,
    retention_events,
    retention_seed_keys,
)
from orchestration.jobs import derive
from orchestration.partitions import partition_key_for
from orchestration.project import DEFINITIONS_DIR

Hashes = dict[str, dict[str, str]]  # kind ("events", "funnels") -> declaration name -> hash


@dataclass(frozen=True)
class Changes:
    events: frozenset[str] = field(default_factory=frozenset)
    funnels: frozenset[str] = field(default_factory=frozenset)
    paths: frozenset[str] = field(default_factory=frozenset)
    retention: frozenset[str] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.events or self.funnels or self.paths or self.retention)

    def describe(self) -> str:
        parts = []
        if self.events:
            parts.append("event definitions " + ", ".join(sorted(self.events)))
        if self.funnels:
            parts.append("funnels " + ", ".join(sorted(self.funnels)))
        if self.paths:
            parts.append("paths " + ", ".join(sorted(self.paths)))
        if self.retention:
            parts.append("retention " + ", ".join(sorted(self.retention)))
        return "; ".join(parts)


class DeclarationsInvalid(Exception):
    pass


def declaration_hashes(definitions_dir: Path) -> Hashes:
    """Content hashes of every declaration; raises ``DeclarationsInvalid`` naming the problems."""
    from retrolytics.language import events
    from retrolytics.language.check import check

    catalog = check(definitions_dir)
    if catalog.problems:
        raise DeclarationsInvalid("\n".join(str(problem) for problem in catalog.problems))
    hashes: Hashes = {
        "events": {
            d.name: events.compile_definition(d)[0].content_hash for d in catalog.event_definitions
        }
    }
    funnels = catalog.declarations.get("funnels")
    if funnels is not None:
        from retrolytics.language import funnels as funnel_language

        hashes["funnels"] = {f.name: funnel_language.content_hash(f) for f in funnels}
    if catalog.paths:
        from retrolytics.language import paths as path_language

        known = [d.name for d in catalog.event_definitions]
        hashes["paths"] = {p.name: path_language.content_hash(p, known) for p in catalog.paths}
    retentions = catalog.declarations.get("retention")
    if retentions is not None:
        from retrolytics.language import retention as retention_language

        hashes["retention"] = {r.name: retention_language.content_hash(r) for r in retentions}
    return hashes


def changed_declarations(before: Hashes, after: Hashes) -> Changes:
    """Names that are new, edited or removed, per kind."""

    def diff(kind: str) -> frozenset[str]:
        old, new = before.get(kind, {}), after.get(kind, {})
        return frozenset(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))

    return Changes(
        events=diff("events"),
        funnels=diff("funnels"),
        paths=diff("paths"),
        retention=diff("retention"),
    )


def affected_funnels(changes: Changes, steps: dict[str, frozenset[str]]) -> frozenset[str]:
    """Funnels edited, or with a step (or exclusion) that is an edited event definition."""
    using_changed = {name for name, uses in steps.items() if uses & changes.events}
    return frozenset(changes.funnels | using_changed)


def affected_retention(changes: Changes, uses: dict[str, frozenset[str]]) -> frozenset[str]:
    """Retention analyses edited, or whose start or return event is an edited definition."""
    using_changed = {name for name, used in uses.items() if used & changes.events}
    return frozenset(changes.retention | using_changed)


def affected_selection(
    changes: Changes,
    steps: dict[str, frozenset[str]],
    retention_uses: dict[str, frozenset[str]] | None = None,
) -> dg.AssetSelection:
    """The seeds the changed kinds compile into, everything downstream, minus other funnels."""
    seeds = set()
    if changes.events:
        seeds.add(EVENT_DEFINITIONS_SEED)
    if changes.funnels:
        seeds.update(funnel_seed_keys())
    if changes.paths:
        seeds.update(path_seed_keys())
    if changes.retention:
        seeds.update(retention_seed_keys())
    keep = affected_funnels(changes, steps)
    untouched = [key for name, key in funnel_asset_keys().items() if name not in keep]
    keep_retention = affected_retention(changes, retention_uses or {})
    untouched += [k for name, k in retention_asset_keys().items() if name not in keep_retention]
    return dg.AssetSelection.assets(*seeds).downstream() - dg.AssetSelection.assets(*untouched)


def never_materialized_upstream(
    instance: dg.DagsterInstance, selected: set[dg.AssetKey]
) -> set[dg.AssetKey]:
    """Upstream assets of the selection this instance has never materialized (a fresh
    deployment): the run builds them too, or it would read tables that do not exist yet."""
    derived = [dbt_current, dbt_daily, *funnel_assets, *path_assets, *retention_assets]
    upstream = dg.AssetSelection.assets(*selected).upstream().resolve(derived) - selected
    return {key for key in upstream if instance.get_latest_materialization_event(key) is None}


def _load_cursor(cursor: str | None) -> Hashes | None:
    if not cursor:
        return None
    return json.loads(cursor)


def build_declaration_sensor(
    definitions_dir: Path = DEFINITIONS_DIR, name: str = "declarations_changed"
) -> dg.SensorDefinition:
    """The sensor, over a definitions folder (tests point it at a copy)."""

    @dg.sensor(
        name=name,
        job=derive,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Notices edited event definitions, funnels, paths and retention analyses (content "
            "hashes) and re-derives only what they affect, over all history."
        ),
    )
    def declarations_changed(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        try:
            current = declaration_hashes(definitions_dir)
        except DeclarationsInvalid as invalid:
            return dg.SensorResult(
                skip_reason=f"the declarations have problems, nothing launched:\n{invalid}"
            )
        previous = _load_cursor(context.cursor)
        cursor = json.dumps(current, sort_keys=True)
        if previous is None:
            return dg.SensorResult(skip_reason="recorded the declarations' hashes", cursor=cursor)
        changes = changed_declarations(previous, current)
        if not changes:
            return dg.SensorResult(skip_reason="no declaration changed", cursor=cursor)
        steps = funnel_steps(definitions_dir) if changes.events else {}
        uses = retention_events(definitions_dir) if changes.events else {}
        selection = affected_selection(changes, steps, uses)
        keys = selection.resolve(
            [dbt_current, dbt_daily, *funnel_assets, *path_assets, *retention_assets]
        )
        keys |= never_materialized_upstream(context.instance, keys)
        today = partition_key_for(datetime.now(tz=UTC).date())
        context.log.info(f"changed: {changes.describe()}; re-deriving {len(keys)} assets")
        request = dg.RunRequest(
            # Same key when a crashed tick is retried (same previous tick and state), a new one
            # when a file changes back and forth (A -> B -> A -> B needs a run every time).
            run_key="declarations-"
            + _short(f"{context.last_tick_completion_time}|{context.cursor}|{cursor}"),
            partition_key=today,
            asset_selection=sorted(keys, key=lambda k: k.to_user_string()),
            tags={"retrolytics/changed": changes.describe()[:200]},
        )
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return declarations_changed


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


declarations_changed = build_declaration_sensor()
