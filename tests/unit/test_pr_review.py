"""The review comment's parts that need no database: declarations as written, the matching
part of a hierarchy, and the Markdown (the whole comment on real data is tested in
tests/integration/test_pr_check.py)."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from retrolytics.language import events
from retrolytics.language.check import check
from retrolytics.language.selectors import compile_selector
from retrolytics.language.sources import written_items
from retrolytics.warehouse import pr_review
from retrolytics.warehouse.pr_check import (
    DefinitionChange,
    Example,
    Examples,
    FunnelChange,
    FunnelSide,
    MatchDifference,
    Outcome,
    matching_part,
)
from tests.support.paths import REPO

NAV_CLICK = (
    "html:nth-child(1);body:nth-child(2);header.site-header:nth-child(1);"
    'nav.main-nav:nth-child(2);a.nav-link:nth-child(3)[href="/cart"];span.label:nth-child(1)'
)


@pytest.mark.parametrize(
    ("selectors", "part"),
    [
        (  # a descendant selector: from the outer element it names to the inner one
            ["header a.nav-link"],
            'header.site-header:nth-child(1);nav.main-nav:nth-child(2);a.nav-link:nth-child(3)[href="/cart"]',
        ),
        (["nav > a"], 'nav.main-nav:nth-child(2);a.nav-link:nth-child(3)[href="/cart"]'),
        (["span.label"], "span.label:nth-child(1)"),
        # the first selector that matches decides; one that does not is passed over
        (["form#cart", "a[href]"], 'a.nav-link:nth-child(3)[href="/cart"]'),
        ([], "span.label:nth-child(1)"),  # no selector: the target element
    ],
)
def test_matching_part_is_the_run_of_elements_the_selector_needs(selectors, part):
    assert matching_part(NAV_CLICK, [compile_selector(s) for s in selectors]) == part


def test_matching_part_keeps_an_escaped_separator_inside_an_element():
    hierarchy = 'body:nth-child(2);div.card[data-name="a\\;b"];a.link'
    part = matching_part(hierarchy, [compile_selector('div[data-name="a;b"]')])
    assert part == 'div.card[data-name="a\\;b"]'
    assert matching_part(None, [compile_selector("a")]) is None


def test_written_items_keep_what_the_author_wrote():
    text = (
        "# the file's comment\n"
        "events:\n"
        "  - name: first   # why it exists\n"
        "    match: {type: click}\n"
        "\n"
        "  # about the second\n"
        "  - name: second\n"
        "    match:\n"
        '      - selector: "#a, #b"\n'
    )
    assert written_items(text, "events") == {
        3: "- name: first   # why it exists\n  match: {type: click}",
        7: '- name: second\n  match:\n    - selector: "#a, #b"',
    }
    assert written_items("events: [", "events") == {}
    assert written_items("funnels: []", "events") == {}


def _definitions(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(REPO / "definitions", root)
    return root


def _edit(root: Path, file: str, old: str, new: str) -> None:
    path = root / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _conditions(catalog, name):
    (definition,) = [d for d in catalog.event_definitions if d.name == name]
    return events.compile_definition(definition)


def _example(text: str | None, part: str | None) -> Example:
    at = datetime(2026, 11, 18, 9, 41, 27, tzinfo=UTC)
    return Example("5bc9b9ae-dba9-497b-a3c3-d55f44d3becd", at, "/search", text, part)


@pytest.fixture
def sides(tmp_path):
    production, change = _definitions(tmp_path, "prod"), _definitions(tmp_path, "change")
    _edit(
        change,
        "events/browse.yml",
        "selector: div.product-card a.product-link\n",
        "selector: main.page-products a.product-link  # listing only\n",
    )
    _edit(
        change,
        "events/browse.yml",
        "description: A visitor saw the home page.",
        "description: A visitor saw the ```home``` page.",
    )
    _edit(change, "paths/shop_journeys.yml", "top_paths: 20", "top_paths: 25")
    _edit(change, "funnels/search_to_cart.yml", "within: 30m", "within: 20m")
    return check(production), check(change)


def _outcome(production, change, *, build_succeeded=True) -> Outcome:
    name = "clicked_product_card"
    definition = DefinitionChange(
        name, _conditions(production, name), _conditions(change, name), 294, 120
    )
    examples = Examples(
        2, (_example("Shoes | *new*", "div.product-card;a.product-link"), _example(None, None))
    )
    steps = ("custom:search_performed", "clicked_product_card", "added_to_cart")
    funnel = FunnelChange(
        "search_to_cart",
        FunnelSide("a", steps, (55, 40, 5)),
        FunnelSide("b", steps, (55, 23, 1_000)),
    )
    return Outcome(
        definitions=[definition],
        funnels=[funnel] if build_succeeded else None,
        differences={name: MatchDifference(Examples(0, ()), examples)} if build_succeeded else {},
        build_succeeded=build_succeeded,
        scratch_schema="pr_7",
    )


def test_the_comment_shows_each_side_as_written(sides):
    production, change = sides
    markdown = pr_review.render(_outcome(production, change), change=change, production=production)
    assert markdown.startswith(pr_review.MARKER + "\n")
    definition = markdown[markdown.index("#### `clicked_product_card` (changed)") :]
    before, after = re.findall(r"```yaml\n(.*?)\n```", definition, re.DOTALL)[:2]
    assert "selector: div.product-card a.product-link" in before
    assert "selector: main.page-products a.product-link  # listing only" in after
    assert "| events matched | 294 | 120 |" in definition
    assert "No events newly match." in definition
    assert "**2 events no longer match**:" in definition  # all shown: no "oldest" note
    # Cells carry no Markdown or HTML of their own.
    assert r"| Shoes \| \*new\* |" in definition
    assert "<code>div.product-card;a.product-link</code>" in definition
    assert "| 2026-11-18 09:41:27 | <code>/search</code> |  |  |" in definition


def test_a_description_change_is_listed_and_a_backtick_run_gets_a_longer_fence(sides):
    production, change = sides
    markdown = pr_review.render(_outcome(production, change), change=change, production=production)
    assert "#### `viewed_home` (description or owner only: matches the same events)" in markdown
    assert "````yaml\n- name: viewed_home\n  description: A visitor saw the ```home```" in markdown


def test_funnels_paths_and_retention(sides):
    production, change = sides
    markdown = pr_review.render(_outcome(production, change), change=change, production=production)
    funnel = markdown[markdown.index("#### `search_to_cart` (changed)") :]
    assert "within: 30m" in funnel and "within: 20m" in funnel
    assert "| 2 clicked\\_product\\_card | 40 | 23 | -17 |" in funnel
    assert "| 3 added\\_to\\_cart | 5 | 1,000 | +995 |" in funnel
    paths = markdown[markdown.index("### Paths: 1 changed") :]
    assert "#### `after_product_view` (changed)" in paths
    assert "top_paths: 20" in paths and "top_paths: 25" in paths
    assert "### Retention" not in markdown  # nothing changed there


def test_a_failed_build_and_unknown_production_declarations_are_said(sides):
    production, change = sides
    outcome = _outcome(production, change, build_succeeded=False)
    markdown = pr_review.render(outcome, change=change, production=None)
    assert "**The dbt build failed**" in markdown
    assert "Step counts not compared: the dbt build failed." in markdown
    assert "the YAML before is not shown" in markdown
    section = markdown[markdown.index("#### `clicked_product_card` (changed)") :]
    assert "**Before" not in section and "**After (this change)**" in section


def test_the_comment_fits_githubs_limit(sides, monkeypatch):
    production, change = sides
    monkeypatch.setattr(pr_review, "MAX_LENGTH", 2_000)
    markdown = pr_review.render(_outcome(production, change), change=change, production=production)
    assert len(markdown) <= 2_000
    assert markdown.endswith("the job's log has the rest._")
