"""The pull-request check, for real: production is built, one definition changes, and the
check reports that definition with the counts production had and the change will have."""

from __future__ import annotations

import pytest

from retrolytics import cli
from retrolytics.language import sql
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
