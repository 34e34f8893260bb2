"""Reading declaration files: YAML that remembers the line of every key and list item.

Validation messages say ``file:line: what is wrong``; plain ``yaml.safe_load`` forgets where a
value came from and silently keeps the last of two equal keys. Here mappings load as ``YamlMap``
and lists as ``YamlList``, both carrying lines, and a repeated key is reported.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a declaration file; ``str()`` gives ``file:line: message``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class YamlMap(dict):
    """A mapping that knows its own line and the lines of its keys and values."""

    line: int
    key_lines: dict[Any, int]
    value_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.value_lines.get(key, self.line)


class YamlList(list):
    """A list that knows its own line and the line of each item."""

    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


def line_of(value: Any, default: int) -> int:
    return getattr(value, "line", default)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and lists keep lines, and which records repeated keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicate_keys: list[tuple[int, str]] = []

    def construct_yaml_map(self, node: MappingNode):
        mapping = YamlMap()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        mapping.value_lines = {}
        yield mapping
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise ConstructorError(
                    None, None, "a key must be a plain value", key_node.start_mark
                )
            line = key_node.start_mark.line + 1
            if key in mapping:
                self.duplicate_keys.append(
                    (line, f"duplicate key {key!r} (first at line {mapping.key_lines[key]})")
                )
                continue
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines[key] = line
            mapping.value_lines[key] = _value_line(value_node, line)

    def construct_yaml_seq(self, node: SequenceNode):
        items = YamlList()
        items.line = node.start_mark.line + 1
        items.item_lines = [child.start_mark.line + 1 for child in node.value]
        yield items
        items.extend(self.construct_object(child, deep=True) for child in node.value)


def _value_line(node: Node, key_line: int) -> int:
    # A block mapping or list under a key starts on the next line; point at the key then, which
    # is where a reader looks for "the value of x".
    if isinstance(node, ScalarNode):
        return node.start_mark.line + 1
    return key_line


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_yaml_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_yaml_seq)


@dataclass(frozen=True)
class Document:
    """One parsed file: its data (``None`` when it could not be read) and what went wrong."""

    path: str
    data: Any
    problems: tuple[Problem, ...]


def load_yaml(path: Path, display: str | None = None) -> Document:
    """Parse one YAML file, keeping lines; syntax errors become problems, never exceptions."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return Document(shown, None, (Problem(shown, 1, f"not UTF-8 text ({exc.reason})"),))
    return parse_yaml(text, shown)


def parse_yaml(text: str, display: str) -> Document:
    loader = _LineLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        return Document(display, None, (Problem(display, line, f"YAML syntax error: {what}"),))
    except yaml.YAMLError as exc:
        return Document(display, None, (Problem(display, 1, f"YAML error: {exc}"),))
    finally:
        loader.dispose()
    problems = tuple(Problem(display, line, message) for line, message in loader.duplicate_keys)
    return Document(display, data, problems)


def written_items(text: str, key: str) -> dict[int, str]:
    """Each item of the top-level list ``key`` as its author wrote it (comments, quoting and
    layout kept, dedented, trailing comments and blank lines left to the next item), keyed by
    the line its mapping starts on: the ``line`` the parsers give each declaration. Empty when
    the text does not parse or has no such list."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, MappingNode):
        return {}
    items = next((v for k, v in root.value if isinstance(k, ScalarNode) and k.value == key), None)
    if not isinstance(items, SequenceNode):
        return {}
    lines = text.splitlines()
    written = {}
    for item in items.value:
        mark = item.end_mark  # where the next token starts: the next item's dash, often
        ends_inside = mark.line < len(lines) and lines[mark.line][: mark.column].strip()
        end = mark.line + (1 if ends_inside else 0)
        chunk = lines[item.start_mark.line : end]
        while chunk and (not chunk[-1].strip() or chunk[-1].lstrip().startswith("#")):
            chunk.pop()
        written[item.start_mark.line + 1] = textwrap.dedent("\n".join(chunk))
    return written
