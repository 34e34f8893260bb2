"""A small element tree, and the three things Retro Shop derives from one: its HTML, the event
targets a browser reports for its elements, and the outline analysts write selectors against.

``demo.pages`` describes every page once as such a tree; the shop serves ``to_html`` of it, the
traffic generator sends ``targets`` of it, and the documentation shows ``outline`` of it.
``targets`` follows ``retrolytics.js``: the target first, up to ``html``; per element its tag,
id, classes, ``nth_child`` (1-based among element siblings) and the attributes ``href``,
``name``, ``type`` and ``data-*``; the target's text content with white space collapsed, never
for form fields or forms.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

NO_TEXT_TAGS = frozenset({"input", "textarea", "select", "option", "form"})
VOID_TAGS = frozenset({"meta", "link", "img", "input", "br", "hr"})
_SELECTOR = re.compile(r"([a-z][a-z0-9]*)((?:[#.][A-Za-z0-9_-]+)*)")


@dataclass(frozen=True)
class Raw:
    """Text written into the page as it is: the content of a ``<script>``."""

    text: str


@dataclass(frozen=True)
class Element:
    tag: str
    id: str | None = None
    classes: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)  # in document order, not id/class
    children: tuple[Element | str | Raw, ...] = ()
    # The name the traffic generator finds this element by, and the event it is the target of.
    key: str | None = None
    on: str | None = None
    note: str | None = None  # shown in the outline only


def h(
    selector: str,
    *children: Element | str | Raw | None,
    attrs: dict[str, str] | None = None,
    key: str | None = None,
    on: str | None = None,
    note: str | None = None,
) -> Element:
    """An element from a compound selector (``tag#id.class.class``); ``None`` children are left
    out, so optional parts read inline."""
    match = _SELECTOR.fullmatch(selector)
    if match is None:
        raise ValueError(f"{selector!r} is not tag#id.class")
    tag, rest = match.groups()
    ids = [part[1:] for part in re.findall(r"[#.][^#.]+", rest) if part[0] == "#"]
    classes = tuple(part[1:] for part in re.findall(r"[#.][^#.]+", rest) if part[0] == ".")
    if (key is None) != (on is None):
        raise ValueError(f"{selector}: a target needs both a key and the event it is hit by")
    return Element(
        tag,
        ids[0] if ids else None,
        classes,
        dict(attrs or {}),
        tuple(child for child in children if child is not None),
        key,
        on,
        note,
    )


def _elements(children: tuple[Element | str | Raw, ...]) -> Iterator[Element]:
    return (child for child in children if isinstance(child, Element))


def _is_captured(attribute: str) -> bool:
    return attribute in ("href", "name", "type") or attribute.startswith("data-")


def text_content(element: Element) -> str:
    parts = []
    for child in element.children:
        if isinstance(child, str):
            parts.append(child)
        elif isinstance(child, Raw):
            parts.append(child.text)
        else:
            parts.append(text_content(child))
    return "".join(parts)


def reported_text(element: Element) -> str | None:
    """The target text a browser reports: collapsed text content, none for fields and forms."""
    if element.tag in NO_TEXT_TAGS:
        return None
    return " ".join(text_content(element).split()) or None


# -- HTML -------------------------------------------------------------------------------------


def to_html(element: Element, depth: int = 0) -> str:
    """The markup, elements indented one per line where no text sits between them."""
    attributes = ([("id", element.id)] if element.id else []) + (
        [("class", " ".join(element.classes))] if element.classes else []
    )
    attributes += element.attributes.items()
    opening = "".join(f' {name}="{html.escape(value)}"' for name, value in attributes)
    start = f"<{element.tag}{opening}>"
    if element.tag in VOID_TAGS:
        return start
    if all(isinstance(child, Element) for child in element.children) and element.children:
        indent = "\n" + "  " * (depth + 1)
        inner = "".join(indent + to_html(child, depth + 1) for child in element.children)
        inner += "\n" + "  " * depth
    else:
        inner = "".join(
            child.text
            if isinstance(child, Raw)
            else html.escape(child, quote=False)
            if isinstance(child, str)
            else to_html(child, depth + 1)
            for child in element.children
        )
    return f"{start}{inner}</{element.tag}>"


# -- event targets ----------------------------------------------------------------------------


def _described(element: Element, nth_child: int) -> dict[str, Any]:
    described: dict[str, Any] = {"tag": element.tag}
    if element.id:
        described["id"] = element.id
    if element.classes:
        described["classes"] = list(element.classes)
    described["nth_child"] = nth_child
    captured = {k: v for k, v in element.attributes.items() if _is_captured(k)}
    if captured:
        described["attributes"] = captured
    return described


def targets(root: Element) -> dict[str, dict[str, Any]]:
    """Every keyed element as an event's ``target``: ``elements`` from it up to ``root``, then
    its ``text``. Ancestors' dicts are shared between targets: treat them as read-only."""
    found: dict[str, dict[str, Any]] = {}

    def visit(element: Element, nth_child: int, above: list[dict[str, Any]]) -> None:
        chain = [_described(element, nth_child), *above]
        if element.key is not None:
            if element.key in found:
                raise ValueError(f"two elements are keyed {element.key!r}")
            target: dict[str, Any] = {"elements": chain}
            text = reported_text(element)
            if text:
                target["text"] = text
            found[element.key] = target
        for position, child in enumerate(_elements(element.children), start=1):
            visit(child, position, chain)

    visit(root, 1, [])
    return found


# -- the outline ------------------------------------------------------------------------------


def compound_selector(element: Element) -> str:
    """The element as a CSS compound selector of what a browser captures of it."""
    selector = element.tag
    if element.id:
        selector += f"#{element.id}"
    selector += "".join(f".{c}" for c in element.classes)
    selector += "".join(
        f'[{name}="{value}"]' for name, value in element.attributes.items() if _is_captured(name)
    )
    return selector


def _own_text(element: Element) -> str | None:
    if element.on is not None:
        return reported_text(element)
    own = "".join(child for child in element.children if isinstance(child, str))
    return " ".join(own.split()) or None


def merge(first: Element, second: Element) -> Element:
    """One tree with the elements of both, for an outline of a page's alternatives (an empty
    cart or a full one). Children with the same compound selector are the same element; one
    only ``second`` has goes before the next child both have, or last."""
    merged = list(_elements(first.children))
    keys = [compound_selector(child) for child in merged]
    pending: list[Element] = []
    start = 0  # children match in order: a second "li" is never the first one again
    for child in _elements(second.children):
        key = compound_selector(child)
        if key not in keys[start:]:
            pending.append(child)
            continue
        at = keys.index(key, start)
        merged[at] = merge(merged[at], child)
        merged[at:at] = pending
        keys[at:at] = [compound_selector(p) for p in pending]
        start = at + len(pending) + 1
        pending = []
    merged += pending
    texts = tuple(child for child in first.children if not isinstance(child, Element))
    return replace(first, children=texts + tuple(merged), note=first.note or second.note)


def outline(element: Element, depth: int = 0, hidden: frozenset[str] = frozenset()) -> str:
    """One line per element, indented under its parent: its compound selector, ``"text"``,
    ``<- event`` it is the target of, ``-- note``. Children of tags in ``hidden`` are left out."""
    line = "  " * depth + compound_selector(element)
    text = _own_text(element)
    if text:
        line += f'  "{text}"'
    if element.on:
        line += f"  <- {element.on}"
    if element.note:
        line += f"  -- {element.note}"
    lines = [line + "\n"]
    if element.tag not in hidden:
        lines += [outline(child, depth + 1, hidden) for child in _elements(element.children)]
    return "".join(lines)
