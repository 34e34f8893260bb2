"""The validator: every declaration file under a definitions folder, checked in one pass.

``retrolytics definitions check [PATH]`` runs ``check(PATH)`` and prints each ``Problem`` as
``file:line: what is wrong``. Declarations come in *kinds*, one folder each (``events/`` now,
``funnels/`` later). A kind says how to read one list item and, optionally, how to check the
whole catalogue at once (a funnel step must name an event definition that exists). Adding a kind
is adding a ``DeclarationKind`` to ``KINDS``; names are unique within a kind, across files. A
kind also names the dbt seeds it compiles to; ``seeds.compile_seed`` writes them all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingestion.redaction import Redaction
from retrolytics.language import events, funnels, privacy
from retrolytics.language.sources import Problem, YamlList, YamlMap, load_yaml

YAML_SUFFIXES = (".yml", ".yaml")

# (item, file shown, line, index in the file's list) -> (declaration or None, problems).
# A declaration has at least ``name``, ``path`` and ``line`` attributes.
ItemParser = Callable[[Any, str, int, int], tuple[Any | None, list[Problem]]]


@dataclass(frozen=True)
class DeclarationKind:
    folder: str  # sub-folder of the definitions root, e.g. "events"
    key: str  # the one top-level key of each of its files
    noun: str  # "event definition"
    plural: str  # "definitions", as the summary line says it
    parse_item: ItemParser
    cross_check: Callable[[Catalog], list[Problem]] | None = None
    # The dbt seeds the kind compiles to, from a valid catalogue: {file name: CSV text}.
    seeds: Callable[[Catalog], dict[str, str]] | None = None


@dataclass
class Catalog:
    """Everything found under one definitions root, valid or not."""

    root: Path
    files: dict[str, list[str]] = field(default_factory=dict)  # kind folder -> files
    declarations: dict[str, list[Any]] = field(default_factory=dict)  # kind folder -> parsed
    problems: list[Problem] = field(default_factory=list)
    redaction: Redaction = field(default_factory=Redaction)  # privacy.yml, compiled

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def event_definitions(self) -> list[events.EventDefinition]:
        return self.declarations.get("events", [])

    @property
    def funnels(self) -> list[funnels.Funnel]:
        return self.declarations.get("funnels", [])

    def summary(self) -> str:
        counts = [
            f"{len(self.declarations.get(kind.folder, []))} {kind.plural}"
            for kind in KINDS
            if kind.folder in self.files
        ]
        file_count = sum(len(files) for files in self.files.values())
        return f"ok: {' and '.join(counts)} in {file_count} files"


def _event_seeds(catalog: Catalog) -> dict[str, str]:
    return {"event_definitions.csv": events.seed_csv(events.compile_all(catalog.event_definitions))}


EVENTS = DeclarationKind(
    folder="events",
    key="events",
    noun="event definition",
    plural="definitions",
    parse_item=events.parse_event_definition,
    seeds=_event_seeds,
)

FUNNELS = DeclarationKind(
    folder="funnels",
    key="funnels",
    noun="funnel",
    plural="funnels",
    parse_item=funnels.parse_funnel,
    cross_check=funnels.check_references,
    seeds=lambda catalog: funnels.seed_files(catalog.funnels),
)

KINDS: list[DeclarationKind] = [EVENTS, FUNNELS]


def shown_path(path: Path) -> str:
    """Relative to the working directory when below it: short and clickable in a terminal."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


def check(root: Path) -> Catalog:
    """Read and validate every declaration file below ``root``; never raises for bad input."""
    catalog = Catalog(root=root)
    if not root.is_dir():
        catalog.problems.append(Problem(shown_path(root), 1, "no such definitions folder"))
        return catalog
    for kind in KINDS:
        folder = root / kind.folder
        if folder.is_dir():
            _check_kind(kind, folder, catalog)
    if not catalog.files:
        folders = " or ".join(f"{kind.folder}/" for kind in KINDS)
        catalog.problems.append(
            Problem(shown_path(root), 1, f"no {folders} folder here; is this a definitions folder?")
        )
        return catalog
    for kind in KINDS:
        if kind.cross_check is not None and kind.folder in catalog.files:
            catalog.problems.extend(kind.cross_check(catalog))
    catalog.redaction, problems = privacy.check(root, shown_path(root / privacy.FILE_NAME))
    catalog.problems.extend(problems)
    catalog.problems.sort()
    return catalog


def _check_kind(kind: DeclarationKind, folder: Path, catalog: Catalog) -> None:
    files = sorted(p for p in folder.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file())
    catalog.files[kind.folder] = [shown_path(p) for p in files]
    parsed: list[Any] = []
    for path in files:
        parsed.extend(_check_file(kind, path, catalog.problems))
    catalog.problems.extend(_duplicates(kind, parsed))
    catalog.declarations[kind.folder] = parsed


def _check_file(kind: DeclarationKind, path: Path, problems: list[Problem]) -> list[Any]:
    shown = shown_path(path)
    document = load_yaml(path, shown)
    problems.extend(document.problems)
    data = document.data
    if data is None and not document.problems:
        problems.append(Problem(shown, 1, f"the file is empty; expected '{kind.key}:' with a list"))
        return []
    if data is None:
        return []
    if not isinstance(data, YamlMap):
        problems.append(Problem(shown, 1, f"expected a mapping with the key '{kind.key}:'"))
        return []
    for key in data:
        if key != kind.key:
            problems.append(
                Problem(
                    shown,
                    data.key_lines[key],
                    f"unknown top-level key {key!r}; files in {kind.folder}/ hold only "
                    f"'{kind.key}:'",
                )
            )
    if kind.key not in data:
        problems.append(Problem(shown, data.line, f"missing the top-level key '{kind.key}:'"))
        return []
    items = data[kind.key]
    if not isinstance(items, YamlList) or not items:
        problems.append(
            Problem(shown, data.line_of(kind.key), f"'{kind.key}' must be a non-empty list")
        )
        return []
    parsed = []
    for index, item in enumerate(items):
        declaration, item_problems = kind.parse_item(item, shown, items.line_of(index), index)
        problems.extend(item_problems)
        if declaration is not None:
            parsed.append(declaration)
    return parsed


def _duplicates(kind: DeclarationKind, declarations: list[Any]) -> list[Problem]:
    first: dict[str, Any] = {}
    problems = []
    for declaration in declarations:
        earlier = first.setdefault(declaration.name, declaration)
        if earlier is not declaration:
            problems.append(
                Problem(
                    declaration.path,
                    declaration.line,
                    f"duplicate {kind.noun} name {declaration.name!r}: also defined at "
                    f"{earlier.path}:{earlier.line}",
                )
            )
    return problems


class DefinitionsInvalid(Exception):
    """Raised by ``load_catalog`` when the files have problems; ``problems`` lists them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        listed = "\n".join(str(p) for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the definitions:\n{listed}")


def load_catalog(root: Path) -> Catalog:
    """Like ``check`` but for code that needs valid declarations: raises on any problem."""
    catalog = check(root)
    if catalog.problems:
        raise DefinitionsInvalid(catalog.problems)
    return catalog


def load_redaction(root: Path) -> Redaction:
    """The privacy rules of ``root/privacy.yml`` (the defaults without one), for every path that
    stores events (``retrolytics load`` and ``collect``, Dagster's load job, the demo): raises
    ``DefinitionsInvalid`` on any problem, so nothing is stored under rules that were meant
    otherwise."""
    rules, problems = privacy.check(root, shown_path(root / privacy.FILE_NAME))
    if problems:
        raise DefinitionsInvalid(problems)
    return rules
