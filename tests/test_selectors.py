"""CSS selector compiler: the regex over the hierarchy string must agree with a real CSS engine.

The engine is cssselect (through lxml), run on a random DOM tree; the compiled regex runs on the
canonical hierarchy string of a random target in that tree. A selector matches an event when it
matches the target or one of its ancestors, so the expected answer is "some element cssselect
selects lies on the target's chain".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lxml.html
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree

from ingestion.contract import Element, Target, canonical_hierarchy, is_captured_attribute
from retrolytics.language.selectors import NEVER, SelectorError, compile_selector

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


# -- the property ----------------------------------------------------------------------------


@settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_compiled_regex_agrees_with_cssselect(case: Case) -> None:
    regex = compile_selector(case.selector)
    event("matches" if case.expected else "does not match")
    assert bool(re.fullmatch(regex, case.hierarchy)) is case.expected, (regex, case)
    # The regex is anchored: search must say the same (Python's '$' also matches before a final
    # newline, and an escaped newline can end the string).
    assert bool(re.search(regex, case.hierarchy)) is case.expected


# -- examples of each feature ----------------------------------------------------------------

CHECKOUT = Target(
    elements=[
        Element(tag="span", nth_child=1),
        Element(
            tag="BUTTON",
            classes=["checkout", "btn"],
            nth_child=3,
            attributes={"type": "submit", "data-track": "buy now"},
        ),
        Element(tag="form", id="cart", classes=["cart"], nth_child=1),
        Element(tag="body", nth_child=2),
        Element(tag="html", nth_child=1),
    ]
)


def matches(selector: str, target: Target = CHECKOUT) -> bool:
    return re.fullmatch(compile_selector(selector), canonical_hierarchy(target)) is not None


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (".checkout", True),  # an ancestor of the clicked span
        ("span", True),
        ("button", True),
        ("BUTTON", True),
        ("input", False),
        ("*", True),
        ("#cart", True),
        ("#cart2", False),
        ("#car", False),
        (".btn.checkout", True),
        (".checkout.btn", True),
        (".checkout.missing", False),
        ("form#cart button.checkout", True),
        ("form#cart > button.checkout", True),
        ("body > button", False),
        ("html button", True),
        ("html > body > form > button > span", True),
        ("span form", False),  # order matters
        ("button:nth-child(3)", True),
        ("button:nth-child(2)", False),
        ("[type]", True),
        ("[name]", False),
        ("[type=submit]", True),
        ('[type="submit"]', True),
        ("[type=Submit]", False),  # values are case-sensitive
        ("[TYPE=submit]", True),  # names are not
        ("[type^=sub]", True),
        ("[type$=mit]", True),
        ("[type*=bmi]", True),
        ("[type*=xyz]", False),
        ('[data-track="buy now"]', True),
        ("[data-track^=buy][data-track$=now]", True),
        ("[data-track^=buy][data-track$=then]", False),
        ("[data-track^=buy][data-track$=buy]", False),  # 'buy' is in it, but not at the end
        ("[data-track*=now][data-track$=buy]", False),
        ("[data-track*=now][data-track$=now]", True),
        ("[id=cart]", True),
        ("[id^=ca]", True),
        ("[id$=rt]", True),
        ("[id*=ar]", True),
        ("[id]", True),
        ("[id=car]", False),
        ("#cart[id^=ca]", True),
        ("[id^=c][id$=r]", False),  # 'r' is in 'cart', but not at the end
        ("[id*=ar][id$=ar]", False),
        ("[id*=ar][id$=rt]", True),
        ("#cart[id^=x]", False),
        ("#cart#cart", True),
        ("#cart#other", False),
        ("input, .checkout", True),
        ("input, select", False),
        ("div *", False),
        ("form *", True),
    ],
)
def test_feature_examples(selector: str, expected: bool) -> None:
    assert matches(selector) is expected


def test_empty_attribute_values_match_nothing_as_in_cssselect() -> None:
    empty = Target(elements=[Element(tag="a", attributes={"href": ""})])
    assert matches('[href=""]', empty)
    assert matches("[href]", empty)
    for operator in ("^=", "$=", "*="):
        assert not matches(f'[href{operator}""]', empty)
        assert not matches(f'[href{operator}""]', CHECKOUT)
    assert compile_selector('[href^=""]') == NEVER
    assert compile_selector('[href^=""], a') != NEVER


def test_a_class_with_white_space_matches_nothing_as_in_cssselect() -> None:
    # class="a b" is two classes; '.a\ b' names one class with a space, which cannot exist.
    spaced = Target(elements=[Element(tag="a", classes=["a", "b"])])
    assert not matches(r".a\ b", spaced)
    assert compile_selector(r".a\ b") == NEVER


def test_nth_child_needs_the_position_in_the_hierarchy() -> None:
    unknown = Target(elements=[Element(tag="li")])
    assert matches("li", unknown)
    assert not matches("li:nth-child(1)", unknown)
    assert matches("li:nth-child(+1)", Target(elements=[Element(tag="li", nth_child=1)]))


def test_an_empty_id_is_not_in_the_hierarchy() -> None:
    # The contract drops an empty id, so [id=""] cannot be decided true; it never matches.
    assert not matches('[id=""]', Target(elements=[Element(tag="a", id="")]))


# -- escaping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("element", "selector"),
    [
        (Element(tag="a", id="a.b"), r"#a\.b"),
        (Element(tag="a", id="x:y"), r"#x\:y"),
        (Element(tag="a", id="semi;colon"), r"#semi\;colon"),
        (Element(tag="a", id="a b"), r"#a\ b"),
        (Element(tag="a", classes=["[br]"]), r".\[br\]"),
        (Element(tag="a", classes=["back\\slash"]), r".back\\slash"),
        (Element(tag="a", classes=["1digit"]), r".\31 digit"),
        (Element(tag="a", classes=["café"]), ".café"),
        (Element(tag="a", classes=["café"]), r".caf\e9"),
        (Element(tag="a", attributes={"href": 'q"uote'}), r'[href="q\"uote"]'),
        (Element(tag="a", attributes={"href": "a;b"}), "[href='a;b']"),
        (Element(tag="a", attributes={"href": "$^.*+?(x)"}), "[href='$^.*+?(x)']"),
        (Element(tag="a", attributes={"href": "new\nline"}), r"[href='new\a line']"),
        (Element(tag="a", attributes={"data-a.b": "v"}), r"[data-a\.b=v]"),
    ],
)
def test_escaped_names_and_values_match_themselves(element: Element, selector: str) -> None:
    assert matches(selector, Target(elements=[element]))


def test_regex_metacharacters_in_values_are_literal() -> None:
    target = Target(elements=[Element(tag="a", attributes={"href": "aXb"})])
    assert not matches("[href='a.b']", target)
    assert not matches("[href*='.']", target)
    assert not matches("[href^='a|']", target)


def test_literal_matches_never_straddle_an_escape() -> None:
    # Value 'x\' is stored as 'x\\'; a value ending in '"' is stored with '\"'.
    ends_in_backslash = Target(elements=[Element(tag="a", attributes={"href": "x\\"})])
    assert matches(r"[href$='\\']", ends_in_backslash)
    assert not matches("[href$='\"']", ends_in_backslash)
    assert not matches(r"[href*='\\\\']", ends_in_backslash)  # one backslash, not two
    quoted = Target(elements=[Element(tag="a", attributes={"href": 'x"'})])
    assert matches("[href$='\"']", quoted)
    assert not matches(r"[href*='\\']", quoted)  # the stored backslash is only an escape
    # An id '\.' is stored as '\\\.': the class-looking '.' inside is part of the id.
    dotted = Target(elements=[Element(tag="a", id="x.y")])
    assert not matches(".y", dotted)
    assert not matches("#x", dotted)
    semicolon = Target(elements=[Element(tag="a", id="p;div")])
    assert not matches("div", semicolon)


def test_a_newline_at_the_end_does_not_fool_dollar() -> None:
    # id 'a\n' ends the string with an escaped newline; Python's '$' matches before it.
    target = Target(elements=[Element(tag="a", id="a\n")])
    hierarchy = canonical_hierarchy(target)
    assert hierarchy.endswith("\n")
    assert not re.search(compile_selector("#a"), hierarchy)
    assert re.search(compile_selector(r"#a\a"), hierarchy)


def test_regex_size_is_linear_in_the_selector() -> None:
    one = len(compile_selector("div .a > [data-x^=y]"))
    ten = len(compile_selector(", ".join(["div .a > [data-x^=y]"] * 10)))
    assert ten < 11 * one


# -- errors name what is wrong ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "named", "position"),
    [
        ("a:hover", "':hover'", 1),
        ("a:first-child", "':first-child'", 1),
        ("a:nth-of-type(2)", "':nth-of-type()'", 1),
        ("a:nth-child(odd)", "':nth-child(odd)'", 1),
        ("a:nth-child(2n+1)", "':nth-child(2n+1)'", 1),
        ("a:nth-child(0)", "':nth-child(0)'", 1),
        ("a:nth-child(-1)", "':nth-child(-1)'", 1),
        ("a:not(.b)", "':not()'", 1),
        ("a:is(.b)", ":is()", 1),
        ("a:where(.b)", "':where()'", 1),
        ("a:has(.b)", "':has()'", 1),
        ("a::before", "'::before'", 1),
        ("a:after", "'::after'", 1),
        ("a + b", "'+'", 2),
        ("a ~ b", "'~'", 2),
        ("svg|a", "namespaces", 3),
        ("|a", "namespaces", 0),
        ("*|a", "namespaces", 1),
        ("[xlink|href]", "namespaces", 6),
        ("[data-x|=en]", "'|='", 0),
        ("[data-x~=en]", "'~='", 0),
        ("[data-x!=en]", "'!='", 0),
        ("[data-x=en i]", "flag 'i'", 0),
        ("[class=a]", "use .class", 0),
        ("[class~=a]", "'~='", 0),
        ("a [class]", "use .class", 2),
        ("[title=x]", "'title' is not captured", 0),
        ("foo_bar", "'foo_bar'", 0),
        ("a >", "not valid CSS", 3),
        ("a[", "not valid CSS", 2),
        ("[href='x", "not valid CSS", 6),
        ("", "empty", None),
        (" \n ", "empty", None),
    ],
)
def test_unsupported_parts_are_named(selector: str, named: str, position: int | None) -> None:
    with pytest.raises(SelectorError) as caught:
        compile_selector(selector)
    error = caught.value
    assert named in error.message
    assert named in str(error)
    assert error.selector == selector
    assert error.position == position
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("selector", "position"),
    [
        (r"[href*='C:\\data']", 7),  # CSS: 'C:\data'; cssselect: 'C:' U+000D 'ata'
        (r"[href*='C:\5c data']", 7),  # CSS: 'C:\data'; cssselect: 'C:data'
        (r"[href*='C:\5c  data']", 7),  # CSS: 'C:\ data'; cssselect: 'C: data'
        (r".a\\b", 1),
        (r"div#x\\\\\\f", 3),
    ],
)
def test_escapes_cssselect_misreads_are_refused(selector: str, position: int) -> None:
    # cssselect replaces hex escapes before simple ones, regardless of what is escaped already,
    # so CSS and cssselect disagree on any backslash before a hex digit. Refusing beats silently
    # matching something the analyst did not write.
    with pytest.raises(SelectorError, match="reads the escapes in") as caught:
        compile_selector(selector)
    assert caught.value.position == position


def test_escapes_cssselect_reads_right_are_accepted() -> None:
    assert matches(
        r"[href*='C:\\x']", Target(elements=[Element(tag="a", attributes={"href": "C:\\x"})])
    )
    assert matches(
        r"[href$='C:\5c ']", Target(elements=[Element(tag="a", attributes={"href": "C:\\"})])
    )
    assert matches(r".caf\e9", Target(elements=[Element(tag="a", classes=["café"])]))
    assert matches(r".a\\", Target(elements=[Element(tag="a", classes=["a\\"])]))


def test_the_error_lists_what_is_supported() -> None:
    with pytest.raises(SelectorError, match=r"':hover' is not supported \(supported: tag, #id"):
        compile_selector("a:hover")
