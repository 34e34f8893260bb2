"""The loader's fast reading (msgspec) decides and stores exactly as the contract (pydantic) does.

``fast_contract.read_message`` must give, for every message, the row ``contract.parse_message``
gives, or refuse it with the same reason; ``fast_contract.decode`` may only accept a message
pydantic accepts. Rows compare column by column; times by their ISO spelling (the instant and the
offset), since pydantic's and the standard library's time zone objects are different classes.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demo.traffic import generate_events
from ingestion import fast_contract
from ingestion.contract import EVENT_COLUMNS, ContractViolation, parse_message, to_row
from ingestion.fast_contract import decode, read_message
from ingestion.loader import Record, _row_or_reason, prepare_batch
from ingestion.redaction import Redaction, redact
from tests.support.factories import BASE_TIME, click_event, encode, pageview_event
from tests.unit.test_contract import BAD_MESSAGES

RULES = Redaction(private_text=(r"(^|;)form#cart",), hash_properties=frozenset({"query"}))


def _comparable(row: tuple) -> tuple:
    return tuple(value.isoformat() if isinstance(value, datetime) else value for value in row)


def _outcome(read, payload: bytes) -> tuple:
    """The redacted row the loader would write, or the reason of the refusal."""
    try:
        event = read(payload)
        changed = redact(event, RULES)
        row = to_row(event, received_at=BASE_TIME, partition=1, offset=2)
    except ContractViolation as refused:
        return ("refused", refused.reason)
    return ("row", changed, _comparable(row))


def _assert_same_as_the_contract(payload: bytes) -> None:
    assert _outcome(read_message, payload) == _outcome(parse_message, payload)


def test_generated_traffic_takes_the_fast_path_and_gives_the_same_rows() -> None:
    messages = [
        json.dumps(event, separators=(",", ":")).encode()
        for event in generate_events(3000, 30, 42, until=date(2026, 11, 29))
    ]
    assert all(decode(message) is not None for message in messages)
    for message in messages:
        _assert_same_as_the_contract(message)


def _with(event: dict, path: tuple, value: object) -> bytes:
    *parents, last = path
    inner = event
    for step in parents:
        inner = inner[step]
    inner[last] = value
    return encode(event)


# Messages the contract accepts but only after cutting, stripping or reading loosely, or keeps
# unknown fields of: the fast path must leave them to pydantic.
LEFT_TO_PYDANTIC = {
    "padded anonymous_id": _with(click_event(), ("anonymous_id",), " device-1 "),
    "padded context key": _with(click_event(), ("context",), {" browser": "x"}),
    "padded property key": _with(click_event(), ("properties",), {"a ": 1}),
    "unknown field": _with(click_event(), ("experiment",), "b"),
    "unknown page field": _with(pageview_event(), ("page", "lang"), "de"),
    "long id": _with(click_event(), ("target", "elements", 0, "id"), "i" * 2000),
    "long url": _with(pageview_event(), ("page", "url"), "https://s.test/" + "p" * 5000),
    "seven digits of a second": _with(
        click_event(), ("occurred_at",), "2026-11-20T12:00:00.1234567Z"
    ),
    "a seven-digit number elsewhere": _with(click_event(), ("properties",), {"x": 0.1234567}),
    "no seconds": _with(click_event(), ("occurred_at",), "2026-11-20T12:00Z"),
    "nth_child as text": _with(click_event(), ("target", "elements", 0, "nth_child"), "3"),
    "nth_child as float": _with(click_event(), ("target", "elements", 0, "nth_child"), 3.0),
}


@pytest.mark.parametrize("kind", sorted(LEFT_TO_PYDANTIC))
def test_what_the_fast_path_cannot_read_exactly_is_left_to_pydantic(kind: str) -> None:
    payload = LEFT_TO_PYDANTIC[kind]
    assert decode(payload) is None
    assert _outcome(parse_message, payload)[0] == "row"
    _assert_same_as_the_contract(payload)


@pytest.mark.parametrize("spelled", ["html;body", None, 3])
def test_a_target_that_spells_the_fast_paths_own_field_is_refused_as_the_contract_refuses_it(
    spelled: object,
) -> None:
    payload = _with(click_event(), ("target", "hierarchy"), spelled)
    assert decode(payload) is None
    assert _outcome(read_message, payload) == _outcome(parse_message, payload)
    assert _outcome(read_message, payload)[0] == "refused"


def test_events_with_the_same_elements_share_their_reading_but_not_their_text() -> None:
    """The element lists are read once per distinct list (a cache): a second event with the same
    list, its text redacted or not, gets the same row as pydantic gives it."""
    private = click_event()
    private["target"]["elements"] = [{"tag": "button"}, {"tag": "form", "id": "cart"}]
    private["target"]["text"] = "Pay 20"
    public = json.loads(json.dumps(private))
    public["target"]["text"] = "Pay"
    public["event_id"] = "00000000-0000-4000-8000-000000000002"
    for payload in (encode(private), encode(public), encode(private)):
        _assert_same_as_the_contract(payload)
        assert _outcome(read_message, payload)[1] is True  # form#cart: the text is private
    first, second = decode(encode(private)), decode(encode(public))
    assert first.target.elements is second.target.elements
    assert (first.target.text, second.target.text) == ("Pay 20", "Pay")


def test_a_long_element_list_is_read_as_the_contract_reads_it_without_being_cached() -> None:
    event = click_event()
    event["target"]["elements"] = [
        {"tag": "div", "classes": [f"c{i}-{j}" for j in range(30)]} for i in range(20)
    ]
    payload = encode(event)
    assert len(json.dumps(event["target"]["elements"])) > fast_contract._CACHED_ELEMENTS_BYTES
    # The whole cache_info: a full cache keeps its size when a list is added, but not its misses.
    cache = fast_contract._read_elements.cache_info()
    assert decode(payload) is not None
    _assert_same_as_the_contract(payload)
    assert fast_contract._read_elements.cache_info() == cache


@pytest.mark.parametrize("kind", sorted(BAD_MESSAGES))
def test_bad_messages_are_refused_with_the_contracts_reason(kind: str) -> None:
    payload, _ = BAD_MESSAGES[kind]
    assert _outcome(read_message, payload) == _outcome(parse_message, payload)
    assert _outcome(read_message, payload)[0] == "refused"


@pytest.mark.parametrize("tag", ["", "1div", "di v", "div\n", "d_iv"])
@pytest.mark.parametrize("element", [0, 2])
def test_an_element_that_is_not_a_tag_is_refused_as_the_contract_refuses_it(
    tag: str, element: int
) -> None:
    payload = _with(click_event(), ("target", "elements", element, "tag"), tag)
    assert decode(payload) is None
    assert _outcome(read_message, payload)[0] == "refused"
    _assert_same_as_the_contract(payload)


@pytest.mark.parametrize(
    "fraction", [b".123456\\u0037", b".999999\\u0039", b"\\u002e1234567", b"\\u002E5"]
)
def test_a_time_spelled_with_escapes_is_left_to_pydantic(fraction: bytes) -> None:
    """msgspec reads escapes before the time, so they could hide a 7th digit (which it rounds
    where pydantic truncates) from the check of the bytes."""
    payload = encode(click_event(occurred_at="2026-11-20T12:00:00Z"))
    payload = payload.replace(b'"2026-11-20T12:00:00Z"', b'"2026-11-20T12:00:00' + fraction + b'Z"')
    assert decode(payload) is None
    assert _outcome(read_message, payload)[0] == "row"
    _assert_same_as_the_contract(payload)


def _with_bytes(payload: bytes, spliced: bytes, where: int) -> bytes:
    """The message with raw bytes put inside one of its strings (after a quote)."""
    quotes = [i for i, byte in enumerate(payload) if byte == ord('"')]
    at = quotes[where % len(quotes)] + 1
    return payload[:at] + spliced + payload[at:]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["", " x", "x ", "2026-11-20T12:00:00Z", "1e999", "a\n"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
PATHS = [
    ("event_id",),
    ("type",),
    ("name",),
    ("occurred_at",),
    ("received_at",),
    ("anonymous_id",),
    ("user_id",),
    ("session_id",),
    ("page",),
    ("page", "url"),
    ("page", "path"),
    ("page", "title"),
    ("context",),
    ("context", "user_agent"),
    ("properties",),
    ("properties", " k"),
    ("target",),
    ("target", "text"),
    ("target", "hierarchy"),
    ("target", "elements"),
    ("target", "elements", 0),
    ("target", "elements", 0, "tag"),
    ("target", "elements", 1, "tag"),
    ("target", "elements", 0, "id"),
    ("target", "elements", 0, "classes"),
    ("target", "elements", 0, "nth_child"),
    ("target", "elements", 0, "attributes"),
    ("target", "elements", 1, "attributes", "href"),
    ("unknown",),
]
TIMES = st.sampled_from(
    [
        "2026-11-20T12:00:00Z",
        "2026-11-20T12:00:00.5+05:30",
        "2026-11-20T12:00:00-00:00",
        "2026-11-20T25:00:00Z",
        "2026-02-30T12:00:00Z",
        "2026-11-20T12:00:00+24:00",
        "2026-11-20T12:00:00",
        "2026-11-20t12:00:00z",
        "2026-11-19T12:00:00.999999Z",
        "2026-11-20 12:00:00Z",
        "2026-11-20T12:00:00+0000",
        "2026-11-20T12:00:00.1234567Z",
        "2026-11-20T12:00:00.9999995Z",
        "2026-11-20T12:00:00,5Z",
        "2026-11-20T12:00Z",
    ]
)


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    event = draw(st.sampled_from([click_event, pageview_event]))(
        properties={"query": "shoes", "n": 1.5}, context={"user_agent": "UA"}
    )
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(PATHS))
        value = draw(TIMES if str(path[-1]).endswith("_at") else json_values)
        try:
            payload = _with(event, path, value)
        except (KeyError, IndexError, TypeError):  # the parent was replaced by a scalar
            continue
        event = json.loads(payload)
    return encode(event)


raw_bytes_in_strings = st.builds(
    _with_bytes,
    mutated_events(),
    st.sampled_from([b"\xc3\x28", b"\xff", b"\xed\xa0\x80", b"\x00", b"\\x41", b"\\u00e9"]),
    st.integers(min_value=0),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=mutated_events() | raw_bytes_in_strings)
def test_any_message_is_decided_and_stored_as_the_contract_does(payload: bytes) -> None:
    if decode(payload) is not None:
        assert _outcome(parse_message, payload)[0] == "row"
    _assert_same_as_the_contract(payload)


def test_the_loader_keeps_the_collectors_stamp_else_takes_the_brokers_time() -> None:
    """``received_at``: the collector's stamp when the message has one, else the broker's."""
    broker_time = BASE_TIME + timedelta(minutes=5)
    stamped = pageview_event()
    unstamped = {key: value for key, value in pageview_event().items() if key != "received_at"}
    received = []
    for event in (stamped, unstamped):
        record = Record(
            topic="events",
            partition=0,
            offset=0,
            key=None,
            value=encode(event),
            timestamp_ms=int(broker_time.timestamp() * 1000),
        )
        row, reason, _ = _row_or_reason(record, RULES)
        assert reason is None, reason
        received.append(row[EVENT_COLUMNS.index("received_at")])
    assert received == [BASE_TIME + timedelta(seconds=1), broker_time]


@pytest.mark.parametrize(
    ("occurred_at", "day"),
    [
        ("1969-12-31T23:59:59.5Z", date(1969, 12, 31)),
        ("2600-06-30T23:59:59.999999Z", date(2600, 6, 30)),
        ("2026-11-20T23:30:00-01:00", date(2026, 11, 21)),
    ],
)
def test_a_batch_names_the_utc_day_partition_of_each_row(occurred_at: str, day: date) -> None:
    event = click_event(occurred_at=occurred_at, received_at=occurred_at)
    record = Record("t", 0, 7, b"k", encode(event), None)
    batch = prepare_batch([record], Redaction())
    assert batch.rows.days == {day}
