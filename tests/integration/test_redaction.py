"""Redaction on the ingest path: the collector redacts before Kafka, the loader before
PostgreSQL (for events that reached the topic another way), and the loader counts it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psycopg
import pytest

from ingestion.collector import CollectorConfig, create_app, serving_in_background
from ingestion.loader import Loader
from ingestion.settings import Settings
from retrolytics.language import privacy
from retrolytics.language.check import load_redaction
from tests.support.factories import click_event, pageview_event
from tests.support.kafka import consume_all
from tests.support.loading import produce_events

pytestmark = pytest.mark.integration

SECRET_URL = "https://shop.test/reset?token=s3cret&step=2"


@pytest.fixture
def rules(tmp_path: Path) -> privacy.Redaction:
    (tmp_path / "privacy.yml").write_text(
        "privacy:\n  drop_text_for_selectors: ['form#cart']\n"
        "  properties:\n    drop: [email]\n  ip: truncated\n"
    )
    compiled, problems = privacy.check(tmp_path, "privacy.yml")
    assert problems == []
    return compiled


def test_the_collector_redacts_before_kafka_sees_the_event(
    settings: Settings, rules: privacy.Redaction
) -> None:
    config = CollectorConfig(settings.kafka_bootstrap, settings.topic, redaction=rules)
    event = click_event(page={"url": SECRET_URL}, properties={"email": "a@b.c", "n": 1})
    with serving_in_background(create_app(config)) as url:
        answer = httpx.post(f"{url}/v1/events", json=event, timeout=30)
    assert answer.status_code == 200, answer.text

    (message,) = consume_all(settings.kafka_bootstrap, settings.topic, expected=1)
    stored = json.loads(message.value())
    assert stored["page"]["url"] == "https://shop.test/reset?step=2"
    assert stored["properties"] == {"n": 1}
    assert "text" not in stored["target"]
    assert stored["context"]["ip"] == "127.0.0.0"  # the loopback client, cut to its /24
    assert b"s3cret" not in message.value() and b"a@b.c" not in message.value()


def test_the_loader_redacts_events_from_elsewhere_and_counts_them(
    settings: Settings, raw_db: psycopg.Connection, rules: privacy.Redaction
) -> None:
    produce_events(
        settings,
        [pageview_event(page={"url": SECRET_URL}, context={"ip": "203.0.113.9"}), pageview_event()],
    )
    loader = Loader(settings, redaction=rules)
    try:
        stats = loader.drain()
    finally:
        loader.close()

    assert (stats.loaded, stats.redacted) == (2, 1)
    assert "1 redacted" in stats.summary()
    urls = [u for (u,) in raw_db.execute("select page_url from raw.events order by 1")]
    assert "https://shop.test/reset?step=2" in urls and not any("s3cret" in u for u in urls)
    ips = [ip for (ip,) in raw_db.execute("select context ->> 'ip' from raw.events")]
    assert sorted(ips, key=str) == sorted(["203.0.113.0", None], key=str)


def test_dagsters_load_job_applies_the_declared_privacy_rules(
    settings: Settings, raw_db: psycopg.Connection
) -> None:
    """``load_raw_events`` stores under the rules of the code location's ``privacy.yml``, as
    ``retrolytics load`` does, not under the loader's defaults (which drop no property)."""
    from orchestration.assets.raw import load_raw_events
    from orchestration.project import DEFINITIONS_DIR
    from orchestration.resources import RetrolyticsResource

    dropped = sorted(load_redaction(DEFINITIONS_DIR).drop_properties)
    assert dropped, "the shipped privacy.yml drops properties; this test loads them"
    produce_events(
        settings, [click_event(properties={**dict.fromkeys(dropped, "private"), "plan": "pro"})]
    )
    resource = RetrolyticsResource(
        database_url=settings.database_url,
        kafka_bootstrap=settings.kafka_bootstrap,
        topic=settings.topic,
        consumer_group=settings.consumer_group,
    )
    result = load_raw_events.execute_in_process(resources={"retrolytics": resource})

    assert result.success
    (properties,) = raw_db.execute("select properties from raw.events").fetchone()
    assert properties == {"plan": "pro"}
