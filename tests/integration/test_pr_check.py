"""The pull-request check, for real: production is built, one definition changes, and the
check reports that definition with the counts production had and the change will have."""

from __future__ import annotations

import pytest

from retrolytics import cli
from retrolytics.language import sql
from retrolytics.language.check import check
from tests.support.warehouse import Warehouse, copy_project, load_traffic


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
    before = production.query(
        "select count(*) from marts.defined_events where definition_name = 'viewed_product'"
    )[0][0]
    old_regex = production.compiled("viewed_product")[0].path_value

    changed_definitions = tmp_path / "pull-request"
    (changed_definitions / "events").mkdir(parents=True)
    for path in (definitions / "events").iterdir():
        (changed_definitions / "events" / path.name).write_text(path.read_text())
    (changed_definitions / "funnels").mkdir()
    for path in (definitions / "funnels").iterdir():
        (changed_definitions / "funnels" / path.name).write_text(path.read_text())
    change = Warehouse(database_url, project, changed_definitions)
    change.edit_definitions("browse.yml", "like: /product/*\n", "like: /product/11*\n")
    new_regex = change.compiled("viewed_product")[0].path_value
    after = len(change.events_matching("viewed_product"))
    assert 0 < after < before

    monkeypatch.setenv("RETROLYTICS_DATABASE_URL", database_url)
    # dbt's own login would otherwise come from the local stack's settings: another database.
    monkeypatch.setenv("RETROLYTICS_DBT_DATABASE_URL", database_url)
    status = cli.main(
        [
            "definitions",
            "pr-check",
            "--state",
            str(production_state),
            "--scratch-schema",
            "pr_7",
            "--path",
            str(changed_definitions),
            "--project-dir",
            str(project),
        ]
    )
    out = capsys.readouterr().out
    report = out[out.index("event definition(s) changed:") - 2 :]

    assert status == 0, out[-3000:]
    assert report.startswith("1 event definition(s) changed:")
    lines = report.splitlines()
    first = lines.index("== viewed_product (changed)")
    before_header, old_predicate, after_header, new_predicate = lines[first + 1 : first + 5]
    assert before_header.startswith("-- before (production): hash ")
    assert before_header.endswith(f", {before} events matched")
    assert sql.quote_literal(old_regex) in old_predicate
    assert after_header.startswith("-- after (this change): hash ")
    assert after_header.endswith(f", {after} events matched")
    assert sql.quote_literal(new_regex) in new_predicate

    scratch = production.query(
        "select count(*) from pr_7_marts.defined_events where definition_name = 'viewed_product'"
    )
    assert scratch == [(after,)]
    untouched = production.query(
        "select count(*) from marts.defined_events where definition_name = 'viewed_product'"
    )
    assert untouched == [(before,)]

    # The funnels reading viewed_product, with the units that reached each step on each side.
    funnels = out[out.index("funnel(s) changed") - 2 :].split("\n\n== ")[1:]
    reported = {block.splitlines()[0]: block.splitlines()[2:] for block in funnels}
    declared = check(changed_definitions).declarations["funnels"]
    readers = {f.name for f in declared if "viewed_product" in f.definitions_used()}
    assert readers and len(readers) < len(declared)
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
        assert any(row[-2] != row[-1] for row in rows)  # the narrower step changed counts


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
