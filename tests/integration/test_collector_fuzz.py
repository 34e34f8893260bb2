"""Hostile bodies against the served collector and the real Kafka: never a 5xx, and whatever it
acknowledges is on the topic and loads.

"Loads" is checked with the loader's own code (``parse_message`` and ``to_row``) on the messages
read back from Kafka, so a 200 for an event the loader would dead-letter fails the test.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.collector import (
    EVENTS_PATH,
    MAX_BATCH_EVENTS,
    MAX_BODY_BYTES,
    CollectorConfig,
    create_app,
    serving_in_background,
)
from ingestion.contract import EVENT_COLUMNS, MAX_JSON_DEPTH, parse_message, to_row
from tests.support.factories import click_event, iso, pageview_event
from tests.support.kafka import consume_all

pytestmark = pytest.mark.integration

CONTENT_TYPES = [None, "application/json", "text/plain;charset=UTF-8"]

# -- JSON text with odd spellings ---------------------------------------------------------------


class Raw(str):
    """JSON text written into a body as it is (numbers and tokens Python would not write)."""


ODD_STRINGS = ["\ud800", "\udfff", "emoji cut \ud83d", "\udc00\ud800", "\x00", "NaN"]
ODD_STRINGS += ["Infinity", "1e999", "\u2028", "\ufeff", "\\", '"', "\U0001f600", "", "   "]
odd_strings = st.text(max_size=12) | st.sampled_from(ODD_STRINGS)
odd_tokens = st.sampled_from(
    [Raw(token) for token in ("NaN", "-Infinity", "1e999", "-2.5E+400", "1e-400", "-0", "1.")]
    + [Raw("9" * 5000), Raw("-" + "9" * 4300), Raw("123456789012345678901234567890")]
    + [Raw('"' + "x" * (MAX_BODY_BYTES + 1) + '"'), Raw('"\\x41"'), Raw("01"), Raw("tru")]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | odd_strings
)


def containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=4) | st.dictionaries(odd_strings, inner, max_size=4)


def depth(value: Any) -> int:
    if isinstance(value, dict | list):
        members = value.values() if isinstance(value, dict) else value
        return 1 + max((depth(member) for member in members), default=0)
    return 0


json_values = st.recursive(scalars | odd_tokens, containers, max_leaves=12)
# What Python writes and reads back unchanged, well inside the depth bound.
plain_values = st.recursive(scalars, containers, max_leaves=12).filter(lambda v: depth(v) < 20)


def to_json(value: Any, ascii_only: bool) -> str:
    """JSON text of ``value``; ``Raw`` parts verbatim, strings raw UTF-8 or escaped."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        members = (f"{to_json(k, ascii_only)}:{to_json(v, ascii_only)}" for k, v in value.items())
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def encode(text: str, lone_surrogates: str = "surrogatepass") -> bytes:
    """UTF-8, with lone surrogates as bytes that are not UTF-8 (what a broken client sends) or,
    with ``backslashreplace``, as JSON escapes (what ``JSON.stringify`` writes)."""
    return text.encode("utf-8", lone_surrogates)


surrogate_spellings = st.sampled_from(["surrogatepass", "backslashreplace"])


# -- events -------------------------------------------------------------------------------------


def now_iso() -> str:
    return iso(datetime.now(UTC))


@st.composite
def valid_events(draw: st.DrawFn) -> dict:
    """Events the contract accepts, with odd text wherever free text is allowed."""
    factory = draw(st.sampled_from([click_event, pageview_event]))
    ago = draw(st.integers(min_value=0, max_value=300 * 24 * 3600))
    event = factory(
        event_id=str(draw(st.uuids())),
        occurred_at=iso(datetime.now(UTC) - timedelta(seconds=ago)),
        anonymous_id=draw(
            st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40)
        ),
        properties=draw(st.dictionaries(odd_strings, plain_values, max_size=4)),
        context=draw(st.dictionaries(odd_strings, scalars, max_size=3)),
    )
    event["page"]["title"] = draw(odd_strings)
    if "target" in event:
        event["target"]["text"] = draw(odd_strings)
    if draw(st.booleans()):
        event["x_" + draw(odd_strings)] = draw(plain_values)
    return event


FIELDS = ["event_id", "type", "name", "occurred_at", "received_at", "anonymous_id", "user_id"]
FIELDS += ["session_id", "page", "context", "target", "properties", "unknown"]


@st.composite
def mutated_events(draw: st.DrawFn) -> dict:
    """A valid event with a few fields deleted or replaced by anything JSON can hold."""
    event = draw(valid_events())
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        field = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            event.pop(field, None)
        else:
            event[field] = draw(json_values | st.sampled_from(["", "9999-12-31T23:59:59-14:00"]))
    return event


@st.composite
def event_bodies(draw: st.DrawFn) -> bytes:
    """One event or a batch, some valid, some mutated, sometimes more than a batch may hold."""
    events = mutated_events() | valid_events()
    if draw(st.booleans()):
        document: Any = draw(events)
    elif draw(st.integers(min_value=0, max_value=9)) == 0:
        document = [draw(valid_events())] * (MAX_BATCH_EVENTS + 1)
    else:
        document = draw(st.lists(events, min_size=0, max_size=5))
    return encode(to_json(document, ascii_only=draw(st.booleans())), draw(surrogate_spellings))


