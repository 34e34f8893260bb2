"""The path language: what it accepts, what it refuses (with file:line), what it compiles to."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from retrolytics.language import paths
from retrolytics.language.check import check, load_catalog
from retrolytics.language.sources import parse_yaml
from tests.support.paths import REPO

VALID = """\
paths:
  - name: after_cart
    description: After the cart.
    owner: growth
    start: viewed_cart
    steps: 4
"""


def parsed(text: str) -> tuple[list, list[str]]:
    document = parse_yaml(text, "p.yml")
    found, problems = [], [str(p) for p in document.problems]
    for index, item in enumerate(document.data["paths"]):
        declaration, item_problems = paths.parse_path(
            item, "p.yml", document.data["paths"].line_of(index), index
        )
        problems += [str(p) for p in item_problems]
        found += [declaration] if declaration else []
    return found, problems


def with_lines(*lines: str) -> str:
    return VALID + "".join(f"    {line}\n" for line in lines)


def test_a_valid_path_parses_with_defaults() -> None:
    (declaration,), problems = parsed(VALID)
    assert problems == []
    assert declaration.anchor_at == "start" and declaration.anchor.label == "viewed_cart"
    assert (declaration.steps, declaration.step_kind, declaration.unit) == (
        4,
        "definitions",
        "device",
    )
    assert (declaration.gap_minutes, declaration.collapse_repeats, declaration.top_paths) == (
        30,
        True,
        20,
    )
    assert declaration.step_definitions(["b_x", "a", "a_b", "ab"]) == ("a", "a_b", "ab", "b_x")


@pytest.mark.parametrize(
    ("extra", "line", "message"),
    [
        (["end: viewed_home"], 2, "exactly one of 'start'"),
        (["step_kind: clicks"], 7, "'step_kind' must be one of definitions, pageviews, both"),
        (["unit: session"], 7, "'unit' must be one of device, user"),
        (["gap: 10m"], 7, "'gap' takes only 'session'"),
        (["gap: session", "gap_minutes: 5"], 7, "not both"),
        (["gap_minutes: 0"], 7, "'gap_minutes' must be a whole number from 1"),
        (["collapse_repeats: maybe"], 7, "'collapse_repeats' must be true or false"),
        (["step_kind: pageviews", "definitions: [a]"], 8, "not pageviews"),
        (["definitions: [a, b, a]"], 7, "names a more than once"),
        (["exclude: [viewed_cart]"], 7, "exclude[0]: viewed_cart is the anchor itself"),
        (["exclude:", "  - type: tap"], 8, "exclude[0].type: unknown event type 'tap'"),
        (["colour: red"], 7, "unknown key 'colour' in a path"),
        (["top_paths: 0"], 7, "'top_paths' must be a whole number from 1 to 1000"),
    ],
)
def test_bad_paths_are_refused_with_file_and_line(
    extra: list[str], line: int, message: str
) -> None:
    found, problems = parsed(with_lines(*extra))
    assert found == []
    assert any(
        p.startswith(f"p.yml:{line}: path 'after_cart': ") and message in p for p in problems
    ), problems


def test_a_step_limit_out_of_range_is_refused() -> None:
    found, problems = parsed(VALID.replace("steps: 4", "steps: 21"))
    assert found == []
    assert problems == [
        "p.yml:6: path 'after_cart': 'steps' must be a whole number from 2 to 20; got a number (21)"
    ]


def test_missing_steps_and_a_raw_anchor(tmp_path: Path) -> None:
    text = VALID.replace("    steps: 4\n", "").replace(
        "start: viewed_cart", "end:\n      type: custom\n      name: paid"
    )
    found, problems = parsed(text)
    assert found == []
    assert problems == [
        "p.yml:2: path 'after_cart': missing required key 'steps' (a whole number, 2 to 20)"
    ]
    (declaration,), _ = parsed(text + "    steps: 3\n")
    assert (declaration.anchor_at, declaration.anchor.label) == ("end", "custom:paid")


def test_unknown_definitions_are_named_with_their_line(tmp_path: Path) -> None:
    root = tmp_path / "definitions"
    shutil.copytree(REPO / "definitions", root)
    (root / "paths" / "extra.yml").write_text(
        VALID.replace("viewed_cart", "viewed_kart") + "    definitions: [added_to_cart, nope]\n"
    )
    problems = [str(p) for p in check(root).problems]
    assert any(
        p.endswith("extra.yml:5: path 'after_cart': start: unknown event definition "
                   "'viewed_kart'; did you mean 'viewed_cart'?") for p in problems
    ), problems  # fmt: skip
    assert any("extra.yml:7: path 'after_cart': definitions: unknown event definition 'nope'" in p
               for p in problems)  # fmt: skip


def test_the_shipped_paths_compile_to_seeds() -> None:
    catalog = load_catalog(REPO / "definitions")
    seeds = paths.seed_files(catalog)
    rows = list(csv.DictReader(io.StringIO(seeds[paths.PATHS_SEED])))
    assert {r["path_name"] for r in rows} == {p.name for p in catalog.paths} != set()
    nodes = list(csv.DictReader(io.StringIO(seeds[paths.PATH_NODES_SEED])))
    to_checkout = [n for n in nodes if n["path_name"] == "to_checkout"]
    assert [n["definition_name"] for n in to_checkout if n["role"] == "step"] == [
        "added_to_cart", "viewed_cart", "viewed_product", "searched"
    ]  # fmt: skip
    shown = paths.describe_compiled(catalog.paths[1], [d.name for d in catalog.event_definitions])
    assert "end: viewed_checkout" in shown and "a pageview's page_path" in shown


def test_the_hash_follows_what_the_path_computes_not_its_words() -> None:
    (base,), _ = parsed(VALID)
    (reworded,), _ = parsed(VALID.replace("After the cart.", "Something else."))
    (longer,), _ = parsed(VALID.replace("steps: 4", "steps: 5"))
    known = ["viewed_cart", "added_to_cart"]
    assert paths.content_hash(base, known) == paths.content_hash(reworded, known)
    assert paths.content_hash(base, known) != paths.content_hash(longer, known)
    # Every definition is a step here: a new definition changes what the path computes.
    assert paths.content_hash(base, known) != paths.content_hash(base, [*known, "searched"])
