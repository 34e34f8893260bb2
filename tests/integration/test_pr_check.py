"""The pull-request check, for real: production is built, one definition changes, and the
check reports that definition with the counts production had and the change will have."""

from __future__ import annotations

import html
import re
import shutil
from datetime import UTC

import pytest

from retrolytics import cli
from retrolytics.language import sql
from retrolytics.language.check import check
from retrolytics.warehouse import pr_review
from tests.support.warehouse import Warehouse, copy_project, load_traffic

OLD_SELECTOR = "div.product-card a.product-link"
# Keeps the product cards of the listing only, and takes the header's links: events both newly
# match and no longer match.
NEW_SELECTOR = "main.page-products a.product-link, header a.nav-link"


@pytest.mark.integration
def test_pr_check_reports_the_changed_definition_with_counts(
    database_url, tmp_path, monkeypatch, capsys
):
    project, definitions = copy_project(tmp_path)
    load_traffic(database_url)
    production = Warehouse(database_url, project, definitions)
    production.compile()
    production_state = tmp_path / "production-target"
    production.dbt("build", target_path=production_state)
    # As deploy.yml keeps them: production's declarations beside its manifest.
    shutil.copytree(definitions, production_state / "definitions")
    before = production.query(
        "select count(*) from marts.defined_events where definition_name = %s",
        ("clicked_product_card",),
    )[0][0]
    old_regex = production.compiled("clicked_product_card")[0].selector_regex

    changed_definitions = tmp_path / "pull-request"
    shutil.copytree(definitions, changed_definitions)
    change = Warehouse(database_url, project, changed_definitions)
    change.edit_definitions(
        "browse.yml", f"selector: {OLD_SELECTOR}\n", f"selector: {NEW_SELECTOR}\n"
    )
    new_regex = change.compiled("clicked_product_card")[0].selector_regex
    after = len(change.events_matching("clicked_product_card"))

    monkeypatch.setenv("RETROLYTICS_DATABASE_URL", database_url)
    # dbt's own login would otherwise come from the local stack's settings: another database.
    monkeypatch.setenv("RETROLYTICS_DBT_DATABASE_URL", database_url)
    comment = tmp_path / "comment.md"
    status = cli.main(
        [
            "definitions", "pr-check",
            "--state", str(production_state),
            "--scratch-schema", "pr_7",
            "--path", str(changed_definitions),
            "--project-dir", str(project),
            "--format", "markdown",
            "--output", str(comment),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out[-3000:]
    scratch = production.query(
        "select count(*) from pr_7_marts.defined_events where definition_name = %s",
        ("clicked_product_card",),
    )
    assert scratch == [(after,)]
    untouched = production.query(
        "select count(*) from marts.defined_events where definition_name = %s",
        ("clicked_product_card",),
    )
    assert untouched == [(before,)]

    declared = check(changed_definitions).declarations["funnels"]
    readers = {f.name for f in declared if "clicked_product_card" in f.definitions_used()}
    assert readers and len(readers) < len(declared)
    # The text report stays on stdout, for the CI log.
    _assert_text_report(out, production, readers, before, after, old_regex, new_regex)
    _assert_markdown(
        comment.read_text(), production, readers, before, after, (old_regex, new_regex)
    )


def _assert_text_report(out, production, readers, before, after, old_regex, new_regex):
    report = out[out.index("event definition(s) changed:") - 2 :]
    assert report.startswith("1 event definition(s) changed:")
    lines = report.splitlines()
    first = lines.index("== clicked_product_card (changed)")
    before_header, old_predicate, after_header, new_predicate = lines[first + 1 : first + 5]
    assert before_header.startswith("-- before (production): hash ")
    assert before_header.endswith(f", {before} events matched")
    assert sql.quote_literal(old_regex) in old_predicate
    assert after_header.startswith("-- after (this change): hash ")
    assert after_header.endswith(f", {after} events matched")
    assert sql.quote_literal(new_regex) in new_predicate

    # The funnels reading the definition, with the units that reached each step on each side.
    funnels = out[out.index("funnel(s) changed") - 2 :].split("\n\n== ")[1:]
    reported = {block.splitlines()[0]: block.splitlines()[2:] for block in funnels}
    assert reported.keys() == {f"{name} (changed)" for name in readers}, out[-3000:]
    for name in readers:
        rows = [line.split() for line in reported[f"{name} (changed)"]]
        assert [(int(row[-2]), int(row[-1])) for row in rows] == list(
            zip(
                _units_reaching(production, "marts", name),
                _units_reaching(production, "pr_7_marts", name),
                strict=True,
            )
        )
        assert any(row[-2] != row[-1] for row in rows)  # the changed step changed counts


def _assert_markdown(markdown, production, readers, before, after, regexes):
    assert markdown.startswith(pr_review.MARKER)
    section = _section(markdown, "#### `clicked_product_card` (changed)")
    # Both selectors as written, in the YAML of each side; never the compiled regexes.
    old_yaml, new_yaml = re.findall(r"```yaml\n(.*?)\n```", section, re.DOTALL)
    assert f"selector: {OLD_SELECTOR}" in old_yaml and OLD_SELECTOR not in new_yaml
    assert f"selector: {NEW_SELECTOR}" in new_yaml
    assert not any(regex in markdown for regex in regexes)
    assert f"| events matched | {before:,} | {after:,} |" in section

    # The examples are events that really newly match / no longer match: both sides, queried.
    sides = {"newly match": ("pr_7_marts", "marts"), "no longer match": ("marts", "pr_7_marts")}
    for (label, (side, other)), regex in zip(sides.items(), reversed(regexes), strict=True):
        only = production.query(
            f"select s.event_id::text from {side}.defined_events as s"
            " where s.definition_name = 'clicked_product_card' and not exists ("
            f" select from {other}.defined_events as o where o.definition_name ="
            " s.definition_name and o.event_id = s.event_id) order by s.occurred_at, s.event_id"
        )
        heading = re.search(rf"\*\*([0-9,]+) events? {label}\*\*", section)
        assert heading and int(heading[1].replace(",", "")) == len(only) > 0, section
        rows = _table_after(section, heading.end())
        assert [row[4] for row in rows] == [event_id for (event_id,) in only[:5]]
        for time, path, text, part, event_id in rows:
            ((occurred_at, page_path, target_text, hierarchy),) = production.query(
                "select occurred_at, page_path, target_text, hierarchy from staging.stg_events"
                " where event_id = %s",
                (event_id,),
            )
            assert time == occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
            assert (path, text) == (page_path, target_text or "")
            # The hierarchy cut to whole elements the selector (of that side) matches.
            assert f";{part};" in f";{hierarchy};" and part != hierarchy
            assert re.search(regex, part)

    for name in readers:
        rows = _table_after(_section(markdown, f"#### `{name}` (changed)"), 0)
        assert [(int(r[1].replace(",", "")), int(r[2].replace(",", ""))) for r in rows] == list(
            zip(
                _units_reaching(production, "marts", name),
                _units_reaching(production, "pr_7_marts", name),
                strict=True,
            )
        )


def _section(markdown: str, heading: str) -> str:
    start = markdown.index(heading)
    end = markdown.find("\n#### ", start + 1)
    return markdown[start : end if end > 0 else None]


def _table_after(text: str, position: int) -> list[list[str]]:
    """The body rows of the first Markdown table after ``position``, cells as plain text."""
    lines = text[position:].split("\n| ", 1)[1].split("\n\n", 1)[0].splitlines()
    return [
        [html.unescape(re.sub(r"</?code>", "", cell)).replace("\\", "") for cell in row]
        for row in (line.strip("| ").split(" | ") for line in lines[2:])
    ]


def _units_reaching(warehouse: Warehouse, schema: str, funnel: str) -> list[int]:
    """Units that reached each step of a funnel over all history, from one side's facts."""
    steps = warehouse.query(
        f"select max(step_count) from {schema}.mart_funnel_conversion where funnel_name = %s",
        (funnel,),
    )[0][0]
    return [
        warehouse.query(
            f"select count(distinct unit_id) from {schema}.fct_funnel_entries"
            " where funnel_name = %s and outcome <> 'excluded' and furthest_step >= %s",
            (funnel, step),
        )[0][0]
        for step in range(1, steps + 1)
    ]


def test_pr_check_stops_at_invalid_definitions(tmp_path, monkeypatch, capsys):
    state = tmp_path / "state"
    state.mkdir()
    (state / "manifest.json").write_text("{}")
    (tmp_path / "defs" / "events").mkdir(parents=True)
    (tmp_path / "defs" / "events" / "a.yml").write_text(
        "events:\n  - name: Bad Name\n    description: d\n    owner: o\n"
        "    match: [{type: click}]\n"
    )
    status = cli.main(
        ["definitions", "pr-check", "--state", str(state), "--path", str(tmp_path / "defs")]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "a.yml:2: event definition 'Bad Name': the name must be snake_case" in out
    assert "1 problem(s) found" in out


def test_pr_check_needs_a_production_manifest(tmp_path, capsys):
    status = cli.main(["definitions", "pr-check", "--state", str(tmp_path)])
    assert status == 2
    assert "no manifest.json here" in capsys.readouterr().out


def test_pr_check_names_a_missing_production_definitions_folder(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text("{}")
    missing = tmp_path / "nowhere"
    status = cli.main(
        [
            "definitions",
            "pr-check",
            "--state",
            str(tmp_path),
            "--production-definitions",
            str(missing),
        ]
    )
    assert status == 2
    assert f"{missing}: no such folder (--production-definitions)" in capsys.readouterr().out


@pytest.mark.integration
def test_pr_check_tries_every_regex_in_postgresql(database_url, tmp_path, monkeypatch, capsys):
    state = tmp_path / "state"
    state.mkdir()
    (state / "manifest.json").write_text("{}")
    (tmp_path / "defs" / "events").mkdir(parents=True)
    (tmp_path / "defs" / "events" / "a.yml").write_text(
        "events:\n"
        "  - name: quantified_lookahead\n"
        "    description: d\n"
        "    owner: o\n"
        "    match:\n"
        "      - type: click\n"
        "        text: {regex: 'x(?=a)*'}\n"  # Python accepts it, PostgreSQL does not
    )
    assert cli.main(["definitions", "check", str(tmp_path / "defs")]) == 0
    capsys.readouterr()
    monkeypatch.setenv("RETROLYTICS_DATABASE_URL", database_url)
    # dbt's own login would otherwise come from the local stack's settings: another database.
    monkeypatch.setenv("RETROLYTICS_DBT_DATABASE_URL", database_url)
    status = cli.main(
        [
            "definitions", "pr-check",
            "--state", str(state),
            "--path", str(tmp_path / "defs"),
            "--project-dir", str(tmp_path / "project"),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 1
    assert "a.yml:6: event definition 'quantified_lookahead': PostgreSQL refuses the regex" in out
    assert "quantifier operand invalid" in out
