"""End to end in a real browser: Debian's headless Chromium shops in Retro Shop, the snippet sends
its events through the collector to Kafka, the loader stores them and dbt derives them.

Chromium comes from Debian's package (``apt-get install chromium``), driven by Playwright's
Python client; no browser is downloaded.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from demo import shop as retro_shop
from demo.traffic import targets
from ingestion.collector import (
    CollectorConfig,
    bind_loopback,
    create_app,
    serving_in_background,
    socket_url,
)
from ingestion.contract import Target, canonical_hierarchy
from ingestion.loader import Loader
from ingestion.settings import Settings
from tests.support.kafka import consume_all

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EMAIL = "Shopper.Browser@Example.com"
PASSWORD = "correct-horse-battery-staple-7"
ADDRESS = "42 Hidden Lane, Testville"
SEARCH = "backpack"
PRODUCT = "118"  # Leather Backpack, the first bag a search for "backpack" finds
USER_ID = "u_" + hashlib.sha256(EMAIL.lower().encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Shop:
    url: str
    collector_url: str


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.fail(f"Debian's Chromium is missing at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shop(settings: Settings) -> Iterator[Shop]:
    """The collector and the shop on free loopback ports; the collector allows the shop."""
    shop_socket = bind_loopback()
    config = CollectorConfig.from_settings(settings, allow_origins=(socket_url(shop_socket),))
    with serving_in_background(create_app(config)) as collector_url:
        app = retro_shop.create_app(collector_url)
        with serving_in_background(app, sock=shop_socket) as shop_url:
            yield Shop(shop_url, collector_url)


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def wait_for_path(page, path: str) -> None:
    page.wait_for_url(lambda url: urlsplit(url).path == path)


def go_shopping(page, shop: Shop) -> None:
    """Browse, filter, search, add to cart, check out, sign up on the way, place the order."""
    page.goto(shop.url + "/")
    page.click("section.hero a.cta")  # Shop now
    wait_for_path(page, "/products")
    page.click("a.filter-link[data-category=bags]")
    wait_for_path(page, "/products")
    page.fill("form#search input[name=q]", SEARCH)
    page.press("form#search input[name=q]", "Enter")
    wait_for_path(page, "/search")
    page.click(f"div.product-card[data-product-id='{PRODUCT}'] img.product-image")
    wait_for_path(page, f"/product/{PRODUCT}")
    page.click("#add-to-cart span.label")
    page.click("header nav.main-nav a.nav-link[href='/cart']")
    wait_for_path(page, "/cart")
    page.click("form#cart button.checkout", position={"x": 4, "y": 4})  # the button, not its label
    wait_for_path(page, "/checkout")
    page.click("div.account-prompt a.signup-link")
    wait_for_path(page, "/signup")
    page.fill("form#signup-form input[name=email]", EMAIL)
    page.fill("form#signup-form input[name=password]", PASSWORD)
    page.click("form#signup-form button[type=submit]")
    wait_for_path(page, "/checkout")
    page.fill("form#checkout-form input[name=email]", EMAIL)
    page.fill("form#checkout-form input[name=address]", ADDRESS)
    page.click("#place-order", position={"x": 4, "y": 4})
    wait_for_path(page, "/checkout/complete")
    page.wait_for_function("document.getElementById('page-data') !== null")
    page.goto("about:blank")  # the page is hidden: the snippet beacons what it still holds


def load_until(settings: Settings, done, timeout_s: float = 60) -> list[dict]:
    """Drain the topic into raw.events until ``done(rows)``; the rows in occurred_at order."""
    deadline = time.monotonic() + timeout_s
    while True:
        loader = Loader(settings)
        try:
            loader.drain()
        finally:
            loader.close()
        with psycopg.connect(settings.database_url) as conn:
            cursor = conn.execute(
                "select type, name, page_path, user_id, anonymous_id, session_id, hierarchy, "
                "target_text, properties, page_url, event_id from raw.events "
                # One device, one partition: the offset orders events of the same millisecond.
                "order by occurred_at, source_offset"
            )
            columns = [c.name for c in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        if done(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def generated(target: dict) -> str:
    """The canonical hierarchy of a click target as the synthetic generator builds it."""
    return canonical_hierarchy(Target.model_validate(target))


def expected_journey() -> list[tuple[str, str | None, str, dict | None]]:
    """What the shopper does, event by event: (type, custom name, page path, the element the
    generator documents for that event, whose hierarchy the browser's must equal)."""
    header = targets.HEADER
    product_page = targets.PRODUCT_PAGES[PRODUCT]
    cart = targets.cart_page((PRODUCT,))
    signup = targets.SIGNUP
    checkout = targets.CHECKOUT_PAGES[True]  # identified by then: no account prompt
    product = f"/product/{PRODUCT}"
    return [
        ("pageview", None, "/", None),
        ("click", None, "/", targets.HOME.shop_now),
        ("pageview", None, "/products", None),
        ("click", None, "/products", targets.LISTINGS[None].filters["bags"]),
        ("pageview", None, "/products", None),
        ("change", None, "/products", header.search_input),  # its value is never sent
        # Enter in the search box: the browser clicks the form's submit button, then submits.
        ("click", None, "/products", header.search_button),
        ("submit", None, "/products", header.search_form),
        ("pageview", None, "/search", None),
        ("custom", "search_performed", "/search", None),
        ("click", None, "/search", targets.SEARCH_GRIDS["bags"][PRODUCT].image),
        ("pageview", None, product, None),
        ("custom", "product_viewed", product, None),
        ("click", None, product, product_page.add_to_cart_label),
        ("click", None, product, header.nav["/cart"]),
        ("pageview", None, "/cart", None),
        ("click", None, "/cart", cart.checkout),
        ("submit", None, "/cart", cart.form),
        ("pageview", None, "/checkout", None),
        ("click", None, "/checkout", targets.ACCOUNT_PROMPT.signup),
        ("pageview", None, "/signup", None),
        ("change", None, "/signup", signup.email),
        ("change", None, "/signup", signup.password),
        ("click", None, "/signup", signup.submit),
        ("submit", None, "/signup", signup.form),
        ("identify", None, "/signup", None),
        ("custom", "signup_completed", "/signup", None),
        ("pageview", None, "/checkout", None),
        ("change", None, "/checkout", checkout.email),
        ("change", None, "/checkout", checkout.address),
        ("click", None, "/checkout", checkout.place_order),
        ("submit", None, "/checkout", checkout.form),
        ("pageview", None, "/checkout/complete", None),
        ("custom", "purchase_completed", "/checkout/complete", None),
    ]


def test_a_shopper_in_chromium_lands_in_raw_events_and_the_definitions(
    page, shop: Shop, settings: Settings, tmp_path: Path
) -> None:
    journey = expected_journey()
    go_shopping(page, shop)
    rows = load_until(
        settings,
        lambda rows: (
            len(rows) >= len(journey) and any(r["name"] == "purchase_completed" for r in rows)
        ),
    )

    # The journey, in order, as one device and one session; identified from the signup on.
    assert [(r["type"], r["name"], r["page_path"]) for r in rows] == [j[:3] for j in journey]
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert {r["anonymous_id"] for r in rows} == {cookies["rl_anonymous_id"]}
    assert len({r["session_id"] for r in rows}) == 1
    identify_at = [r["type"] for r in rows].index("identify")
    assert all(r["user_id"] is None for r in rows[:identify_at])
    assert all(r["user_id"] == USER_ID for r in rows[identify_at:])

    # Element hierarchies: exactly those the generator documents for the same elements.
    for row, (kind, _, path, target) in zip(rows, journey, strict=True):
        expected = generated(target) if target is not None else None
        assert row["hierarchy"] == expected, (kind, path)
    add_to_cart = rows[13]
    assert add_to_cart["hierarchy"] == (
        "html:nth-child(1);body:nth-child(2);main#content.page-product:nth-child(2);"
        'div.product-detail:nth-child(1)[data-category="bags"][data-product-id="118"];'
        'button#add-to-cart.btn.btn-primary:nth-child(4)[data-product-id="118"][type="button"];'
        "span.label:nth-child(1)"
    )
    assert add_to_cart["target_text"] == "Add to cart"
    assert rows[10]["target_text"] is None  # an image has no text
    assert rows[23]["target_text"] == "Create account"

    # Custom events carry the generator's properties.
    assert rows[9]["properties"] == {"query": SEARCH, "result_count": 8}
    assert rows[12]["properties"] == {
        "product_id": PRODUCT,
        "name": "Leather Backpack",
        "category": "bags",
        "price": 179,
    }
    assert rows[26]["properties"] == {"method": "email", "source": "checkout"}
    purchase = rows[33]["properties"]
    assert purchase["order_id"].startswith("ord_")
    assert (purchase["revenue"], purchase["item_count"]) == (179, 1)
    assert (purchase["category"], purchase["currency"]) == ("bags", "USD")

    # Nothing typed into a field left the browser: not the password, not the e-mail, not the
    # address (the search query is in the results page's URL by the shop's design).
    messages = consume_all(settings.kafka_bootstrap, settings.topic, expected=len(rows))
    payloads = b"\n".join(m.value() for m in messages).lower()
    for typed in (PASSWORD, EMAIL, ADDRESS):
        assert typed.lower().encode() not in payloads
    assert b'"value"' not in payloads

    assert_definitions_match(settings, tmp_path)


def assert_definitions_match(settings: Settings, tmp_path: Path) -> None:
    """Compile the definitions, run dbt, and check which definitions the journey matched."""
    from retrolytics.warehouse import runner
    from tests.support.paths import REPO

    runner.run_dbt(
        ["build"],
        database_url=settings.database_url,
        project_dir=REPO / "dbt_project",
        definitions_dir=REPO / "definitions",
        target_path=tmp_path / "dbt-target",
    )
    with psycopg.connect(settings.database_url) as conn:
        matched = conn.execute(
            "select d.definition_name, e.type, e.page_path from marts.defined_events d "
            "join raw.events e using (event_id) order by e.occurred_at"
        ).fetchall()
    names = {name for name, _, _ in matched}
    assert {
        "viewed_home",
        "clicked_shop_now",
        "viewed_product_list",
        "filtered_by_category",
        "searched",
        "viewed_search_results",
        "clicked_product_card",
        "viewed_product",
        "added_to_cart",
        "clicked_nav_link",
        "viewed_cart",
        "clicked_checkout",
        "submitted_checkout",
        "clicked_place_order",
        "signed_up",
        "identified",
        "completed_purchase",
    } <= names, sorted(names)
    added = [(t, p) for name, t, p in matched if name == "added_to_cart"]
    assert added == [("click", f"/product/{PRODUCT}")]
    clicked_checkout = [(t, p) for name, t, p in matched if name == "clicked_checkout"]
    assert clicked_checkout == [("click", "/cart")]
    # Nothing matched what the shopper did not do.
    assert not names & {"removed_from_cart", "logged_in", "searched_without_results"}
    assert_one_checkout_conversion(settings)


def assert_one_checkout_conversion(settings: Settings) -> None:
    """The shopper converts once in the checkout funnel, as the person they identified as."""
    with psycopg.connect(settings.database_url) as conn:
        attempts = conn.execute(
            "select unit_id, converted, furthest_step, entered_at, converted_at "
            "from marts.fct_funnel_entries where funnel_name = 'browse_to_purchase' "
            "order by entered_at"
        ).fetchall()
        purchased_at = conn.execute(
            "select occurred_at from raw.events where name = 'purchase_completed'"
        ).fetchone()[0]
    converted = [a for a in attempts if a[1]]
    assert len(converted) == 1, attempts
    unit_id, _, furthest_step, entered_at, converted_at = converted[0]
    assert unit_id == f"user:{USER_ID}"
    assert furthest_step == 5
    assert entered_at <= converted_at == purchased_at


def flaky_proxy(upstream: str, shop_origin: str, failures: int) -> tuple[Starlette, list[int]]:
    """A reverse proxy to the collector that answers the first ``failures`` event posts with
    503, as a collector without Kafka would. Returns the app and the statuses it answered."""
    statuses: list[int] = []
    passed_on = ("origin", "content-type", "access-control-request-method")
    passed_on += ("access-control-request-headers",)

    async def forward(request: Request) -> Response:
        body = await request.body()
        if request.method == "POST" and sum(s == 503 for s in statuses) < failures:
            statuses.append(503)
            return JSONResponse(
                {"error": "Kafka is unavailable, retry later"},
                status_code=503,
                headers={"Retry-After": "1", "Access-Control-Allow-Origin": shop_origin},
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() in passed_on}
        async with httpx.AsyncClient(base_url=upstream, timeout=30) as client:
            answer = await client.request(
                request.method, request.url.path, headers=headers, content=body
            )
        if request.method == "POST":
            statuses.append(answer.status_code)
        kept = {
            k: v
            for k, v in answer.headers.items()
            if k.lower().startswith("access-control-") or k.lower() == "content-type"
        }
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    methods = ["GET", "POST", "OPTIONS"]
    routes = [Route("/{path:path}", forward, methods=methods)]
    return Starlette(routes=routes), statuses


def test_the_snippet_retries_a_batch_the_collector_answered_with_503(
    page, settings: Settings
) -> None:
    """The first delivery gets a 503 (as when Kafka is down); the snippet waits, sends the batch
    again, and every event arrives once."""
    shop_socket = bind_loopback()
    shop_origin = socket_url(shop_socket)
    config = CollectorConfig.from_settings(settings, allow_origins=(shop_origin,))
    with serving_in_background(create_app(config)) as collector_url:
        proxy, statuses = flaky_proxy(collector_url, shop_origin, failures=1)
        with (
            serving_in_background(proxy) as proxy_url,
            serving_in_background(retro_shop.create_app(proxy_url), sock=shop_socket),
        ):
            page.goto(f"{shop_origin}/product/{PRODUCT}")
            page.wait_for_function("window.retrolytics !== undefined")
            page.evaluate("retrolytics.track('retry_probe', {attempt: 1})")
            rows = load_until(settings, lambda rows: any(r["name"] == "retry_probe" for r in rows))

    assert statuses[0] == 503
    assert 200 in statuses[1:]
    assert [(r["type"], r["name"]) for r in rows] == [
        ("pageview", None),
        ("custom", "product_viewed"),
        ("custom", "retry_probe"),
    ]
    assert len({r["event_id"] for r in rows}) == 3


def test_a_session_ends_after_30_minutes_without_events_and_the_device_id_stays(
    page, shop: Shop, settings: Settings
) -> None:
    page.goto(f"{shop.url}/product/{PRODUCT}")
    page.wait_for_function("window.retrolytics !== undefined")
    idle = """minutes => {
        const session = JSON.parse(localStorage.getItem('rl_session'));
        session.last = Date.now() - minutes * 60 * 1000;
        localStorage.setItem('rl_session', JSON.stringify(session));
    }"""
    page.evaluate(idle, 29)
    page.evaluate("retrolytics.track('after_29_idle_minutes')")
    page.evaluate(idle, 31)
    page.evaluate("retrolytics.track('after_31_idle_minutes')")
    # localStorage wiped: the first-party cookie still knows the device.
    page.evaluate("localStorage.clear()")
    page.reload()
    page.wait_for_function("window.retrolytics !== undefined")
    page.goto("about:blank")
    rows = load_until(settings, lambda rows: len(rows) >= 6)

    assert [(r["type"], r["name"]) for r in rows] == [
        ("pageview", None),
        ("custom", "product_viewed"),
        ("custom", "after_29_idle_minutes"),
        ("custom", "after_31_idle_minutes"),
        ("pageview", None),
        ("custom", "product_viewed"),
    ]
    sessions = [r["session_id"] for r in rows]
    assert sessions[0] == sessions[1] == sessions[2]
    assert sessions[3] not in sessions[:3]
    assert len({r["anonymous_id"] for r in rows}) == 1