@st.composite
def deep_bodies(draw: st.DrawFn) -> bytes:
    """Nesting on both sides of the contract's bound, bare or as an event's properties."""
    levels = draw(
        st.integers(min_value=MAX_JSON_DEPTH - 3, max_value=MAX_JSON_DEPTH + 3)
        | st.integers(min_value=2, max_value=100_000)
    )
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"k":', "}")]))
    if draw(st.booleans()):
        return (opener * levels + "1" + closer * levels).encode()
    # The event is level 1 and properties' object level 2: the event nests ``levels`` deep.
    arrays = levels - 2
    properties = Raw('{"p":' + opener * arrays + "1" + closer * arrays + "}")
    event = pageview_event(occurred_at=now_iso(), properties=properties)
    return to_json([event] if draw(st.booleans()) else event, ascii_only=True).encode()


@st.composite
def broken_bodies(draw: st.DrawFn) -> bytes:
    """A valid body cut short or with bytes spliced in."""
    body = json.dumps(pageview_event(occurred_at=now_iso())).encode()
    at = draw(st.integers(min_value=0, max_value=len(body)))
    return body[:at] + draw(st.binary(max_size=8)) + body[at + draw(st.integers(0, 3)) :]


bodies = (
    st.binary(max_size=512)
    | json_values.map(lambda value: encode(to_json(value, ascii_only=False)))
    | broken_bodies()
    | deep_bodies()
    | event_bodies()
)

# -- the served collector -----------------------------------------------------------------------


@pytest.fixture
def collector(stack, topic: str) -> Iterator[httpx.Client]:
    # A loaded machine must not turn a slow acknowledgement into a 503 here.
    config = CollectorConfig(
        kafka_bootstrap=stack.kafka_bootstrap, topic=topic, delivery_timeout_s=60
    )
    with (
        serving_in_background(create_app(config)) as url,
        httpx.Client(base_url=url, timeout=120) as client,
    ):
        yield client


def post(client: httpx.Client, body: bytes, content_type: str | None) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post(EVENTS_PATH, content=body, headers=headers)


def canonical(event: dict) -> str:
    """An event as the client meant it, whatever the collector stamped."""
    return json.dumps({k: v for k, v in event.items() if k != "received_at"}, sort_keys=True)


JSON_COLUMNS = {"properties", "context", "extra"}


def texts_in(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, member in value.items():
            yield key
            yield from texts_in(member)
    elif isinstance(value, list):
        for member in value:
            yield from texts_in(member)


def assert_loads(message_value: bytes) -> None:
    """The loader's acceptance of one message: a row whose every text PostgreSQL can hold."""
    event = parse_message(message_value)
    assert event.received_at is not None
    row = to_row(event, received_at=event.received_at, partition=0, offset=0)
    for name, column in zip(EVENT_COLUMNS, row, strict=True):
        for text in texts_in(json.loads(column) if name in JSON_COLUMNS else column):
            assert "\x00" not in text, name
            text.encode("utf-8")  # no lone surrogate left


def test_no_body_gets_a_5xx_and_only_loadable_events_are_acknowledged(collector, stack, topic):
    acknowledged: list[str] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES))
    def answer_without_5xx(body: bytes, content_type: str | None) -> None:
        response = post(collector, body, content_type)
        assert response.status_code in (200, 400, 413), (response.status_code, response.text)
        answer = response.json()
        if response.status_code != 200:
            assert answer["error"]
            return
        document = json.loads(body.decode("utf-8"))
        events = document if isinstance(document, list) else [document]
        assert answer == {"accepted": len(events)}
        acknowledged.extend(canonical(event) for event in events)

    answer_without_5xx()

    assert acknowledged, "no generated body was acceptable: the strategies test refusals only"
    # One more than acknowledged: wait a while for a message that should not be there.
    messages = consume_all(
        stack.kafka_bootstrap, topic, expected=len(acknowledged) + 1, timeout_s=5
    )
    for message in messages:
        assert_loads(message.value())
    assert sorted(canonical(json.loads(m.value())) for m in messages) == sorted(acknowledged)


def test_valid_events_with_odd_text_are_all_acknowledged(collector, stack, topic):
    sent: list[str] = []

    @settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        events=st.lists(valid_events(), min_size=1, max_size=5),
        batch=st.booleans(),
        ascii_only=st.booleans(),
    )
    def acknowledged(events: list[dict], batch: bool, ascii_only: bool) -> None:
        document = events if batch or len(events) > 1 else events[0]
        body = encode(to_json(document, ascii_only), "backslashreplace")
        response = post(collector, body, "application/json")
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": len(events)}
        sent.extend(canonical(event) for event in events)

    acknowledged()

    messages = consume_all(stack.kafka_bootstrap, topic, expected=len(sent))
    for message in messages:
        assert_loads(message.value())
    assert sorted(canonical(json.loads(m.value())) for m in messages) == sorted(sent)
