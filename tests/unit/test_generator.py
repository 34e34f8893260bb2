"""The synthetic shop traffic: contract-valid, deterministic, coherent journeys, documented DOM."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree
from lxml.cssselect import CSSSelector

from demo import pages, traffic
from demo.catalogue import CATEGORIES, PRODUCTS_BY_ID
from demo.pages import SHOP_LAYOUT, SHOP_PAGES, shop_page_of
from demo.traffic import generate_events
from demo.traffic.schedule import TrafficStats, generate
from demo.traffic.to_kafka import (
    COPIED_IDS,
    _copies_by_chunk,
    _sample_from_a_process,
    _Template,
    copies_of,
    copy_event_id,
)
from ingestion.contract import parse_message, to_row
from ingestion.settings import Settings
from retrolytics import cli

UNTIL = date(2026, 11, 24)
DAYS = 7
ELEMENT_TYPES = {"click", "submit", "change"}


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return list(generate_events(40_000, DAYS, seed=11, until=UNTIL))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def by_device(events: list[dict]) -> dict[str, list[dict]]:
    """Each device's events in time order, each event once."""
    devices: dict[str, dict[str, dict]] = defaultdict(dict)
    for event in events:
        devices[event["anonymous_id"]].setdefault(event["event_id"], event)
    return {
        device: sorted(unique.values(), key=lambda e: e["occurred_at"])
        for device, unique in devices.items()
    }


def targets(event: dict) -> list[dict]:
    return event["target"]["elements"] if "target" in event else []


def is_add_to_cart(event: dict) -> bool:
    return event["type"] == "click" and any(e.get("id") == "add-to-cart" for e in targets(event))


# -- determinism and the contract ----------------------------------------------------------------


def test_same_arguments_give_the_same_events_in_the_same_order() -> None:
    first = [json.dumps(e) for e in generate_events(3000, 3, seed=5, until=UNTIL)]
    second = [json.dumps(e) for e in generate_events(3000, 3, seed=5, until=UNTIL)]
    other_seed = [json.dumps(e) for e in generate_events(3000, 3, seed=6, until=UNTIL)]
    assert first == second
    assert first != other_seed


@pytest.mark.parametrize("count", [1, 17, 2500])
def test_exactly_the_requested_number_of_messages(count: int) -> None:
    assert sum(1 for _ in generate_events(count, 2, seed=3, until=UNTIL)) == count


@pytest.mark.parametrize(("events", "days", "wrong"), [(0, 7, "events"), (10, 0, "days")])
def test_bad_arguments_are_refused_by_name(events: int, days: int, wrong: str) -> None:
    with pytest.raises(ValueError, match=wrong):
        list(generate_events(events, days, seed=1, until=UNTIL))


def test_every_event_satisfies_the_contract_and_becomes_a_row(events: list[dict]) -> None:
    for event in events:
        parsed = parse_message(json.dumps(event).encode())
        row = to_row(parsed, received_at=parsed.received_at, partition=0, offset=0)
        assert row[1] == event["anonymous_id"]
        assert str(uuid.UUID(event["event_id"])) == event["event_id"]
        assert event["context"]["library"] == {"name": "retrolytics.js", "version": "0.1.0"}
        assert event["context"]["user_agent"].startswith("Mozilla/5.0")


def test_events_occur_inside_the_window_with_a_daily_rhythm(events: list[dict]) -> None:
    start = datetime(2026, 11, 18, tzinfo=UTC)
    end = datetime(2026, 11, 25, tzinfo=UTC)
    moments = [parse_time(e["occurred_at"]) for e in events]
    assert all(start <= m < end for m in moments)
    days = Counter(m.date() for m in moments)
    assert len(days) == DAYS
    hours = Counter(m.hour for m in moments)
    assert hours[3] * 3 < hours[19]  # nights are quiet, evenings busy


# -- delivery: order, late arrivals, duplicates --------------------------------------------------


