"""The shop's DOM is described once (``demo.pages``): every element target the traffic generator
sends is exactly what a browser reports for that element of the HTML the shop serves, and every
link, button, field and form of a served page is one the generator acts on (or named below).

The browser's report is computed here from the served HTML, independently of ``demo.dom``, by
the rules of ``retrolytics.js``; tests/integration/test_browser.py checks one journey in real
Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import lxml.html
import pytest

from demo import shop
from demo.catalogue import CATEGORIES, PRODUCTS
from demo.traffic import targets
from ingestion.collector import serving_in_background

NO_TEXT_TAGS = {"input", "textarea", "select", "option", "form"}
INTERACTIVE_TAGS = {"a", "button", "input", "form"}
# Links on the page the simulated visitors never follow.
NEVER_ACTED_ON = {
    "/signup": {'a.login-link[href="/login"]'},
    "/login": {'a.signup-link[href="/signup"]'},
}


def is_captured(attribute: str) -> bool:
    return attribute in ("href", "name", "type") or attribute.startswith("data-")


def element_siblings_before(element: lxml.html.HtmlElement) -> int:
    return sum(1 for s in element.itersiblings(preceding=True) if isinstance(s.tag, str))


def reported(element: lxml.html.HtmlElement) -> dict[str, Any]:
    """The ``target`` retrolytics.js sends for an event on ``element``."""
    elements = []
    for node in (element, *element.iterancestors()):
        described: dict[str, Any] = {"tag": node.tag}
        if node.get("id"):
            described["id"] = node.get("id")
        if node.get("class", "").split():
            described["classes"] = node.get("class").split()
        described["nth_child"] = element_siblings_before(node) + 1
        attributes = {k: v for k, v in node.attrib.items() if is_captured(k)}
        if attributes:
            described["attributes"] = attributes
        elements.append(described)
    target: dict[str, Any] = {"elements": elements}
    text = None if element.tag in NO_TEXT_TAGS else " ".join(element.text_content().split())
    if text:
        target["text"] = text
    return target


def selector(target: dict[str, Any]) -> str:
    first = target["elements"][0]
    attributes = first.get("attributes", {})
    return (
        first["tag"]
        + "".join(f".{c}" for c in first.get("classes", []))
        + "".join(f'[{k}="{v}"]' for k, v in attributes.items())
    )


@dataclass
class PageState:
    """A page as a visitor in some state sees it, and what the generator can click on it."""

    path: str
    emitted: list[dict[str, Any]]
    cookies: dict[str, str] = field(default_factory=dict)


def cards(grid: targets.Grid) -> list[dict[str, Any]]:
    return [t for card in grid.values() for t in (card.link, card.image, card.name)]


def states() -> Iterator[PageState]:
    yield PageState("/", [targets.HOME.shop_now, *cards(targets.HOME.grid)])
    for category in (None, *CATEGORIES):
        listing = targets.LISTINGS[category]
        path = f"/products?category={category}" if category else "/products"
        filters = [listing.filter_all, *listing.filters.values()]
        yield PageState(path, [*filters, *cards(listing.grid)])
    for category in CATEGORIES:
        # The category's name is a query that finds it.
        yield PageState(f"/search?q={category}", cards(targets.SEARCH_GRIDS[category]))
    for product in PRODUCTS:
        page = targets.PRODUCT_PAGES[product.id]
        emitted = [page.add_to_cart, page.add_to_cart_label, page.review_link]
        yield PageState(f"/product/{product.id}", emitted)
        yield PageState(f"/product/{product.id}/reviews", [page.back_link])
    yield PageState("/cart", [targets.EMPTY_CART_CONTINUE])
    for product_ids in (("118",), ("104", "101", "131")):
        cart = targets.cart_page(product_ids)
        cookie = ",".join(f"{i}:2" for i in product_ids)
        emitted = [cart.form, cart.checkout, cart.checkout_label, *cart.removes.values()]
        yield PageState("/cart", emitted, {shop.CART_COOKIE: cookie})
    for logged_in in (False, True):
        page = targets.CHECKOUT_PAGES[logged_in]
        emitted = [page.form, page.email, page.address, page.place_order, page.place_order_label]
        if not logged_in:
            emitted += [targets.ACCOUNT_PROMPT.login, targets.ACCOUNT_PROMPT.signup]
        cookies = {shop.USER_COOKIE: "u_0123456789ab"} if logged_in else {}
        yield PageState("/checkout", emitted, cookies)
    for path, form in (("/signup", targets.SIGNUP), ("/login", targets.LOGIN)):
        yield PageState(path, [form.form, form.email, form.password, form.submit])


STATES = list(states())
HEADER = [
    targets.HEADER.logo,
    *targets.HEADER.nav.values(),
    targets.HEADER.login,
    targets.HEADER.search_form,
    targets.HEADER.search_input,
    targets.HEADER.search_button,
    targets.HEADER.search_label,
]


@pytest.fixture(scope="module")
def shop_url() -> Iterator[str]:
    with serving_in_background(shop.create_app("http://127.0.0.1:9")) as url:
        yield url


def served(shop_url: str, path: str, cookies: dict[str, str]) -> lxml.html.HtmlElement:
    with httpx.Client(base_url=shop_url, cookies=cookies) as client:
        response = client.get(path)
    assert response.status_code == 200, path
    return lxml.html.document_fromstring(response.text)


def assert_emitted_as_served(document: lxml.html.HtmlElement, state: PageState) -> None:
    body = document.find("body")
    reports = [reported(e) for e in body.iter() if isinstance(e.tag, str)]
    for target in [*HEADER, *state.emitted]:
        assert target in reports, f"{state.path}: {selector(target)} is not as served"
    emitted = {selector(t) for t in [*HEADER, *state.emitted]}
    untouched = {selector(r) for r in reports if r["elements"][0]["tag"] in INTERACTIVE_TAGS}
    untouched -= emitted
    assert untouched == NEVER_ACTED_ON.get(state.path.split("?")[0], set()), state.path


@pytest.mark.parametrize(
    "state", STATES, ids=[f"{s.path} {' '.join(s.cookies.values())}".strip() for s in STATES]
)
def test_each_target_the_generator_sends_is_what_a_browser_reports_from_the_served_page(
    shop_url: str, state: PageState
) -> None:
    assert_emitted_as_served(served(shop_url, state.path, state.cookies), state)


def test_the_order_confirmation_too(shop_url: str) -> None:
    with httpx.Client(base_url=shop_url, cookies={shop.CART_COOKIE: "101:1"}) as client:
        placed = client.post("/checkout/complete")
        assert placed.status_code == 303
        confirmation = client.get(placed.headers["location"])
    order_id = placed.headers["location"].split("order=")[1]
    document = lxml.html.document_fromstring(confirmation.text)
    state = PageState("/checkout/complete", [targets.order_continue(order_id)])
    assert_emitted_as_served(document, state)


def test_a_target_the_page_does_not_have_is_caught(shop_url: str) -> None:
    """The check can fail: a cart of other products is not the page served for this cookie."""
    document = served(shop_url, "/cart", {shop.CART_COOKIE: "101:1"})
    wrong = PageState("/cart", [targets.cart_page(("102",)).removes["102"]])
    with pytest.raises(AssertionError, match="remove-item"):
        assert_emitted_as_served(document, wrong)
