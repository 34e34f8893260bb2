"""The dashboard bundle `retrolytics bi up` imports, generated from the project's metadata."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import yaml

from retrolytics.bi import bundle, metadata
from retrolytics.bi.superset import PASSWORD_MASK, sqlalchemy_url
from tests.support.paths import REPO

MASKED = sqlalchemy_url(
    "postgresql://bi_reader:s3cret@127.0.0.1:5432/retrolytics", password=PASSWORD_MASK
)


def shipped() -> metadata.DashboardMetadata:
    return metadata.read(REPO / "definitions", REPO / "dbt_project")


def test_every_declared_funnel_and_retention_gets_its_charts() -> None:
    described = shipped()
    titles = {chart.title for chart in bundle.layout(described).charts}
    assert described.funnels and described.retentions
    for funnel in described.funnels:
        expected = {f"{funnel.name}: steps, all days", f"{funnel.name}: conversion by day"}
        assert expected <= titles
        by_value = [t for t in titles if t.startswith(f"{funnel.name}: conversion by ")]
        assert len(by_value) == (2 if funnel.breakdown else 1)
    assert {f"{item.name}: retention" for item in described.retentions} <= titles
    assert bundle.BIG_NUMBER_TITLE in titles


def test_the_same_metadata_gives_the_same_bundle_and_ids() -> None:
    first = bundle.files(shipped(), MASKED)
    second = bundle.files(shipped(), MASKED)
    assert first == second
    uuids = [doc["uuid"] for path, doc in first.items() if path != "metadata.yaml"]
    assert len(uuids) == len(set(uuids))
    charts = [doc for path, doc in first.items() if path.startswith("charts/")]
    assert len({chart["slice_name"] for chart in charts}) == len(charts)


def test_the_bundle_holds_no_password() -> None:
    packed = bundle.zipped(bundle.files(shipped(), MASKED))
    with zipfile.ZipFile(io.BytesIO(packed)) as archive:
        text = "".join(archive.read(name).decode() for name in archive.namelist())
        database = yaml.safe_load(archive.read(f"{bundle.ROOT}/{bundle.DATABASE_FILE}"))
    assert "s3cret" not in text
    assert database["sqlalchemy_uri"] == (
        "postgresql+psycopg2://bi_reader:XXXXXXXXXX@127.0.0.1:5432/retrolytics"
    )


def test_a_new_funnel_is_a_new_chart_and_the_others_keep_their_ids(tmp_path: Path) -> None:
    definitions = tmp_path / "definitions"
    shutil.copytree(REPO / "definitions", definitions)
    before = {c.title: c.uuid for c in bundle.layout(shipped()).charts}
    (definitions / "funnels" / "quick_cart.yml").write_text(
        "funnels:\n"
        "  - name: quick_cart\n"
        "    description: A product view, then the cart.\n"
        "    owner: growth\n"
        "    steps: [viewed_product, added_to_cart]\n"
        "    conversion_window: 1h\n"
    )
    after = {
        c.title: c.uuid
        for c in bundle.layout(metadata.read(definitions, REPO / "dbt_project")).charts
    }
    assert {t: after[t] for t in before} == before
    assert set(after) - set(before) == {
        "quick_cart: steps, all days",
        "quick_cart: steps and conversion by month",
        "quick_cart: conversion by day",
    }


def test_step_names_reach_sql_as_escaped_literals() -> None:
    funnel = metadata.FunnelCharts("it's", "", ("a'b", "c"), None)
    expression = bundle.step_column([funnel])["expression"]
    assert "funnel_name = 'it''s' AND step_number = 1 THEN '1. a''b'" in expression