def test_messages_come_in_received_order_with_late_ones_and_retried_duplicates(
    events: list[dict],
) -> None:
    seen: dict[str, dict] = {}
    duplicates = 0
    received = []
    for event in events:
        earlier = seen.get(event["event_id"])
        if earlier is None:
            seen[event["event_id"]] = event
            received.append(event["received_at"])
            continue
        duplicates += 1
        # a retry resends the same client event; only the collector time differs
        assert {k: v for k, v in earlier.items() if k != "received_at"} == {
            k: v for k, v in event.items() if k != "received_at"
        }
        assert event["received_at"] >= earlier["received_at"]
    assert received == sorted(received)
    assert 0 < duplicates < len(events) * 0.01
    late = sum(
        parse_time(e["received_at"]) - parse_time(e["occurred_at"]) > timedelta(hours=1)
        for e in seen.values()
    )
    assert len(seen) * 0.005 < late < len(seen) * 0.02


# -- sessions, identities and journeys -----------------------------------------------------------


def test_sessions_split_exactly_on_thirty_minute_gaps(events: list[dict]) -> None:
    timeout = timedelta(minutes=30)
    sessions_seen = 0
    for history in by_device(events).values():
        sessions_seen += len({e["session_id"] for e in history})
        for before, after in pairwise(history):
            gap = parse_time(after["occurred_at"]) - parse_time(before["occurred_at"])
            new_session = after["session_id"] != before["session_id"]
            assert new_session == (gap >= timeout), (before, after)
    assert sessions_seen == len({e["session_id"] for e in events})


def test_every_session_starts_with_a_pageview_and_campaigns_tag_the_landing(
    events: list[dict],
) -> None:
    campaigns = Counter()
    for history in by_device(events).values():
        starts = [
            e
            for i, e in enumerate(history)
            if i == 0 or e["session_id"] != history[i - 1]["session_id"]
        ]
        for first in starts:
            assert first["type"] == "pageview"
            utm = first["context"].get("utm")
            if utm:
                assert f"utm_campaign={utm['campaign']}" in first["page"]["url"]
                campaigns[utm["medium"]] += 1
    assert {"cpc", "email", "social"} <= set(campaigns)
    assert not any("utm" in e["context"] for e in events if e["type"] != "pageview")


def test_a_device_belongs_to_one_user_and_identify_sets_it(events: list[dict]) -> None:
    devices_per_user = defaultdict(set)
    for history in by_device(events).values():
        users = {e["user_id"] for e in history if e["user_id"]}
        assert len(users) <= 1
        identified = False
        for event in history:
            if event["type"] == "identify":
                identified = True
                assert event["user_id"]
            if identified:
                assert event["user_id"], "events after identify carry the user_id"
        for user in users:
            devices_per_user[user].add(history[0]["anonymous_id"])
    assert any(len(devices) == 2 for devices in devices_per_user.values())


def test_purchases_follow_checkout_in_the_same_session(events: list[dict]) -> None:
    purchases = 0
    for history in by_device(events).values():
        checkout_sessions = set()
        added = False
        for event in history:
            if is_add_to_cart(event):
                added = True
            if event["type"] == "pageview" and event["page"]["path"] == "/checkout":
                assert added, "checkout without anything ever added to the cart"
                checkout_sessions.add(event["session_id"])
            if event.get("name") == "purchase_completed":
                purchases += 1
                assert event["session_id"] in checkout_sessions
                properties = event["properties"]
                assert re.fullmatch(r"ord_[0-9a-f]{10}", properties["order_id"])
                assert isinstance(properties["revenue"], float) and properties["revenue"] > 0
                assert properties["currency"] == "USD"
                assert properties["item_count"] >= 1
                assert properties["category"] in CATEGORIES
    assert purchases > 0


def test_funnel_steps_reach_fewer_devices_each(events: list[dict]) -> None:
    steps = {"visited": set(), "product": set(), "cart": set(), "checkout": set(), "bought": set()}
    for event in events:
        device = event["anonymous_id"]
        steps["visited"].add(device)
        path = event["page"]["path"]
        if event["type"] == "pageview" and path.startswith("/product/"):
            steps["product"].add(device)
        if is_add_to_cart(event):
            steps["cart"].add(device)
        if event["type"] == "pageview" and path == "/checkout":
            steps["checkout"].add(device)
        if event.get("name") == "purchase_completed":
            steps["bought"].add(device)
    counts = [len(devices) for devices in steps.values()]
    assert counts == sorted(counts, reverse=True)
    assert len(set(counts)) == len(counts), counts
    assert counts[-1] > 0


