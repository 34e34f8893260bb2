"""CSS selector compiler: the regex over the hierarchy string must agree with a real CSS engine.

The engine is cssselect (through lxml), run on a random DOM tree; the compiled regex runs on the
canonical hierarchy string of a random target in that tree. A selector matches an event when it
matches the target or one of its ancestors, so the expected answer is "some element cssselect
selects lies on the target's chain".
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, event, given, settings

from ingestion.contract import Element, Target, canonical_hierarchy
from retrolytics.language.selectors import NEVER, SelectorError, compile_selector
from tests.support.selector_cases import Case, cases

# -- the property ----------------------------------------------------------------------------


@settings(
    max_examples=600,
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
