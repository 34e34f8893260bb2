"""Compile CSS selectors into one anchored regular expression over the canonical hierarchy string.

An element event matches a selector when its target *or any ancestor* matches it (as in Heap: a
click on a ``<span>`` inside ``<button class="checkout">`` matches ``.checkout``). The hierarchy
string (``ingestion.contract.canonical_hierarchy``) holds only the chain from the root to the
target, so only what that chain decides is supported: tag, ``*``, ``#id``, ``.class``, ``[attr]``,
``[attr=v]``, ``[attr^=v]``, ``[attr$=v]``, ``[attr*=v]``, ``:nth-child(n)``, the descendant and
``>`` combinators and comma lists. Anything else raises ``SelectorError``.

The regular expression is written in the subset that PostgreSQL's ARE engine (``hierarchy ~
regex``) and Python's ``re`` read the same way. It walks the string unit by unit (a plain
character, or a backslash and the character it escapes), so an escaped delimiter inside an id,
class or value is never taken for structure and no literal match straddles an escape. Shape::

    ^(?:ELEMENT;)*(?:COMPLEX|COMPLEX…)(?:;ELEMENT)*$

where a COMPLEX is its compounds joined by ``;`` (child) or ``;(?:ELEMENT;)*`` (descendant), and a
compound spells out one whole element: tag, id, classes (sorted, as the string keeps them), the
``:nth-child``, attributes (sorted by name), with "any other" fillers between required parts.

Where CSS says a valid selector matches nothing (``[a^=""]``, ``#a#b``, a class with white space),
the result follows cssselect, the engine the tests compare against: a regex that matches nothing.
CSS escapes are read by cssselect; the few spellings it reads differently from CSS (a backslash
before a hexadecimal digit) are refused rather than compiled into something nobody wrote.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field

import cssselect
from cssselect import parser as css

from ingestion.contract import escape_ident, escape_value, is_captured_attribute

__all__ = ["NEVER", "SUPPORTED", "SelectorError", "compile_selector"]

SUPPORTED = (
    "supported: tag, #id, .class, [attr], [attr=v], [attr^=v], [attr$=v], [attr*=v], "
    ":nth-child(n), descendant and > combinators, comma lists"
)


class SelectorError(ValueError):
    """A selector outside the supported subset, or not valid CSS; ``message`` says which part."""

    def __init__(self, selector: str, message: str, position: int | None = None) -> None:
        self.selector = selector
        self.message = message
        self.position = position
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" at offset {self.position}" if self.position is not None else ""
        return f"invalid selector {self.selector!r}{where}: {self.message}"


# -- regex building blocks (common subset of PostgreSQL ARE and Python re) -------------------

# A backslash and the one character it escapes, whatever that is ("[^\\]|\\" is "any character"
# without '.', which Python would not let match a newline).
_ESCAPED = r"\\(?:[^\\]|\\)"
_IDENT_UNIT = rf'(?:[^\\;#.:\[\]"=]|{_ESCAPED})'
_VALUE_UNIT = rf'(?:[^\\";]|{_ESCAPED})'
_ANY_ELEMENT = rf"(?:[^\\;]|{_ESCAPED})*"
_ANY_TAG = "[a-z][a-z0-9-]*"
_ANY_ID = rf"(?:#{_IDENT_UNIT}+)?"
_ANY_CLASSES = rf"(?:\.{_IDENT_UNIT}+)*"
_ANY_NTH_CHILD = r"(?::nth-child\([0-9]+\))?"
_ANY_ATTRIBUTES = rf'(?:\[{_IDENT_UNIT}+="{_VALUE_UNIT}*"\])*'
# Where an id (or a value) ends: the next structural character, or the end of the string.
_ID_END = r"(?:[.:\[;]|$)"
_VALUE_END = '"'
# Matches nothing, in both engines.
NEVER = "^(?!)$"

_TAG_NAME = re.compile(r"[a-z][a-z0-9-]*")
_HTML_WHITESPACE = re.compile(r"[ \t\r\n\f]")  # what splits a class attribute
_REGEX_SPECIALS = frozenset(string.punctuation) - {"_"}


def _literal(text: str) -> str:
    """Escape ASCII punctuation only: PostgreSQL reads a backslash before a letter or digit as
    an escape class, so letters, digits and non-ASCII characters stay as they are."""
    return "".join("\\" + ch if ch in _REGEX_SPECIALS else ch for ch in text)


# -- the parsed form of one compound selector ------------------------------------------------

_Test = tuple[str, str | None]  # (operator, value): "exists", "=", "^=", "$=", "*="
_Locator = Callable[[list[css.Token]], int | None]  # finds an unsupported part's offset


@dataclass
class _Compound:
    tag: str | None = None
    id_tests: list[_Test] = field(default_factory=list)
    classes: set[str] = field(default_factory=set)
    nth_child: set[int] = field(default_factory=set)
    attributes: dict[str, list[_Test]] = field(default_factory=dict)


class _Unsupported(Exception):
    """Raised inside the walk; ``locate`` finds the offending token for the position."""

    def __init__(self, message: str, locate: _Locator | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.locate = locate


def compile_selector(selector: str) -> str:
    """An anchored regular expression (^...$) over the canonical hierarchy string that matches iff
    the event's target OR ANY OF ITS ANCESTORS matches the selector (any selector of a comma list).
    """
    if not isinstance(selector, str):
        raise TypeError(f"a selector must be a string, not {type(selector).__name__}")
    if not selector.strip():
        raise SelectorError(selector, "the selector is empty")
    try:
        parsed = cssselect.parse(selector)
    except css.SelectorSyntaxError as exc:
        raise SelectorError(selector, f"not valid CSS: {exc}", _syntax_position(exc)) from None
    tokens = list(css.tokenize(selector))
    try:
        _refuse_misread_escapes(selector, tokens)
        _refuse_namespaces(tokens)
        alternatives = [_complex(item) for item in parsed]
    except _Unsupported as exc:
        position = exc.locate(tokens) if exc.locate else None
        raise SelectorError(selector, exc.message, position) from None
    patterns = [p for p in (_complex_pattern(a) for a in alternatives) if p is not None]
    if not patterns:
        return NEVER
    return f"^(?:{_ANY_ELEMENT};)*(?:{'|'.join(patterns)})(?:;{_ANY_ELEMENT})*$"


# -- walking cssselect's tree ----------------------------------------------------------------


def _complex(item: css.Selector) -> list[tuple[str, _Compound]]:
    """(combinator, compound) pairs, leftmost first; the first combinator is unused."""
    parts = _combined(item.parsed_tree)
    pseudo_element = item.pseudo_element
    if pseudo_element is not None:
        name = getattr(pseudo_element, "name", pseudo_element)
        shown = f"::{name}()" if isinstance(pseudo_element, css.FunctionalPseudoElement) else name
        shown = shown if shown.startswith("::") else f"::{shown}"
        raise _Unsupported(f"the pseudo-element {_named(shown)}", _pseudo_locator(name))
    return parts


def _combined(node: css.Tree) -> list[tuple[str, _Compound]]:
    if not isinstance(node, css.CombinedSelector):
        return [(" ", _compound(node))]
    parts = _combined(node.selector)
    if node.combinator not in (" ", ">"):
        kind = "adjacent" if node.combinator == "+" else "general"
        raise _Unsupported(
            f"the {kind} sibling combinator {_named(node.combinator)}",
            _combinator_locator(node.combinator),
        )
    parts.append((node.combinator, _compound(node.subselector)))
    return parts


def _compound(node: css.Tree) -> _Compound:
    """Innermost (leftmost) part first, so the first unsupported part is the one reported."""
    if isinstance(node, css.Element):
        return _element(node)
    compound = _compound(node.selector)
    if isinstance(node, css.Hash):
        compound.id_tests.append(("=", node.id))
    elif isinstance(node, css.Class):
        compound.classes.add(node.class_name)
    elif isinstance(node, css.Attrib):
        _attribute(node, compound)
    elif isinstance(node, css.Function) and node.name == "nth-child":
        compound.nth_child.add(_nth_child_argument(node))
    elif isinstance(node, css.Function):
        raise _Unsupported(
            f"the pseudo-class {_named(f':{node.name}()')}", _pseudo_locator(node.name)
        )
    elif isinstance(node, css.Pseudo):
        raise _Unsupported(
            f"the pseudo-class {_named(f':{node.ident}')}", _pseudo_locator(node.ident)
        )
    else:
        name = {
            css.Negation: "not",
            css.Relation: "has",
            css.Matching: "is",
            css.SpecificityAdjustment: "where",
        }.get(type(node))
        if name is None:
            raise _Unsupported(f"{type(node).__name__} selectors are not supported ({SUPPORTED})")
        shown = ":is()/:matches()" if name == "is" else f":{name}()"
        raise _Unsupported(
            f"the pseudo-class {_named(shown)}",
            _pseudo_locator("is", "matches") if name == "is" else _pseudo_locator(name),
        )
    return compound


def _named(part: str) -> str:
    return f"'{part}' is not supported ({SUPPORTED})"


def _element(node: css.Element) -> _Compound:
    if node.namespace is not None:
        raise _Unsupported(
            f"namespaces ('{node.namespace}|') are not supported ({SUPPORTED})", _pipe_locator
        )
    if node.element is None:
        return _Compound()
    tag = node.element.lower()  # as cssselect's HTMLTranslator compares tags
    if not _TAG_NAME.fullmatch(tag):
        raise _Unsupported(
            f"the tag {tag!r} can never be in a hierarchy: tags are ASCII letters, digits and '-'",
            _ident_locator(node.element),
        )
    return _Compound(tag=tag)


def _attribute(node: css.Attrib, compound: _Compound) -> None:
    name = (node.attrib or "*").lower()  # as cssselect's HTMLTranslator compares names
    locate = _attribute_locator(node.attrib or "*")
    if node.namespace is not None:
        raise _Unsupported(
            f"namespaces ('{node.namespace}|') are not supported ({SUPPORTED})", _pipe_locator
        )
    if node.operator not in ("exists", "=", "^=", "$=", "*="):
        raise _Unsupported(f"the attribute operator {_named(node.operator)}", locate)
    if node.flag is not None:
        raise _Unsupported(f"the attribute flag {_named(node.flag)}", locate)
    if name == "class":
        raise _Unsupported(
            f"'[class…]' attribute selectors are not supported; use .class instead ({SUPPORTED})",
            locate,
        )
    value = None if node.value is None else node.value.value
    if name == "id":
        compound.id_tests.append((node.operator, value))
    elif is_captured_attribute(name):
        compound.attributes.setdefault(name, []).append((node.operator, value))
    else:
        raise _Unsupported(
            f"the attribute {name!r} is not captured in the hierarchy "
            "(only id, href, name, type and data-* are)",
            locate,
        )


def _nth_child_argument(node: css.Function) -> int:
    tokens = node.arguments
    argument = "".join(token.css() for token in tokens)
    single_number = len(tokens) == 1 and tokens[0].type == "NUMBER"
    if single_number and re.fullmatch(r"\+?[0-9]+", argument) and int(argument) > 0:
        return int(argument)
    raise _Unsupported(
        f"':nth-child({argument})' is not supported: only a positive integer n is, "
        f"as in ':nth-child(3)' ({SUPPORTED})",
        _pseudo_locator("nth-child"),
    )


# -- regex for a complex selector ------------------------------------------------------------


def _complex_pattern(parts: list[tuple[str, _Compound]]) -> str | None:
    """None when CSS says no element can match (e.g. ``#a#b``)."""
    pieces: list[str] = []
    for combinator, compound in parts:
        pattern = _compound_pattern(compound)
        if pattern is None:
            return None
        if pieces:
            pieces.append(";" if combinator == ">" else f";(?:{_ANY_ELEMENT};)*")
        pieces.append(pattern)
    return "".join(pieces)


def _compound_pattern(compound: _Compound) -> str | None:
    parts = [
        _literal(compound.tag) if compound.tag else _ANY_TAG,
        _id_pattern(compound.id_tests),
        _classes_pattern(compound.classes),
        _nth_child_pattern(compound.nth_child),
        _attributes_pattern(compound.attributes),
    ]
    return None if None in parts else "".join(parts)  # type: ignore[arg-type]


def _id_pattern(tests: list[_Test]) -> str | None:
    if not tests:
        return _ANY_ID
    if ("=", "") in tests:
        return None  # the hierarchy leaves out an empty id, so [id=""] cannot be decided true
    value = _field_pattern(tests, _IDENT_UNIT, escape_ident, _ID_END)
    if value is None:
        return None
    return "#" + (value if value != f"{_IDENT_UNIT}*" else f"{_IDENT_UNIT}+")


def _classes_pattern(classes: set[str]) -> str | None:
    if any(_HTML_WHITESPACE.search(name) for name in classes):
        return None  # a class attribute splits on white space; cssselect matches nothing too
    pieces = [_ANY_CLASSES]
    for name in sorted(classes):  # the hierarchy sorts classes the same way
        pieces += [r"\." + _literal(escape_ident(name)), _ANY_CLASSES]
    return "".join(pieces)


def _nth_child_pattern(positions: set[int]) -> str | None:
    if not positions:
        return _ANY_NTH_CHILD
    if len(positions) > 1:
        return None
    return rf":nth-child\({positions.pop()}\)"


def _attributes_pattern(attributes: dict[str, list[_Test]]) -> str | None:
    pieces = [_ANY_ATTRIBUTES]
    for name in sorted(attributes):  # the hierarchy sorts attributes by lower-cased name
        value = _field_pattern(attributes[name], _VALUE_UNIT, escape_value, _VALUE_END)
        if value is None:
            return None
        pieces += [rf'\[{_literal(escape_ident(name))}="{value}"\]', _ANY_ATTRIBUTES]
    return "".join(pieces)


def _field_pattern(
    tests: list[_Test], unit: str, escape: Callable[[str], str], end: str
) -> str | None:
    """The pattern for one id or attribute value that passes every test, or None if none can.

    An ``=`` test fixes the value, so the others are decided here. Otherwise the first test is
    the pattern and each further one a lookahead bounded by ``end`` (both engines have ``(?=``);
    only a second test on the same field needs one.
    """
    conditions = [(op, value or "") for op, value in tests if op != "exists"]
    exact = [value for op, value in conditions if op == "="]
    if exact:
        fixed = exact[0]
        if all(_passes(fixed, op, value) for op, value in conditions):
            return _literal(escape(fixed))
        return None
    if any(not value for _, value in conditions):
        return None  # [a^=""], [a$=""], [a*=""] match nothing (CSS and cssselect agree)
    if not conditions:
        return f"{unit}*"
    patterns = [_partial_pattern(op, _literal(escape(value)), unit) for op, value in conditions]
    return "".join(f"(?={p}{end})" for p in patterns[1:]) + patterns[0]


def _partial_pattern(operator: str, literal: str, unit: str) -> str:
    return {
        "^=": f"{literal}{unit}*",
        "$=": f"{unit}*{literal}",
        "*=": f"{unit}*{literal}{unit}*",
    }[operator]


def _passes(value: str, operator: str, expected: str) -> bool:
    if operator == "=":
        return value == expected
    if not expected:
        return False
    if operator == "^=":
        return value.startswith(expected)
    if operator == "$=":
        return value.endswith(expected)
    return expected in value


# -- positions of unsupported parts (best effort, from cssselect's own tokens) ----------------


def _depth_zero(tokens: list[css.Token]) -> list[tuple[int, css.Token]]:
    """Tokens outside brackets and parentheses, with their index."""
    depth, outside = 0, []
    for index, token in enumerate(tokens):
        if token.is_delim("[", "("):
            depth += 1
        elif token.is_delim("]", ")"):
            depth -= 1
        elif depth == 0:
            outside.append((index, token))
    return outside


def _pseudo_locator(*names: str) -> _Locator:
    def locate(tokens: list[css.Token]) -> int | None:
        for index, token in enumerate(tokens[:-1]):
            following = tokens[index + 1]
            named = following.type == "IDENT" and css.ascii_lower(str(following.value)) in names
            if token.is_delim(":") and named:
                colons = 2 if index and tokens[index - 1].is_delim(":") else 1
                return tokens[index - colons + 1].pos
        return None

    return locate


def _combinator_locator(combinator: str) -> _Locator:
    def locate(tokens: list[css.Token]) -> int | None:
        return next((t.pos for _, t in _depth_zero(tokens) if t.is_delim(combinator)), None)

    return locate


def _ident_locator(value: str) -> _Locator:
    def locate(tokens: list[css.Token]) -> int | None:
        for index, token in _depth_zero(tokens):
            before = tokens[index - 1] if index else None
            if token == ("IDENT", value) and not (before and before.is_delim(".", ":")):
                return token.pos
        return None

    return locate


def _attribute_locator(name: str) -> _Locator:
    def locate(tokens: list[css.Token]) -> int | None:
        for index, token in enumerate(tokens):
            if token.is_delim("["):
                inside = [t for t in tokens[index + 1 :] if t.type != "S"]
                if inside and inside[0] == ("IDENT", name):
                    return token.pos
        return None

    return locate


def _pipe_locator(tokens: list[css.Token]) -> int | None:
    return next((t.pos for t in tokens if t.is_delim("|")), None)


def _refuse_namespaces(tokens: list[css.Token]) -> None:
    """``|div`` and ``[|a]`` parse like ``div`` and ``[a]``; only the tokens show them."""
    for index, token in enumerate(tokens[:-1]):
        if token.is_delim("|") and not tokens[index + 1].is_delim("="):
            raise _Unsupported(
                f"namespaces ('|') are not supported ({SUPPORTED})", lambda _, p=token.pos: p
            )


# One CSS escape, read left to right as CSS Syntax 3 says: hex digits (plus one white space), an
# escaped newline (a line continuation inside strings), or any other character.
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})(?:\r\n|[ \t\n\r\f])?|(\r\n|[\n\r\f])|([\s\S]))")
_INVALID_INPUT = re.compile("[\x00\ud800-\udfff]")