def test_categories_reach_custom_properties_and_data_attributes(events: list[dict]) -> None:
    viewed = Counter()
    for event in events:
        if event.get("name") == "product_viewed":
            product = PRODUCTS_BY_ID[event["properties"]["product_id"]]
            assert event["properties"]["category"] == product.category
            assert event["page"]["path"] == f"/product/{product.id}"
            viewed[product.category] += 1
        if is_add_to_cart(event):
            detail = next(e for e in targets(event) if "product-detail" in e.get("classes", []))
            product_id = detail["attributes"]["data-product-id"]
            assert detail["attributes"]["data-category"] == PRODUCTS_BY_ID[product_id].category
            assert event["page"]["path"] == f"/product/{product_id}"
        if event.get("name") == "search_performed":
            assert event["properties"]["query"]
            assert event["page"]["path"] == "/search"
    assert set(viewed) == set(CATEGORIES)


def test_changes_never_carry_values(events: list[dict]) -> None:
    changes = [e for e in events if e["type"] == "change"]
    password_changes = [
        e for e in changes if targets(e)[0].get("attributes", {}).get("type") == "password"
    ]
    assert password_changes
    for event in changes:
        assert "text" not in event["target"]
        assert "properties" not in event
        assert "value" not in json.dumps(event)


# -- the documented DOM --------------------------------------------------------------------------


PLACEHOLDER = re.compile(r"<[^>]*>")


def as_css(compound: str) -> str:
    """An outline's compound selector as CSS: an attribute value with ``<…>`` placeholders
    becomes conditions on what is fixed, ``[href="/product/<id>/reviews"]`` →
    ``[href^="/product/"][href$="/reviews"]``."""

    def condition(match: re.Match) -> str:
        name, value = match.groups()
        if not PLACEHOLDER.search(value):
            return match.group(0)
        prefix = value[: value.index("<")]
        suffix = value[value.rindex(">") + 1 :]
        css = f"[{name}]"
        css += f'[{name}^="{prefix}"]' if prefix else ""
        css += f'[{name}$="{suffix}"]' if suffix else ""
        return css

    return re.sub(r'\[([a-z-]+)="([^"]*)"\]', condition, compound)


def documented(tree: str, prefix: tuple[str, ...]) -> list[tuple[str, frozenset[str]]]:
    """(full child-combinator selector, event types it is documented as the target of)."""
    entries = []
    path: list[str] = list(prefix)
    for line in tree.splitlines():
        depth = len(prefix) + (len(line) - len(line.lstrip(" "))) // 2
        path[depth:] = [as_css(line.strip().split("  ")[0])]
        arrow = re.search(r"<-\s*([a-z, ]+)", line)
        kinds = frozenset(k.strip() for k in arrow.group(1).split(",")) if arrow else frozenset()
        entries.append((" > ".join(path), kinds))
    return entries


LAYOUT = documented(SHOP_LAYOUT, ())
PAGES = {path: LAYOUT + documented(tree, ("html", "body")) for path, tree in SHOP_PAGES.items()}


def as_tree(elements: list[dict]) -> tuple[etree._Element, etree._Element]:
    """Rebuild the hierarchy as a document, with filler siblings so :nth-child holds."""
    root = parent = None
    for element in reversed(elements):
        attributes = dict(element.get("attributes", {}))
        if element.get("id"):
            attributes["id"] = element["id"]
        if element.get("classes"):
            attributes["class"] = " ".join(element["classes"])
        node = etree.Element(element["tag"], attributes)
        if parent is None:
            root = node
        else:
            for _ in range(element["nth_child"] - 1):
                etree.SubElement(parent, "filler")
            parent.append(node)
        parent = node
    return root, parent


def matches(selector: str, elements: list[dict]) -> bool:
    root, target = as_tree(elements)
    return any(found is target for found in CSSSelector(selector)(root))


