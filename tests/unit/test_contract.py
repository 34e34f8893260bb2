"""The raw event contract: validation, normalisation, the canonical hierarchy."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from ingestion.contract import (
    EVENT_COLUMNS,
    MAX_ATTRIBUTE_LENGTH,
    MAX_MESSAGE_BYTES,
    MAX_PATH_LENGTH,
    MAX_URL_LENGTH,
    ContractViolation,
    parse_message,
    to_row,
)
from tests.support.factories import (
    BASE_TIME,
    LONG_HREF,
    click_event,
    click_with_href,
    encode,
    iso,
    pageview_event,
)


def row_of(event: dict) -> dict:
    parsed = parse_message(encode(event))
    return dict(
        zip(
            EVENT_COLUMNS, to_row(parsed, received_at=BASE_TIME, partition=0, offset=7), strict=True
        )
    )


def test_click_becomes_a_row_with_canonical_hierarchy() -> None:
    row = row_of(click_event())
    assert row["hierarchy"] == (
        "html:nth-child(1);body:nth-child(2);form#cart:nth-child(1);"
        'button.btn.checkout:nth-child(3)[type="submit"];span.label:nth-child(1)'
    )
    assert row["target_tag"] == "span"
    assert row["target_text"] == "Check out"
    assert row["page_path"] == "/cart"
    assert (row["source_partition"], row["source_offset"]) == (0, 7)


def test_hierarchy_escapes_delimiters_inside_names_and_values() -> None:
    event = click_event()
    event["target"]["elements"] = [
        {
            "tag": "A",
            "id": "x;y",
            "classes": ["b.c", "a:d", "a:d"],
            "attributes": {"HREF": 'say "hi"; \\ bye', "data-x": "1"},
        }
    ]
    row = row_of(event)
    assert row["hierarchy"] == 'a#x\\;y.a\\:d.b\\.c[data-x="1"][href="say \\"hi\\"\\; \\\\ bye"]'


def test_unknown_fields_are_kept() -> None:
    row = row_of(pageview_event(experiment="b", page={"url": "https://s.test/", "lang": "de"}))
    assert json.loads(row["extra"]) == {"experiment": "b", "page": {"lang": "de"}}


def test_text_is_trimmed_collapsed_and_bounded() -> None:
    event = click_event()
    event["target"]["text"] = "  many\n\n   words " + "x" * 400
    assert row_of(event)["target_text"].startswith("many words x")
    assert len(row_of(event)["target_text"]) == 255


@pytest.mark.parametrize("name", ["href", "HREF"])
def test_a_long_href_is_cut_alike_in_its_column_and_the_hierarchy(name: str) -> None:
    row = row_of(click_with_href(LONG_HREF, name))
    cut = LONG_HREF[:MAX_ATTRIBUTE_LENGTH]
    assert row["target_href"] == cut
    assert row["hierarchy"].endswith(f'span.label:nth-child(1)[href="{cut}"][type="button"]')


def test_long_ids_and_page_fields_are_cut_not_refused() -> None:
    event = pageview_event(
        page={
            "url": "https://shop.test/" + "p" * 5000 + "?q=1",
            "title": "t" * 3000,
            "referrer": "https://other.test/" + "r" * 5000,
        }
    )
    row = row_of(event)
    assert row["page_url"] == event["page"]["url"][:MAX_URL_LENGTH]
    assert row["referrer"] == event["page"]["referrer"][:MAX_URL_LENGTH]
    assert row["page_title"] == "t" * 1024
    assert row["page_path"] == ("/" + "p" * 5000)[:MAX_PATH_LENGTH]  # derived from the url
    event["page"]["path"] = "/" + "q" * 3000
    assert row_of(event)["page_path"] == event["page"]["path"][:MAX_PATH_LENGTH]
    click = click_event()
    click["target"]["elements"][2]["id"] = "c" * 2000
    assert "form#" + "c" * MAX_ATTRIBUTE_LENGTH + ":nth-child(1);" in row_of(click)["hierarchy"]


def test_nul_characters_are_replaced_not_fatal() -> None:
    row = row_of(click_event(properties={"q": "a\x00b"}))
    assert json.loads(row["properties"]) == {"q": "a\ufffdb"}


BAD_MESSAGES = {
    "not JSON": (b"{nope", "not JSON"),
    "not an object": (b"[1, 2]", "not an object"),
    "invalid UTF-8": (b'{"a": "\xff"}', "not valid UTF-8"),
    "oversized": (b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "larger than"),
    "missing field": (
        encode({k: v for k, v in click_event().items() if k != "anonymous_id"}),
        "anonymous_id",
    ),
    "bad uuid": (encode(click_event(event_id="123")), "event_id"),
    "unknown type": (encode(click_event(type="hover")), "type"),
    "bad timestamp": (encode(click_event(occurred_at="yesterday")), "occurred_at"),
    "epoch timestamp": (encode(click_event(occurred_at=1700000000)), "RFC 3339"),
    "no time zone": (encode(click_event(occurred_at="2026-11-20T12:00:00")), "occurred_at"),
    "wrong type": (encode(click_event(properties=["a"])), "properties"),
    "click without target": (encode(click_event(target=None)), "needs a target"),
    "custom without name": (encode(pageview_event(type="custom")), "needs a name"),
    "empty message": (None, "empty message"),
}


@pytest.mark.parametrize("kind", sorted(BAD_MESSAGES))
def test_bad_messages_are_refused_with_a_reason(kind: str) -> None:
    payload, expected = BAD_MESSAGES[kind]
    with pytest.raises(ContractViolation) as refused:
        parse_message(payload)
    assert expected in refused.value.reason


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (timedelta(days=-399), True),
        (timedelta(days=-401), False),
        (timedelta(hours=23), True),
        (timedelta(hours=25), False),
    ],
)
def test_event_time_bounds_are_measured_against_received_at(
    offset: timedelta, accepted: bool
) -> None:
    event = pageview_event(occurred_at=iso(BASE_TIME + offset), received_at=iso(BASE_TIME))
    if accepted:
        assert row_of(event)["occurred_at"] == BASE_TIME + offset
    else:
        with pytest.raises(ContractViolation, match="occurred_at"):
            row_of(event)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_since_jsonb_cannot_hold_them(constant: str) -> None:
    payload = encode(click_event())[:-1] + f', "score": {constant}}}'.encode()
    with pytest.raises(ContractViolation, match=f"{constant.lstrip('-')} is not a JSON value"):
        parse_message(payload)


def test_lone_surrogates_are_replaced_and_pairs_kept() -> None:
    payload = encode(click_event(properties={"lone": "\ud800x", "pair": "\U0001f600"}))
    assert b"\\ud800" in payload and b"\\ud83d\\ude00" in payload
    row = dict(
        zip(
            EVENT_COLUMNS,
            to_row(parse_message(payload), received_at=BASE_TIME, partition=0, offset=0),
            strict=True,
        )
    )
    assert json.loads(row["properties"]) == {"lone": "\ufffdx", "pair": "\U0001f600"}
    row["properties"].encode("utf-8")  # storable


def test_fast_and_slow_paths_agree_on_a_valid_event() -> None:
    event = click_event(properties={"city": "Zürich"})
    fast = parse_message(encode(event))
    slow = parse_message(encode(event).replace(b"Z\\u00fcrich", b"Z\\u00fcrich\\u0000"))
    assert fast.properties == {"city": "Zürich"}
    assert slow.properties == {"city": "Zürich\ufffd"}
    assert fast.model_dump(exclude={"properties"}) == slow.model_dump(exclude={"properties"})


def test_a_url_that_cannot_be_split_is_refused_by_name() -> None:
    with pytest.raises(ContractViolation, match=r"page\.url: not a URL"):
        row_of(pageview_event(page={"url": "http://[abc/x"}))
