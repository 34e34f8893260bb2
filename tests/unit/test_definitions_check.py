"""The validator: each kind of mistake is reported with its file, its line and what is wrong."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from retrolytics import cli
from retrolytics.language import events
from retrolytics.language.check import check
from retrolytics.language.sources import Problem
from tests.support.paths import REPO

REPO_DEFINITIONS = REPO / "definitions"

GOOD = """\
events:
  - name: added_to_cart
    description: Clicked add to cart.
    owner: growth
    match:
      - type: click
        selector: "#add-to-cart"
"""


def write(root: Path, name: str, text: str) -> Path:
    path = root / "events" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(root: Path) -> list[Problem]:
    return check(root).problems


def only_problem(root: Path) -> Problem:
    problems = problems_of(root)
    assert len(problems) == 1, problems
    return problems[0]


def definition(match: str, name: str = "some_event") -> str:
    """One definition whose match list is ``match`` (indented as under ``match:``)."""
    body = textwrap.indent(textwrap.dedent(match).strip("\n"), "      ")
    return f"events:\n  - name: {name}\n    description: d\n    owner: o\n    match:\n{body}\n"


def test_the_shipped_definitions_pass():
    catalog = check(REPO_DEFINITIONS)
    assert catalog.problems == []
    names = {d.name for d in catalog.event_definitions}
    assert len(names) >= 12
    assert {"viewed_product", "added_to_cart", "clicked_checkout", "completed_purchase"} <= names
    assert all(d.description and d.owner for d in catalog.event_definitions)
    funnel_count = len(catalog.declarations["funnels"])
    file_count = len(catalog.files["events"]) + len(catalog.files["funnels"])
    assert catalog.summary() == (
        f"ok: {len(names)} definitions and {funnel_count} funnels in {file_count} files"
    )


def test_yaml_syntax_error(tmp_path):
    path = write(tmp_path, "a.yml", GOOD + "  - name: [unclosed\n")
    problem = only_problem(tmp_path)
    assert problem.path.endswith(str(path.relative_to(tmp_path)))
    assert problem.line == 9
    assert "YAML syntax error" in problem.message


def test_unknown_key_in_a_definition(tmp_path):
    write(
        tmp_path, "a.yml", GOOD.replace("    owner: growth\n", "    owner: growth\n    ownr: x\n")
    )
    problem = only_problem(tmp_path)
    assert problem.line == 5
    assert "unknown key 'ownr'" in problem.message
    assert "'added_to_cart'" in problem.message
    assert "allowed: name, description, owner, match" in problem.message


def test_unknown_key_in_a_condition(tmp_path):
    write(tmp_path, "a.yml", definition("- type: click\n  selecter: a"))
    problem = only_problem(tmp_path)
    assert problem.line == 7
    assert "match[0]" in problem.message and "unknown key 'selecter'" in problem.message


def test_missing_field(tmp_path):
    write(tmp_path, "a.yml", GOOD.replace("    owner: growth\n", ""))
    problem = only_problem(tmp_path)
    assert problem.line == 2  # the definition's mapping starts on the line of "- name:"
    assert "missing required key 'owner'" in problem.message


def test_wrong_type(tmp_path):
    write(tmp_path, "a.yml", GOOD.replace("owner: growth", "owner: [a, b]"))
    problem = only_problem(tmp_path)
    assert problem.line == 4
    assert "'owner' must be a non-empty string; got a list" in problem.message


def test_a_number_where_text_is_expected(tmp_path):
    write(tmp_path, "a.yml", definition("- type: click\n  text: 42"))
    problem = only_problem(tmp_path)
    assert problem.line == 7
    assert 'match[0].text must be text; got a number (42): quote it ("42")' in problem.message


def test_duplicate_names_across_files_name_both_places(tmp_path):
    write(tmp_path, "a.yml", GOOD)
    write(tmp_path, "b.yml", "# the same again\n" + GOOD)
    problem = only_problem(tmp_path)
    assert problem.path.endswith("b.yml") and problem.line == 3
    assert "duplicate event definition name 'added_to_cart'" in problem.message
    assert problem.message.endswith("a.yml:2")


def test_duplicate_key_in_one_mapping(tmp_path):
    write(
        tmp_path, "a.yml", GOOD.replace("    owner: growth\n", "    owner: growth\n    owner: x\n")
    )
    problem = only_problem(tmp_path)
    assert problem.line == 5
    assert "duplicate key 'owner' (first at line 4)" in problem.message


@pytest.mark.parametrize("name", ["AddedToCart", "added-to-cart", "added__to_cart", "_x", "1st"])
def test_names_must_be_snake_case(tmp_path, name):
    write(tmp_path, "a.yml", GOOD.replace("added_to_cart", name))
    problem = only_problem(tmp_path)
    assert problem.line == 2
    assert "snake_case" in problem.message


def test_unsupported_selector_names_the_part(tmp_path):
    write(tmp_path, "a.yml", definition("- type: click\n  selector: 'form#cart button:hover'"))
    problem = only_problem(tmp_path)
    assert problem.line == 7
    assert "match[0].selector: invalid selector" in problem.message
    assert "hover" in problem.message


def test_selector_that_is_not_css(tmp_path):
    write(tmp_path, "a.yml", definition("- type: click\n  selector: 'div >'"))
    problem = only_problem(tmp_path)
    assert problem.line == 7
    assert "invalid selector 'div >'" in problem.message


def test_regex_python_cannot_compile(tmp_path):
    write(tmp_path, "a.yml", definition("- path:\n    regex: '^/product/(\\d+$'"))
    problem = only_problem(tmp_path)
    assert problem.line == 7
    assert "match[0].path.regex: invalid regex" in problem.message
    assert "missing )" in problem.message


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"\bcart", "backspace in PostgreSQL"),
        (r"(?P<id>\d+)", "does not exist in PostgreSQL"),
        (r"[[:digit:]]+", "POSIX bracket classes"),
        (r"a{,3}", "must start a bound"),
        (r"\x41", "does not mean the same"),
    ],
)
def test_regex_that_postgresql_reads_differently(tmp_path, pattern, reason):
    quoted = pattern.replace("'", "''")
    write(tmp_path, "a.yml", definition(f"- url:\n    regex: '{quoted}'"))
    problem = only_problem(tmp_path)
    assert problem.line == 7
    assert reason in problem.message


def test_cli_refuses_the_regex_postgresql_takes_seconds_on(tmp_path, capsys):
    # '^(a*)*\1b$' over 60,000 a's and a b kept PostgreSQL busy for 16 s.
    write(tmp_path, "a.yml", definition("- type: click\n  href: {regex: '^(a*)*\\1b$'}"))
    assert cli.main(["definitions", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "a.yml:7: event definition 'some_event': match[0].href.regex: invalid regex" in out
    assert "nested quantifiers: the group '(a*)' is repeated" in out


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"^(a)\1$", "back-references like '\\1' are not supported"),
        (r"(a)(b)\2", "back-references like '\\2' are not supported"),
        (r"(a*)*", "the group '(a*)' is repeated"),
        (r"^(?:/[a-z]+)+$", "the group '(?:/[a-z]+)' is repeated"),
        (r"(?:x(?:ab?))*", "the group '(?:x(?:ab?))' is repeated"),
        (r"(?:a{1,50}){1,50}", "the group '(?:a{1,50})' is repeated"),
        (r"(a*){2}", "the group '(a*)' is repeated"),
        (r"(?:a*?)+", "the group '(?:a*?)' is repeated"),
    ],
)
def test_regex_postgresql_may_run_without_bound(tmp_path, pattern, reason):
    write(tmp_path, "a.yml", definition(f"- url:\n    regex: '{pattern}'"))
    problem = only_problem(tmp_path)
    assert problem.line == 7
    assert reason in problem.message


@pytest.mark.parametrize(
    "pattern",
    [
        r"^/product/[0-9]+/reviews$",
        r"^/shop(?:/[a-z]+)?$",  # '?' repeats nothing
        r"^(?:en|de)/(?:ab){2}x*$",
        r"(a|aa)*b",  # PostgreSQL runs alternation in a DFA, however ambiguous
        r"^(?=.*cart)[a-z/]+$",
    ],
)
def test_regex_postgresql_runs_in_bounded_time_is_accepted(tmp_path, pattern):
    write(tmp_path, "a.yml", definition(f"- url:\n    regex: '{pattern}'"))
    assert problems_of(tmp_path) == []


def test_empty_match(tmp_path):
    write(tmp_path, "a.yml", GOOD.split("    match:")[0] + "    match: []\n")
    problem = only_problem(tmp_path)
    assert problem.line == 5
    assert "'match' is empty" in problem.message


def test_empty_condition(tmp_path):
    write(tmp_path, "a.yml", definition("- {}"))
    problem = only_problem(tmp_path)
    assert problem.line == 6
    assert "match[0] is empty, which would match every event" in problem.message


def test_unknown_event_type(tmp_path):
    write(tmp_path, "a.yml", definition("- type: [click, tap]"))
    problem = only_problem(tmp_path)
    assert problem.line == 6
    assert "unknown event type a string ('tap')" in problem.message
    assert "known: pageview, click" in problem.message


def test_unknown_operator(tmp_path):
    write(tmp_path, "a.yml", definition("- text:\n    glob: 'Add*'"))
    problem = only_problem(tmp_path)
    assert problem.line == 7
    assert "match[0].text: unknown operator 'glob'" in problem.message
    assert "allowed: equals, contains, starts_with, regex" in problem.message


def test_like_is_for_paths_only(tmp_path):
    write(tmp_path, "a.yml", definition("- url:\n    like: '/product/*'"))
    problem = only_problem(tmp_path)
    assert "unknown operator 'like'" in problem.message
    assert "'like' works on path only" in problem.message


def test_two_operators_at_once(tmp_path):
    write(tmp_path, "a.yml", definition("- path: {equals: /a, contains: b}"))
    problem = only_problem(tmp_path)
    assert problem.line == 6
    assert "needs exactly one operator" in problem.message and "equals, contains" in problem.message


def test_selector_on_events_without_an_element(tmp_path):
    write(tmp_path, "a.yml", definition("- type: pageview\n  selector: a.nav-link"))
    problem = only_problem(tmp_path)
    assert problem.line == 7
    assert "tests the clicked element, but type pageview has none" in problem.message


def test_nested_properties_are_refused(tmp_path):
    write(tmp_path, "a.yml", definition("- properties:\n    cart: {items: 2}"))
    problem = only_problem(tmp_path)
    assert problem.line == 7
    assert "properties.cart" in problem.message and "nested objects" in problem.message


def test_nul_characters_are_refused(tmp_path):
    write(tmp_path, "a.yml", definition('- text: "Add\\0to cart"'))
    problem = only_problem(tmp_path)
    assert problem.line == 6
    assert "NUL character" in problem.message


def test_file_shapes(tmp_path):
    write(tmp_path, "empty.yml", "")
    write(tmp_path, "list.yml", "- name: x\n")
    write(tmp_path, "other.yml", "funnels: []\nevents: []\n")
    found = {(Path(p.path).name, p.line, p.message) for p in problems_of(tmp_path)}
    assert ("empty.yml", 1, "the file is empty; expected 'events:' with a list") in found
    assert ("list.yml", 1, "expected a mapping with the key 'events:'") in found
    assert any(
        name == "other.yml" and line == 1 and "unknown top-level key 'funnels'" in message
        for name, line, message in found
    )
    assert ("other.yml", 2, "'events' must be a non-empty list") in found


def test_not_a_definitions_folder(tmp_path):
    problem = only_problem(tmp_path)
    assert "no events/" in problem.message
    assert only_problem(tmp_path / "missing").message == "no such definitions folder"


def test_several_problems_are_all_reported_in_file_order(tmp_path):
    write(tmp_path, "a.yml", GOOD.replace("growth", "[x]") + "  - name: Bad\n")
    lines = [p.line for p in problems_of(tmp_path)]
    assert lines == sorted(lines) and len(lines) >= 3


def test_shorthand_string_means_equals_and_like_compiles_to_a_segment_regex(tmp_path):
    write(tmp_path, "a.yml", definition("- path: /cart\n- path: {like: '/product/*/reviews'}"))
    catalog = check(tmp_path)
    assert catalog.problems == []
    rows = events.compile_definition(catalog.event_definitions[0])
    assert (rows[0].path_op, rows[0].path_value) == ("equals", "/cart")
    assert rows[1].path_op == "regex"
    assert rows[1].path_value == r"^\/product\/[^/]*\/reviews$"


def test_content_hash_follows_what_matches_not_the_prose(tmp_path):
    write(tmp_path, "a.yml", GOOD)
    (original,) = check(tmp_path).event_definitions
    write(
        tmp_path,
        "a.yml",
        GOOD.replace("Clicked add to cart.", "Other words.").replace("growth", "finance"),
    )
    (reworded,) = check(tmp_path).event_definitions
    write(tmp_path, "a.yml", GOOD.replace("#add-to-cart", "#add-to-bag"))
    (changed,) = check(tmp_path).event_definitions
    digest = events.compile_definition
    assert digest(original)[0].content_hash == digest(reworded)[0].content_hash
    assert digest(original)[0].content_hash != digest(changed)[0].content_hash


def test_cli_check_exit_codes_and_output(tmp_path, capsys):
    write(tmp_path, "a.yml", GOOD)
    assert cli.main(["definitions", "check", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "ok: 1 definitions in 1 files"
    write(tmp_path, "b.yml", GOOD)
    assert cli.main(["definitions", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "b.yml:2: duplicate event definition name 'added_to_cart'" in out


def test_cli_show_prints_the_predicate(tmp_path, capsys):
    write(tmp_path, "a.yml", GOOD)
    assert cli.main(["definitions", "show", "added_to_cart", "--path", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "-- added_to_cart:" in out
    assert "compiles to" in out
    assert "(type = 'click' and strpos(hierarchy, '#add-to-cart') > 0 and hierarchy ~ " in out
    assert cli.main(["definitions", "show", "nope", "--path", str(tmp_path)]) == 1
    assert "no event definition named 'nope' (known: added_to_cart)" in capsys.readouterr().err