def test_every_element_event_hits_an_element_documented_for_it(events: list[dict]) -> None:
    hit: set[tuple[str, str]] = set()
    checked: set[str] = set()
    for event in events:
        if event["type"] not in ELEMENT_TYPES:
            continue
        page = shop_page_of(event["page"]["path"])
        key = page + event["type"] + json.dumps(targets(event))
        if key in checked:
            continue
        checked.add(key)
        found = [
            selector
            for selector, kinds in PAGES[page]
            if event["type"] in kinds and matches(selector, targets(event))
        ]
        assert found, f"undocumented {event['type']} target on {page}: {targets(event)}"
        hit.update((page, selector) for selector in found)
    # the shared header is documented once: any page may exercise it
    layout = {selector for selector, kinds in LAYOUT if kinds}
    hit_anywhere = {selector for _, selector in hit}
    missing = [
        (page, selector)
        for page, entries in PAGES.items()
        for selector, kinds in entries
        if kinds
        and (selector not in hit_anywhere if selector in layout else (page, selector) not in hit)
    ]
    assert not missing, f"documented targets no event ever hits: {sorted(missing)}"


@pytest.mark.parametrize(
    ("selector", "page", "kind"),
    [
        ("form#cart button.checkout", "/cart", "click"),
        (
            "div.product-grid > div.product-card[data-category] > a.product-link",
            "/products",
            "click",
        ),
        ('a.cta[href="/products"]', "/", "click"),
        ("button#add-to-cart.btn.btn-primary[data-product-id]", "/product/<id>", "click"),
        ("header.site-header > nav.main-nav > a.nav-link[href]", "/cart", "click"),
        ('form#signup-form input[type="password"][name="password"]', "/signup", "change"),
        ('form#checkout-form button#place-order[type="submit"]', "/checkout", "click"),
        ("form#search", "/search", "submit"),
    ],
)
def test_analyst_selectors_find_their_clicks(
    events: list[dict], selector: str, page: str, kind: str
) -> None:
    """The selector matches the target itself or, for a click on a child, its ancestor."""
    on_page = [e for e in events if e["type"] == kind and shop_page_of(e["page"]["path"]) == page]
    direct = [e for e in on_page if matches(selector, targets(e))]
    assert direct
    if kind == "click" and "button" in selector:
        on_child = [
            e
            for e in on_page
            if targets(e)[0]["tag"] == "span" and matches(selector, targets(e)[1:])
        ]
        assert on_child, "some clicks land on the label inside the button"


def test_product_images_are_clicked_inside_their_links(events: list[dict]) -> None:
    image_clicks = [e for e in events if e["type"] == "click" and targets(e)[0]["tag"] == "img"]
    assert image_clicks
    for event in image_clicks:
        link = targets(event)[1]
        assert "product-link" in link["classes"]
        assert link["attributes"]["href"].startswith("/product/")
        assert "text" not in event["target"]


def test_the_module_documentation_shows_every_page_tree() -> None:
    doc = pages.__doc__ or ""
    for path, tree in SHOP_PAGES.items():
        assert f"``{path}``" in doc
        for line in tree.splitlines():
            assert line in doc


# -- the fast path: copies of a sample ------------------------------------------------------------


def test_copies_are_the_sample_with_ids_of_their_own(events: list[dict]) -> None:
    # A `%` in an id or elsewhere is copied as it is (the copies are %-formatted).
    odd = {**events[0], "anonymous_id": "dev%(id)s%", "title": "100%% off %s"}
    sample = [odd, *events[1:2000]]
    messages = list(copies_of(iter(sample), 5000))
    assert len(messages) == 5000
    for number, (key, value) in enumerate(messages):
        copy, event = divmod(number, len(sample))
        event = sample[event]
        suffix = f"~{copy}" if copy else ""
        expected = {
            **event,
            "event_id": copy_event_id(event["event_id"], copy) if copy else event["event_id"],
            **{name: event[name] + suffix for name in COPIED_IDS if event.get(name) is not None},
        }
        assert json.loads(value) == expected
        assert key == expected["anonymous_id"].encode()