def _css_unescape(raw: str) -> str:
    def one(escape: re.Match[str]) -> str:
        digits, newline, other = escape.groups()
        if newline is not None:
            return ""
        if other is not None:
            return other
        code = int(digits, 16)
        return "\ufffd" if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF else chr(code)

    return _CSS_ESCAPE.sub(one, raw)


def _token_text(text: str, token: css.Token, following: css.Token) -> str:
    """The escaped text of an ident, hash or string token, without '#' or quotes."""
    raw = text[token.pos : following.pos]
    if token.type != "STRING":
        return raw.split("/*")[0].removeprefix("#")  # an ident cannot hold an unescaped '/'
    end = 1
    while raw[end] != raw[0]:  # cssselect has checked the string is closed
        end += 2 if raw[end] == "\\" else 1
    return raw[1:end]


def _refuse_misread_escapes(selector: str, tokens: list[css.Token]) -> None:
    """cssselect (1.6) replaces hex escapes first and simple ones second, without regard to what
    is already escaped: it reads '\\\\d' (a backslash, then 'd') as U+000D and '\\5c d' as 'd'.
    Only selectors it reads as CSS does are accepted, so what compiles is what the user meant."""
    text = _INVALID_INPUT.sub("\ufffd", selector)  # what cssselect's tokenizer does first
    for token, following in itertools.pairwise(tokens):
        if token.type not in ("IDENT", "HASH", "STRING"):
            continue
        raw = _token_text(text, token, following)
        meant = _css_unescape(raw)
        if meant != token.value:
            raise _Unsupported(
                f"the CSS parser (cssselect) reads the escapes in {raw!r} as {token.value!r}, "
                f"not as {meant!r}: write a backslash as '\\\\' and not before a hexadecimal "
                "digit (no spelling of a backslash before a hexadecimal digit is read correctly)",
                lambda _, p=token.pos: p,
            )


def _syntax_position(exc: css.SelectorSyntaxError) -> int | None:
    """cssselect names the token as '<TYPE 'value' at N>' or says 'at N'."""
    found = re.findall(r" at (\d+)", str(exc))
    return int(found[-1]) if found else None
