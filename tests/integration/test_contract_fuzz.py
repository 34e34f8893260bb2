"""Hostile input on the loader's parse path: every message becomes a row or a dead letter.

Each generated message goes through ``write_batch`` into a real PostgreSQL, so "a row" means a row
PostgreSQL accepted. The loader also turns an unforeseen exception into a dead letter (its safety
net); these tests assert that the net is never needed, i.e. every refusal is a named contract
violation, so a reason always tells the sender what is wrong.
"""

from __future__ import annotations

import itertools
import json

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.loader import Record, write_batch
from tests.support.factories import click_event, encode, pageview_event

pytestmark = pytest.mark.integration

UNFORESEEN = "message could not be parsed"

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Spellings that are valid JSON text (or nearly) yet break naive decoders, encoders or jsonb.
nasty_tokens = st.sampled_from(
    [
        "1e999",
        "-1e999",
        "9" * 5000,
        '"\\ud800"',
        '"\\udfff\\ud800"',
        '"\\u0000"',
        "NaN",
        "-Infinity",
        '"' + "x" * 70_000 + '"',
        "[" * 600 + "]" * 600,
        "{" + '"a":{' * 400 + "}" * 401,
        '"\\x41"',
        "01",
        "1.",
        '"\t"',
        '{"url": "http://[abc/x"}',
    ]
)


def _with_field(event: dict, field: str, value_json: str) -> bytes:
    """The event's JSON with one top-level field's value replaced by raw JSON text."""
    event = {k: v for k, v in event.items() if k != field}
    body = json.dumps(event)
    return (body[:-1] + f', "{field}": {value_json}}}').encode("utf-8", "surrogatepass")


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    event = draw(st.sampled_from([click_event, pageview_event]))()
    field = draw(
        st.sampled_from([*event, "properties", "context", "unknown", "target", "page", "user_id"])
    )
    if draw(st.booleans()):
        value = draw(nasty_tokens)
    else:
        value = json.dumps(draw(json_values), ensure_ascii=draw(st.booleans()))
    return _with_field(event, field, value)


@st.composite
def deeply_nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=1, max_value=3000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"k":', "}")]))
    return _with_field(
        click_event(), "properties", '{"p":' + opener * depth + "1" + closer * depth + "}"
    )


messages = (
    st.binary(max_size=300)
    | json_values.map(lambda value: json.dumps(value).encode())
    | mutated_events()
    | deeply_nested()
)

_offsets = itertools.count()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=messages)
def test_any_message_becomes_a_row_or_a_named_dead_letter(
    raw_db: psycopg.Connection, payload: bytes
) -> None:
    offset = next(_offsets)
    record = Record("fuzz", 0, offset, b"key", payload, None)

    result = write_batch(raw_db, "fuzz", [record])

    assert result.loaded + result.duplicates + result.dead_letters == 1
    if result.dead_letters:
        reason = raw_db.execute(
            'select reason from raw.dead_letters where "offset" = %s', (offset,)
        ).fetchone()[0]
        assert reason and not reason.startswith(UNFORESEEN), reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            _with_field(click_event(), "properties", '{"a":' + "[" * 500 + "]" * 500 + "}"),
            "levels deep",
        ),
        (_with_field(click_event(), "score", "1e999"), "cannot be stored"),
        (_with_field(click_event(), "score", "9" * 5000), "not storable JSON"),
    ],
    ids=["500 levels deep", "a float beyond jsonb", "an integer of 5000 digits"],
)
def test_a_poison_message_is_a_dead_letter_and_its_neighbours_load(
    raw_db: psycopg.Connection, payload: bytes, reason: str
) -> None:
    batch = [
        Record("t", 0, 0, b"key", encode(pageview_event()), None),
        Record("t", 0, 1, b"key", payload, None),
        Record("t", 0, 2, b"key", encode(pageview_event()), None),
    ]

    result = write_batch(raw_db, "group", batch)

    assert (result.loaded, result.dead_letters) == (2, 1)
    stored = raw_db.execute('select "offset", reason from raw.dead_letters').fetchall()
    assert [offset for offset, _ in stored] == [1]
    assert reason in stored[0][1]
