"""Random DOM trees, targets in them and selectors for them: cases on which the compiled
selector regex must agree with cssselect (tests/unit/test_selectors.py in Python,
tests/integration/test_selectors_postgres.py in PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lxml.html
from hypothesis import strategies as st
from lxml import etree

from ingestion.contract import Element, Target, canonical_hierarchy, is_captured_attribute

# -- random documents ------------------------------------------------------------------------

TAGS = ["div", "span", "a", "b", "button", "form", "li", "section", "h2", "x", "x-1", "my-widget"]
# Every character the hierarchy escapes, plus CSS-awkward starts and non-ASCII.
NAMES = [
    "main",
    "cart",
    "btn",
    "a.b",
    "x:y",
    "#h",
    "semi;colon",
    'q"uote',
    "back\\slash",
    "[br]",
    "e=q",
    "a]b",
    "it's",
    "ends\\",
    "\\",
    "-lead",
    "1digit",
    "_u",
    "Up",
    "up",
    "café",
    "日本",
    "\xa0nb",
    "😀",
]
# An id may hold white space (an escaped newline can end the hierarchy string); a class cannot.
IDS = [*NAMES, "a b", "tab\there", "new\n", "end ", "tab\t"]
VALUES = [
    "",
    "x",
    "submit",
    "https://e.com/a?b=c&d=(1)",
    'a"b',
    "it's",
    "semi;colon",
    "back\\slash",
    "new\nline",
    "日本語",
    "a]b",
    "\\",
    '"',
    ";",
    'x\\"y',
    "$^.*+?{1}|[a-z]",
    "ends\\",
]
ATTRIBUTE_NAMES = ["href", "name", "type", "data-x", "data-foo-bar", "data-a.b", "title", "role"]
CAPTURED_NAMES = [name for name in ATTRIBUTE_NAMES if is_captured_attribute(name)]
HTML_SPACES = [" ", "  ", "\t", "\n"]

_PARSER = lxml.html.HTMLParser()
Draw = Callable[[st.SearchStrategy[Any]], Any]  # hypothesis's draw inside @st.composite

node_features = st.fixed_dictionaries(
    {
        "tag": st.sampled_from(TAGS),
        "id": st.one_of(st.none(), st.sampled_from(IDS)),
        "classes": st.lists(st.sampled_from(NAMES), max_size=3),
        "attributes": st.dictionaries(
            st.sampled_from(ATTRIBUTE_NAMES), st.sampled_from(VALUES), max_size=3
        ),
        "comment_first": st.booleans(),
    }
)
trees = st.recursive(
    st.tuples(node_features, st.just([])),
    lambda children: st.tuples(node_features, st.lists(children, min_size=1, max_size=4)),
    max_leaves=12,
)


def build_document(forest: list, draw: Draw) -> etree._Element:
    """html > (head, body > forest): body is the second child, so nth-child varies from the top."""
    root = _PARSER.makeelement("html", {})
    etree.SubElement(root, "head")
    body = etree.SubElement(root, "body")
    for node in forest:
        _add(body, node, draw)
    return root


def _add(parent: etree._Element, node: tuple, draw: Draw) -> None:
    features, children = node
    if features["comment_first"]:
        parent.append(etree.Comment("not an element: nth-child skips it"))
    attributes = dict(features["attributes"])
    if features["id"] is not None:
        attributes["id"] = features["id"]
    if features["classes"]:
        space = draw(st.sampled_from(HTML_SPACES))
        attributes["class"] = space + space.join(features["classes"]) + space
    element = etree.SubElement(parent, features["tag"], attributes)
    for child in children:
        _add(element, child, draw)


def target_of(element: etree._Element) -> Target:
    """What the browser snippet would report: the chain from the target up to the root."""
    chain = [element, *element.iterancestors()]
    return Target(elements=[_contract_element(e) for e in chain])


def _contract_element(element: etree._Element) -> Element:
    preceding = list(element.itersiblings(tag=etree.Element, preceding=True))
    return Element(
        tag=element.tag,
        id=element.get("id"),
        classes=classes_of(element),
        nth_child=len(preceding) + 1,
        attributes={k: v for k, v in element.attrib.items() if is_captured_attribute(k)},
    )


# -- CSS text for random selectors (our own serializer, so escapes vary) ----------------------

_HEX_DIGITS = set("0123456789abcdefABCDEF")


def css_ident(text: str, draw: Draw) -> str:
    text = _readable(text)
    out = []
    for index, ch in enumerate(text):
        safe = ch == "_" or (ch.isascii() and ch.isalpha()) or ord(ch) >= 0x80
        safe = safe or (index > 0 and (ch.isdigit() or ch == "-"))
        if safe and draw(st.integers(0, 9)) != 0:
            out.append(ch)
        elif ch == "\\" or (ch not in _HEX_DIGITS and ch not in "\n\r\f" and draw(st.booleans())):
            out.append("\\" + ch)
        else:
            out.append(f"\\{ord(ch):x} ")  # the space ends the hex escape
    return "".join(out)


def css_string(text: str, draw: Draw) -> str:
    text = _readable(text)
    quote = draw(st.sampled_from(["'", '"']))
    body = "".join(
        "\\" + ch if ch in (quote, "\\") else f"\\{ord(ch):x} " if ch in "\n\r\f" else ch
        for ch in text
    )
    return quote + body + quote


def _readable(text: str) -> str:
    """cssselect, unlike CSS, misreads every spelling of a backslash before a hex digit (the
    compiler refuses them; tested below), and a hex-escaped backslash before anything: so
    backslashes are written '\\\\', and dropped where a hex digit follows."""
    return re.sub(r"\\+(?=[0-9a-fA-F])", "", text)


def css_value(text: str, draw: Draw) -> str:
    if text and draw(st.booleans()):
        return css_ident(text, draw)
    return css_string(text, draw)


def _some(values: list[str], draw: Draw) -> str:
    return draw(st.sampled_from(values))


def _part_of(value: str, operator: str, stray: bool, draw: Draw) -> str:
    """A value for the operator that the given value passes, or (stray) most likely fails:
    another value, a near miss, or a piece of the value from the wrong place."""
    how = draw(st.sampled_from(["other", "near", "misplaced"])) if stray else "passes"
    if how == "other":
        return _some(VALUES + NAMES, draw)
    part = value
    if (operator != "=" or how == "misplaced") and value:
        size = draw(st.integers(1, len(value)))
        start = {"^=": 0, "$=": len(value) - size}.get(operator)
        if start is None or how == "misplaced":
            start = draw(st.integers(0, len(value) - size))
        part = value[start : start + size]
    if how == "near":  # often next to an escaped character
        extra = _some(["x", "\\", '"', ";", "."], draw)
        part = part + extra if draw(st.booleans()) else extra + part
    return part


def _attribute_tests(name: str, value: str | None, faithful: bool, draw: Draw) -> list[str]:
    shown = name.upper() if draw(st.integers(0, 4)) == 0 else name
    tests = []
    for index in range(draw(st.integers(1, 2))):  # two tests on one field need a lookahead
        operator = draw(st.sampled_from(["exists", "=", "^=", "$=", "*="]))
        if operator == "exists":
            tests.append(f"[{css_ident(shown, draw)}]")
        else:
            known = value if value is not None else _some(VALUES, draw)
            # A stray second test is what tells whether the lookahead for it works.
            stray = (not faithful and draw(st.booleans())) or (index == 1 and draw(st.booleans()))
            wanted = _part_of(known, operator, stray, draw)
            tests.append(f"[{css_ident(shown, draw)}{operator}{css_value(wanted, draw)}]")
    return tests


def classes_of(element: etree._Element) -> list[str]:
    """As HTML (and XPath's normalize-space) split a class attribute: on ASCII white space."""
    return [c for c in re.split(r"[ \t\n\r\f]+", element.get("class", "")) if c]


def compound_for(element: etree._Element, draw: Draw) -> str:
    """A compound built from the element's own features; one in four also strays from them."""
    faithful = draw(st.integers(0, 3)) > 0
    parts = []
    strays = [] if faithful else ["other", "near", "near"]
    tag_style = draw(st.sampled_from(["tag", "TAG", "*", "", *strays]))
    tag = element.tag
    if tag_style == "other":
        tag = _some(TAGS, draw)
    elif tag_style == "near":  # 'b' must not match <body>, nor 'x-1' match <x>
        near = [t for t in [*TAGS, "body", "html"] if t != tag and (t in tag or tag in t)]
        tag = _some(near or TAGS, draw)
    if tag_style in ("tag", "other", "near"):
        parts.append(tag)
    elif tag_style == "TAG":
        parts.append(tag.upper())
    element_id = element.get("id")
    if (element_id or not faithful) and draw(st.integers(0, 2)) == 0:
        wanted = element_id if element_id and (faithful or draw(st.booleans())) else None
        parts.append("#" + css_ident(wanted or _some(IDS, draw), draw))
    if (element_id or not faithful) and draw(st.integers(0, 3)) == 0:
        parts += _attribute_tests("id", element_id, faithful, draw)
    classes = classes_of(element)
    if classes or not faithful:
        for _ in range(draw(st.integers(0, 2))):
            use_own = classes and (faithful or draw(st.booleans()))
            parts.append("." + css_ident(_some(classes if use_own else NAMES, draw), draw))
    if draw(st.integers(0, 3)) == 0:
        position = len(list(element.itersiblings(tag=etree.Element, preceding=True))) + 1
        shift = 0 if faithful else draw(st.integers(-1, 1))
        parts.append(f":nth-child({max(1, position + shift)})")
    own = [name for name in CAPTURED_NAMES if element.get(name) is not None]
    if own or not faithful:
        for _ in range(draw(st.integers(0, 2))):
            name = _some(own if own and (faithful or draw(st.booleans())) else CAPTURED_NAMES, draw)
            parts += _attribute_tests(name, element.get(name), faithful, draw)
    if not parts or (tag_style == "*" and draw(st.booleans())):
        parts.insert(0, "*")
    return "".join(parts)


def complex_selector_for(root: etree._Element, chain: list, draw: Draw) -> str:
    everything = list(root.iter(etree.Element))
    current = _some(chain, draw) if draw(st.integers(0, 4)) else _some(everything, draw)
    text = compound_for(current, draw)
    for _ in range(draw(st.integers(0, 2))):
        combinator = draw(st.sampled_from([" ", ">"]))
        ancestors = list(current.iterancestors())
        if not ancestors or draw(st.integers(0, 6)) == 0:
            current = _some(everything, draw)
        elif combinator == ">":
            current = ancestors[0]
        else:
            current = _some(ancestors, draw)
        spelled = {
            " ": draw(st.sampled_from([" ", "  ", "\n", " /* c */ "])),
            ">": draw(st.sampled_from([">", " > ", "> ", "\t>"])),
        }[combinator]
        text = compound_for(current, draw) + spelled + text
    return text


@dataclass(frozen=True)
class Case:
    hierarchy: str
    selector: str
    expected: bool  # cssselect's answer


@st.composite
def cases(draw: Draw) -> Case:
    root = build_document(draw(st.lists(trees, min_size=1, max_size=3)), draw)
    target = draw(st.sampled_from(list(root.iter(etree.Element))))
    chain = [target, *target.iterancestors()]
    count = draw(st.integers(1, 3))
    selector = draw(st.sampled_from([", ", ","])).join(
        complex_selector_for(root, chain, draw) for _ in range(count)
    )
    tree = root.getroottree()
    on_chain = {tree.getpath(e) for e in chain}
    expected = any(tree.getpath(e) in on_chain for e in root.cssselect(selector))
    reported = target_of(target)
    if ":nth-child" not in selector and draw(st.booleans()):
        # nth_child is optional in the contract; without it an escaped newline can end the string.
        for element in reported.elements:
            element.nth_child = None
    return Case(canonical_hierarchy(reported), selector, expected)
