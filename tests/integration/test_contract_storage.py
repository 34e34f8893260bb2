"""What the contract's bounds mean for rows PostgreSQL stores."""

from __future__ import annotations

import psycopg
import pytest

from ingestion.contract import MAX_ATTRIBUTE_LENGTH
from ingestion.loader import store_events
from tests.support.factories import LONG_HREF, click_with_href


@pytest.mark.integration
def test_an_event_with_a_60000_character_href_is_stored_bounded(raw_db: psycopg.Connection) -> None:
    assert store_events(raw_db, [click_with_href(LONG_HREF)]) == 1
    href_length, hierarchy_length = raw_db.execute(
        "select length(target_href), length(hierarchy) from raw.events"
    ).fetchone()
    assert href_length == MAX_ATTRIBUTE_LENGTH
    assert hierarchy_length < 2 * MAX_ATTRIBUTE_LENGTH