@given(st.uuids(), st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1))
def test_a_copys_event_id_is_a_uuid_no_other_copy_of_that_event_has(
    original: uuid.UUID, copy: int, other: int
) -> None:
    event_id = str(original)
    copied = copy_event_id(event_id, copy)
    assert str(uuid.UUID(copied)) == copied
    assert copied[8:] == event_id[8:]
    assert copied != event_id
    assert (copied == copy_event_id(event_id, other)) == (copy == other)


@pytest.mark.parametrize("copy", [0, -1, 2**32])
def test_a_copy_number_the_event_id_cannot_hold_is_refused(copy: int) -> None:
    with pytest.raises(ValueError, match=f"copy must be 1 to {2**32 - 1}; got {copy}"):
        copy_event_id(str(uuid.uuid4()), copy)


@pytest.mark.parametrize("chunk", [1, 7, 300, 5000])
def test_chunked_copies_are_the_same_messages_each_device_in_its_order(
    events: list[dict], chunk: int
) -> None:
    """``retrolytics generate --sample`` copies each chunk of the sample as it arrives from the
    simulating process; the messages must be copies_of's, only interleaved between devices."""
    sample = events[:300]
    whole = list(copies_of(iter(sample), 1000))
    templates = [_Template.of(event) for event in sample]
    chunks = [templates[start : start + chunk] for start in range(0, len(templates), chunk)]
    chunked = list(_copies_by_chunk(chunks, len(sample), 1000))

    assert Counter(chunked) == Counter(whole)
    assert _by_device(chunked) == _by_device(whole)


def _by_device(messages: list[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    """Each device's (key's) messages in the order sent."""
    devices = defaultdict(list)
    for key, value in messages:
        devices[key].append(value)
    return dict(devices)


def test_the_sample_simulated_in_a_second_process_is_the_same_sample() -> None:
    until = date(2026, 11, 20)
    stats, expected_stats = TrafficStats(), TrafficStats()
    chunks = list(_sample_from_a_process(2500, 3, 5, until, stats))
    expected = [_Template.of(event) for event in generate(2500, 3, 5, until, expected_stats)]

    assert [len(chunk) for chunk in chunks] == [1000, 1000, 500]
    assert [template for chunk in chunks for template in chunk] == expected
    assert stats == expected_stats


def test_a_failing_sample_simulation_names_its_error() -> None:
    failing = _sample_from_a_process(10, 0, 1, None, TrafficStats())  # days must be positive
    with pytest.raises(RuntimeError, match=r"(?s)simulation failed.*days must be a positive"):
        list(failing)


def test_more_copies_than_an_event_id_can_number_are_refused(events: list[dict]) -> None:
    with pytest.raises(ValueError, match="at most 4294967295 copies of a sample"):
        next(_copies_by_chunk([[_Template.of(events[0])]], 1, 2**32 + 1))


def test_copies_of_an_empty_sample_are_refused() -> None:
    with pytest.raises(ValueError, match="the sample to copy is empty"):
        list(copies_of([], 10))


# -- Kafka ---------------------------------------------------------------------------------------

NOWHERE = Settings(
    database_url="postgresql://nobody@127.0.0.1:1/none", kafka_bootstrap="127.0.0.1:9", topic="t"
)


def test_produce_refuses_bad_arguments_before_touching_kafka() -> None:
    with pytest.raises(ValueError, match="events must be a positive whole number"):
        traffic.produce(NOWHERE, events=-5)


def test_produce_names_the_unreachable_kafka() -> None:
    with pytest.raises(RuntimeError, match=r"cannot prepare topic t on Kafka at 127\.0\.0\.1:9"):
        traffic.produce(NOWHERE, events=10)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--events", "-3"], "--events: must be a positive whole number, got '-3'"),
        (["--events", "10", "--sample", "0"], "--sample: must be a positive whole number"),
        (["--events", "10", "--days", "x"], "--days: must be a positive whole number, got 'x'"),
    ],
)
def test_generate_names_a_bad_count_in_a_usage_error(
    arguments: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["generate", *arguments])
    assert exited.value.code == 2
    assert named in capsys.readouterr().err
