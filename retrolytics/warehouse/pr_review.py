"""The pull-request comment: ``retrolytics definitions pr-check --format markdown``.

What a reviewer reads, rendered from what ``pr_check`` found (its ``Outcome``) and from the
declarations of both sides as their authors wrote them:

- each new, changed or removed event definition: its YAML before and after (the selector as
  written, never its regex), the events each side matched, and the oldest five events that
  newly match and five that no longer match (time, page path, element text, the part of the
  hierarchy the selector matched);
- each funnel whose declaration or step counts changed: its YAML before and after and the units
  that reached each step on each side;
- each changed path or retention declaration: its YAML before and after (pr-check builds their
  marts but does not compare them).

The "before" YAML is production's: the ``definitions/`` folder that deploy.yml uploads beside
the manifest it built from (not the base branch, which may hold changes not deployed yet).
Without it the comment says so and shows the after side only.

The comment starts with ``MARKER``, by which the workflow finds its own comment to update.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from retrolytics.language.check import KINDS, Catalog
from retrolytics.language.sources import written_items

if TYPE_CHECKING:
    from retrolytics.warehouse.pr_check import (
        DefinitionChange,
        Examples,
        FunnelChange,
        FunnelSide,
        MatchDifference,
        Outcome,
    )

MARKER = "<!-- retrolytics:pr-check -->"
MAX_LENGTH = 65_000  # GitHub refuses a comment over 65,536 characters
KIND_TITLES = {"paths": "Paths", "retention": "Retention analyses"}


@dataclass(frozen=True)
class Written:
    """One declaration as its file has it."""

    file: str
    text: str
    data: Any  # the parsed YAML: a change of comments or layout alone is no change


@dataclass(frozen=True)
class Pair:
    """One declaration on both sides of the change."""

    name: str
    before: Written | None  # None: new (or production's declarations are unknown)
    after: Written | None  # None: removed


def render(outcome: Outcome, *, change: Catalog, production: Catalog | None) -> str:
    """The whole comment, at most ``MAX_LENGTH`` characters."""
    paired = {kind.folder: _paired(production, change, kind.folder) for kind in KINDS}
    # Without production's declarations nothing is known to have changed but what pr_check
    # proved; their YAML after is still shown.
    edited = {
        folder: {name: pair for name, pair in pairs.items() if _differs(pair)}
        if production is not None
        else {}
        for folder, pairs in paired.items()
    }
    sections = [
        f"{MARKER}\n## Retrolytics: what this pull request changes",
        _build_status(outcome),
    ]
    if production is None:
        sections.append(
            "> Production's declarations were not found beside its manifest, so the YAML "
            "before is not shown (pass `--production-definitions`)."
        )
    sections.append(_definitions_section(outcome, edited["events"], paired["events"]))
    sections.append(_funnels_section(outcome, edited["funnels"], paired["funnels"]))
    for folder, title in KIND_TITLES.items():
        if edited[folder]:
            sections.append(_declarations_section(title, edited[folder]))
    return _bounded("\n\n".join(sections))


# -- the declarations as written ---------------------------------------------------------------


def _paired(production: Catalog | None, change: Catalog, folder: str) -> dict[str, Pair]:
    """Every declaration of one kind on either side, by name."""
    after = _written(change, folder)
    before = _written(production, folder) if production is not None else {}
    return {
        name: Pair(name, before.get(name), after.get(name)) for name in sorted({*before, *after})
    }


def _kind(pair: Pair) -> str:
    return "new" if pair.before is None else "removed" if pair.after is None else "changed"


def _differs(pair: Pair) -> bool:
    return pair.before is None or pair.after is None or pair.before.data != pair.after.data


def _written(catalog: Catalog, folder: str) -> dict[str, Written]:
    key = next(kind.key for kind in KINDS if kind.folder == folder)
    root = catalog.root.resolve()
    items_by_file: dict[str, dict[int, str]] = {}
    found = {}
    for declaration in catalog.declarations.get(folder, []):
        if declaration.path not in items_by_file:
            text = Path(declaration.path).read_text(encoding="utf-8")
            items_by_file[declaration.path] = written_items(text, key)
        text = items_by_file[declaration.path].get(declaration.line)
        if text is not None:
            file = Path(declaration.path).resolve()
            shown = file.relative_to(root) if file.is_relative_to(root) else file.name
            found[declaration.name] = Written(str(shown), text, yaml.safe_load(text))
    return found


def _yaml_pair(before: Written | None, after: Written | None) -> list[str]:
    lines = []
    for label, side in (("Before (production)", before), ("After (this change)", after)):
        if side is None:
            continue
        lines += [f"**{label}**, `{side.file}`:", "", _fenced(side.text, "yaml"), ""]
    return lines


# -- event definitions -------------------------------------------------------------------------


def _definitions_section(outcome: Outcome, edited: dict[str, Pair], paired: dict[str, Pair]) -> str:
    matched = {change.name: change for change in outcome.definitions}
    names = sorted(set(matched) | set(edited))
    if not names:
        return "### Event definitions\n\nNo event definition changed."
    lines = [f"### Event definitions: {len(names)} changed"]
    for name in names:
        edit = paired.get(name, Pair(name, None, None))
        lines.append("")
        if name in matched:
            change = matched[name]
            lines += [f"#### `{name}` ({change.kind})", ""]
            lines += _yaml_pair(edit.before, edit.after)
            lines += _counts_table(change)
            difference = outcome.differences.get(name)
            if difference is not None:
                lines += _differences(difference)
        else:
            lines += [f"#### `{name}` (description or owner only: matches the same events)", ""]
            lines += _yaml_pair(edit.before, edit.after)
    return "\n".join(lines).rstrip()


def _counts_table(change: DefinitionChange) -> list[str]:
    def shown(count: int | None, defined: bool) -> str:
        if not defined:
            return "not defined"
        return "not built" if count is None else f"{count:,}"

    before = shown(change.matched_before, bool(change.before))
    after = shown(change.matched_after, bool(change.after))
    return [
        "| | before (production) | after (this change) |",
        "| --- | ---: | ---: |",
        f"| events matched | {before} | {after} |",
        "",
    ]


def _differences(difference: MatchDifference) -> list[str]:
    lines = []
    for label, examples in (
        ("newly match", difference.newly_matching),
        ("no longer match", difference.no_longer_matching),
    ):
        noun = "event" if examples.count == 1 else "events"
        if not examples.count:
            lines += [f"No events {label}.", ""]
            continue
        oldest = len(examples.shown)
        shown = f" (the oldest {oldest})" if examples.count > oldest else ""
        lines += [f"**{examples.count:,} {noun} {label}**{shown}:", ""]
        lines += _examples_table(examples)
    return lines


def _examples_table(examples: Examples) -> list[str]:
    lines = [
        "| time (UTC) | page path | element text | hierarchy (matching part) | event id |",
        "| --- | --- | --- | --- | --- |",
    ]
    for example in examples.shown:
        cells = [
            example.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            _code(example.page_path),
            _text(example.target_text),
            _code(example.hierarchy_part),
            _code(example.event_id),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


# -- funnels -----------------------------------------------------------------------------------


def _funnels_section(outcome: Outcome, edited: dict[str, Pair], paired: dict[str, Pair]) -> str:
    counted = {change.name: change for change in outcome.funnels or []}
    names = sorted(set(counted) | set(edited))
    lines = ["### Funnels"]
    if not outcome.build_succeeded:
        lines += ["", "Step counts not compared: the dbt build failed."]
    elif outcome.funnels is None:
        lines += ["", "No funnel rebuilt: the change touches nothing a funnel reads."]
    if not names:
        if outcome.funnels is not None:
            lines += ["", "No funnel's step counts changed."]
        return "\n".join(lines)
    lines[0] += f": {len(names)} affected"
    for name in names:
        edit, change = paired.get(name, Pair(name, None, None)), counted.get(name)
        kind = change.kind if change else _kind(edit)
        lines += ["", f"#### `{name}` ({kind})", ""]
        if name in edited or change is None or change.kind != "changed":
            lines += _yaml_pair(edit.before, edit.after)
        if change is not None:
            lines += ["Units that reached each step, all history:", ""]
            lines += _steps_table(change)
        elif outcome.funnels is not None:
            lines += ["Step counts unchanged.", ""]
    return "\n".join(lines).rstrip()


def _steps_table(change: FunnelChange) -> list[str]:
    sides = (change.before, change.after)
    names = next(side.step_names for side in reversed(sides) if side is not None)
    steps = max(len(side.units_reaching) for side in sides if side is not None)
    lines = ["| step | before | after | change |", "| --- | ---: | ---: | ---: |"]
    for number in range(1, steps + 1):
        name = names[number - 1] if number <= len(names) else ""
        before, after = (_units(side, number) for side in sides)
        delta = f"{after - before:+,}" if before is not None and after is not None else ""
        delta = "0" if delta == "+0" else delta
        cells = [f"{number} {_text(name)}", _count(before), _count(after), delta]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _units(side: FunnelSide | None, step: int) -> int | None:
    if side is None:
        return None
    return side.units_reaching[step - 1] if step <= len(side.units_reaching) else 0


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


# -- paths and retention -----------------------------------------------------------------------


def _declarations_section(title: str, edits: dict[str, Pair]) -> str:
    lines = [f"### {title}: {len(edits)} changed", ""]
    lines += ["pr-check builds their marts in the scratch schemas but does not compare them.", ""]
    for name, edit in edits.items():
        lines += [f"#### `{name}` ({_kind(edit)})", ""]
        lines += _yaml_pair(edit.before, edit.after)
    return "\n".join(lines).rstrip()


# -- Markdown ----------------------------------------------------------------------------------


def _build_status(outcome: Outcome) -> str:
    schemas = f"`{outcome.scratch_schema}_*`"
    if outcome.build_succeeded:
        return (
            f"The change builds and its dbt tests pass in the scratch schemas {schemas}, "
            "next to production; query them to look further."
        )
    return (
        f"**The dbt build failed** in the scratch schemas {schemas}: see the job's log. "
        "Counts after the change may be incomplete."
    )


def _fenced(text: str, language: str) -> str:
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _text(value: str | None) -> str:
    """Plain text for a table cell: no Markdown or HTML of its own, no line breaks."""
    if value is None:
        return ""
    escaped = html.escape(" ".join(value.split()), quote=False)
    for special in "\\`*_[]|#~":
        escaped = escaped.replace(special, "\\" + special)
    return escaped


def _code(value: str | None) -> str:
    if value is None:
        return ""
    escaped = html.escape(" ".join(value.split()), quote=False).replace("|", "&#124;")
    return f"<code>{escaped}</code>"


def _bounded(text: str) -> str:
    if len(text) <= MAX_LENGTH:
        return text
    note = "\n\n_The comment is cut here to fit GitHub's limit; the job's log has the rest._"
    cut = text.rfind("\n#### ", 0, MAX_LENGTH - len(note))
    return text[: cut if cut > 0 else MAX_LENGTH - len(note)] + note
