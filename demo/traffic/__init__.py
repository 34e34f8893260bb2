"""Synthetic traffic of a small web shop, produced to Kafka in the raw event contract.

``retrolytics generate --events N [--days D] [--seed S]`` simulates visitors of *Retro Shop*
(``https://shop.example.com``) who land from search engines, ads, social posts and newsletters,
browse a catalogue of shoes, shirts, bags and hats, search, read reviews, fill their carts, sign
up or log in and sometimes buy. The data drives event definitions, funnels and the demo, so it is
coherent rather than random noise:

- A *person* has one device, or two (phone and computer) on which they log in to the same
  ``user_id``. Each device has a stable ``anonymous_id``, user agent, screen and locale
  (``context``), and keeps its cart and its login between sessions.
- A *session* (``session_id``) is one visit of one device. Events inside a session are less than
  30 minutes apart and visits of a device are at least 30 minutes apart, so sessionising on a
  30-minute inactivity gap reproduces ``session_id``. Visits follow a daily rhythm (quiet nights,
  busy evenings, slightly busier weekends) over the ``days`` days up to and including ``until``
  (UTC); nothing occurs outside that window.
- The landing pageview of a session carries the referrer and, for campaigns, UTM parameters in
  both the URL and ``context.utm`` (``source``, ``medium``, ``campaign``).
- Journeys drop off along home/listing → product → add to cart → cart → checkout → purchase.
  Element events carry the real element hierarchy of the pages documented below (target first,
  ``html`` last) with the target's text; sometimes the target is a child of the interesting
  element (``span.label`` inside a button, ``img`` inside a product link), as in real browsers.
- ``change`` events never carry values (none are captured, passwords included).
- Custom events (``type: custom``): ``product_viewed`` (product_id, name, category, price),
  ``search_performed`` (query, result_count), ``signup_completed`` (method, source) and
  ``purchase_completed`` (order_id, revenue, currency, item_count, category — the category of
  the most expensive line). ``identify`` events mark logins and signups; later events of that
  device carry the ``user_id``.
- Delivery: messages come in the order the collector received them. About 1% arrive hours late
  (``received_at`` 1 to 6 h after ``occurred_at``) and about 0.2% are sent twice, as a client
  retrying after a lost acknowledgement would: the same event (same ``event_id`` and client
  fields) received again 1 to 30 s later, so only ``received_at`` differs. The loader must store
  each ``event_id`` once.
- Deterministic: the same arguments give the same messages in the same order. Exactly
  ``events`` messages (duplicates included) are generated: whole persons are simulated until
  the total is reached and the last one is cut short.

The events are shared, read-only dictionaries: nested objects (hierarchies, page, context) are
reused between events, so copy an event before changing it.

The shop's pages
----------------
Analysts write CSS selectors against this DOM. Each line is one element as a CSS compound
selector, indented under its parent; ``"…"`` is its text, ``<- …`` the events it is the target
of, ``-- …`` a note. Every page has the same frame (``SHOP_LAYOUT``); ``SHOP_PAGES`` maps each
path (``<id>`` a product id such as ``101``) to the tree inside ``body``.

"""

from __future__ import annotations

import heapq
import json
import math
import random
import time
import uuid
from bisect import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote_plus

from confluent_kafka import KafkaException, Producer

from ingestion.settings import Settings
from ingestion.topics import RELIABLE_PRODUCER_CONFIG, ensure_topic

SHOP_NAME = "Retro Shop"
SHOP_ORIGIN = "https://shop.example.com"
LIBRARY = {"name": "retrolytics.js", "version": "0.1.0"}
CURRENCY = "USD"
CATEGORIES = ("shoes", "shirts", "bags", "hats")
CUSTOM_EVENTS = ("product_viewed", "search_performed", "signup_completed", "purchase_completed")

SESSION_TIMEOUT_MS = 30 * 60 * 1000
LATE_SHARE = 0.01
DUPLICATE_SHARE = 0.002
_MAX_PAUSE_S = 600  # far below the session timeout, so a session never splits by accident
_MAX_PAGES_PER_SESSION = 40
_MAX_SESSIONS_PER_PERSON = 40
_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS

SHOP_LAYOUT = """\
html
  head
  body
    header.site-header
      a.logo[href="/"]  "Retro Shop"  <- click
      nav.main-nav
        a.nav-link[href="/"]  "Home"  <- click
        a.nav-link[href="/products"]  "Products"  <- click
        a.nav-link[href="/cart"]  "Cart"  <- click
        a.nav-link[href="/signup"]  "Sign up"  <- click
      a.account-link[href="/login"]  "Log in"  <- click
      form#search.search-form  <- submit
        input[name="q"][type="search"]  <- change
        button.search-button[type="submit"]  "Search"  <- click
          span.label  "Search"  <- click
    main#content  -- the page's own tree, see SHOP_PAGES
    footer.site-footer
"""

_PRODUCT_CARD = """\
div.product-card[data-product-id][data-category]  -- one per product, in catalogue order
  a.product-link[href^="/product/"]  "<product name>"  <- click
    img.product-image  <- click
    span.product-name  "<product name>"  <- click
  span.price  "$89.00"
"""


def _nested(tree: str, depth: int) -> str:
    return "".join("  " * depth + line + "\n" for line in tree.splitlines())


SHOP_PAGES: dict[str, str] = {
    "/": """\
main#content.page-home
  section.hero
    h1  "New season, old favourites"
    a.cta.btn.btn-primary[href="/products"]  "Shop now"  <- click
  section.featured
    h2  "Featured"
    div.product-grid  -- one product per category
"""
    + _nested(_PRODUCT_CARD, 3),
    "/products": """\
main#content.page-products  -- also /products?category=<category>
  aside.filters
    ul.category-filter
      li
        a.filter-link[href="/products"]  "All"  <- click
      li  -- one per category: shoes, shirts, bags, hats
        a.filter-link[href^="/products?category="][data-category]  "Shoes"  <- click
  div.product-grid  -- every product, or those of the chosen category
"""
    + _nested(_PRODUCT_CARD, 2),
    "/search": """\
main#content.page-search  -- /search?q=<query>
  h1  "Results for <query>"
  div.product-grid  -- the products of the category the query is about
"""
    + _nested(_PRODUCT_CARD, 2)
    + """\
  p.no-results  "No products match <query>"  -- instead of the grid
""",
    "/product/<id>": """\
main#content.page-product
  div.product-detail[data-product-id][data-category]
    img.product-image
    h1.product-title  "<product name>"
    span.price  "$89.00"
    button#add-to-cart.btn.btn-primary[type="button"][data-product-id]  "Add to cart"  <- click
      span.label  "Add to cart"  <- click
  div.reviews
    h2  "Reviews"
    a.review-link[href$="/reviews"]  "Read 12 reviews"  <- click
""",
    "/product/<id>/reviews": """\
main#content.page-reviews
  a.back-link[href^="/product/"]  "Back to <product name>"  <- click
  div.reviews
    div.review
""",
    "/cart": """\
main#content.page-cart
  form#cart.cart  <- submit
    div.cart-item[data-product-id][data-category]  -- one per product in the cart
      span.product-name  "<product name>"
      span.price  "$89.00"
      button.remove-item[type="button"][data-product-id]  "Remove"  <- click
    button.checkout.btn.btn-primary[type="submit"]  "Checkout"  <- click
      span.label  "Checkout"  <- click
  div.empty-cart  -- instead of the form when the cart is empty
    p  "Your cart is empty"
    a.continue-link[href="/products"]  "Continue shopping"  <- click
""",
    "/checkout": """\
main#content.page-checkout
  div.account-prompt  -- only for visitors who are not logged in
    a.login-link[href="/login?next=/checkout"]  "Log in"  <- click
    a.signup-link[href="/signup?next=/checkout"]  "Create an account"  <- click
  form#checkout-form.checkout-form  <- submit
    input[name="email"][type="email"]  <- change
    input[name="address"][type="text"]  <- change
    button#place-order.btn.btn-primary[type="submit"]  "Place order"  <- click
      span.label  "Place order"  <- click
""",
    "/checkout/complete": """\
main#content.page-order-complete
  div.order-confirmation[data-order-id]
    h1  "Thank you for your order"
    a.continue-link[href="/products"]  "Continue shopping"  <- click
""",
    "/signup": """\
main#content.page-signup  -- also /signup?next=/checkout
  form#signup-form.auth-form  <- submit
    input[name="email"][type="email"]  <- change
    input[name="password"][type="password"]  <- change
    button.btn.btn-primary[type="submit"]  "Create account"  <- click
  a.login-link[href="/login"]  "Already have an account? Log in"
""",
    "/login": """\
main#content.page-login  -- also /login?next=/checkout
  form#login-form.auth-form  <- submit
    input[name="email"][type="email"]  <- change
    input[name="password"][type="password"]  <- change
    button.btn.btn-primary[type="submit"]  "Log in"  <- click
  a.signup-link[href="/signup"]  "New here? Create an account"
""",
}

# One source of truth: the docstring shows exactly the trees the generator is documented by.
__doc__ = (
    (__doc__ or "")
    + "Every page::\n\n"
    + "".join("    " + line + "\n" for line in SHOP_LAYOUT.splitlines())
    + "".join(
        f"\n``{path}``::\n\n" + "".join("    " + line + "\n" for line in tree.splitlines())
        for path, tree in SHOP_PAGES.items()
    )
)


def shop_page_of(path: str) -> str:
    """The ``SHOP_PAGES`` key for a URL path, e.g. ``/product/103/reviews`` →
    ``/product/<id>/reviews``."""
    parts = path.strip("/").split("/")
    if parts[0] == "product" and len(parts) >= 2:
        return "/product/<id>" + ("/reviews" if parts[2:] == ["reviews"] else "")
    if path in SHOP_PAGES:
        return path
    raise ValueError(f"{path!r} is not a page of the synthetic shop")


# -- the catalogue ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    category: str
    price: float
    reviews: int


_CATALOGUE_NAMES = {
    "shoes": (
        ("Trail Runner", 89.0),
        ("City Sneaker", 69.0),
        ("Leather Boot", 149.0),
        ("Canvas Slip-On", 45.0),
        ("Court Classic", 79.0),
        ("Hiking Boot", 129.0),
        ("Suede Loafer", 99.0),
        ("Summer Sandal", 39.0),
    ),
    "shirts": (
        ("Linen Shirt", 59.0),
        ("Oxford Button-Down", 49.0),
        ("Graphic Tee", 25.0),
        ("Flannel Overshirt", 65.0),
        ("Polo Shirt", 39.0),
        ("Denim Shirt", 55.0),
        ("Merino Henley", 75.0),
        ("Striped Breton", 45.0),
    ),
    "bags": (
        ("Canvas Tote", 35.0),
        ("Leather Backpack", 179.0),
        ("Weekender Duffel", 129.0),
        ("Crossbody Bag", 69.0),
        ("Laptop Sleeve", 39.0),
        ("Rolltop Backpack", 99.0),
        ("Belt Bag", 29.0),
        ("Messenger Bag", 89.0),
    ),
    "hats": (
        ("Wool Beanie", 29.0),
        ("Baseball Cap", 25.0),
        ("Sun Hat", 45.0),
        ("Bucket Hat", 35.0),
        ("Felt Fedora", 69.0),
        ("Trucker Cap", 22.0),
        ("Knit Beret", 32.0),
        ("Rain Hat", 39.0),
    ),
}

PRODUCTS: tuple[Product, ...] = tuple(
    Product(str(101 + i), name, category, price, reviews=3 + (i * 7) % 40)
    for i, (category, name, price) in enumerate(
        (category, name, price)
        for category, items in _CATALOGUE_NAMES.items()
        for name, price in items
    )
)
PRODUCTS_BY_ID = {p.id: p for p in PRODUCTS}
_PRODUCTS_BY_CATEGORY = {c: tuple(p for p in PRODUCTS if p.category == c) for c in CATEGORIES}
_FEATURED = tuple(_PRODUCTS_BY_CATEGORY[c][0] for c in CATEGORIES)
# How readily a product page turns into an add-to-cart, by category (cheap hats sell easily).
_ADD_TO_CART_RATE = {"shoes": 0.11, "shirts": 0.14, "bags": 0.09, "hats": 0.17}

# (query, category it finds or None for no results)
_SEARCHES = (
    ("running shoes", "shoes"),
    ("boots", "shoes"),
    ("sneakers", "shoes"),
    ("linen shirt", "shirts"),
    ("tee", "shirts"),
    ("flannel", "shirts"),
    ("backpack", "bags"),
    ("tote bag", "bags"),
    ("duffel", "bags"),
    ("beanie", "hats"),
    ("sun hat", "hats"),
    ("cap", "hats"),
    ("sneekers", None),
    ("gift card", None),
)
_SEARCH_CATEGORY = dict(_SEARCHES)
_SEARCHES_BY_CATEGORY = {c: tuple(s for s in _SEARCHES if s[1] == c) for c in CATEGORIES}


# -- devices and traffic sources ----------------------------------------------------------------

_DEVICE_MODELS = {
    "desktop": (
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36",
            1920,
            1080,
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/17.4 Safari/605.1.15",
            1440,
            900,
        ),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", 1920, 1080),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
            1366,
            768,
        ),
    ),
    "mobile": (
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
            "like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            390,
            844,
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Mobile Safari/537.36",
            412,
            915,
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Mobile Safari/537.36",
            360,
            780,
        ),
    ),
    "tablet": (
        (
            "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            820,
            1180,
        ),
    ),
}


class _Table:
    """Weighted choice with one random number and a binary search (rng.choices is slower)."""

    def __init__(self, weighted: Sequence[tuple[Any, float]]) -> None:
        self.items = [item for item, _ in weighted]
        self.cumulative = []
        total = 0.0
        for _, weight in weighted:
            total += weight
            self.cumulative.append(total)
        self.total = total

    def pick(self, rng: random.Random) -> Any:
        return self.items[bisect(self.cumulative, rng.random() * self.total)]


_DEVICE_KINDS = _Table([("mobile", 55), ("desktop", 38), ("tablet", 7)])
_LOCALES = _Table([("en-US", 60), ("en-GB", 15), ("de-DE", 10), ("fr-FR", 8), ("es-ES", 7)])
_FAVOURITES = _Table([("shoes", 35), ("shirts", 30), ("bags", 20), ("hats", 15)])
# (medium, referrer, utm source/medium or None)
_SOURCES = _Table(
    [
        (("direct", None, None), 33),
        (("organic", "https://www.google.com/", None), 18),
        (("organic", "https://www.bing.com/", None), 4),
        (("organic", "https://duckduckgo.com/", None), 3),
        (("paid", "https://www.google.com/", ("google", "cpc")), 14),
        (("social", "https://l.instagram.com/", ("instagram", "social")), 6),
        (("social", "https://www.facebook.com/", ("facebook", "social")), 4),
        (("email", None, ("newsletter", "email")), 12),
        (("referral", "https://blog.example.org/gear-guide", None), 6),
    ]
)
# Relative traffic per UTC hour: quiet nights, a lunch bump, busy evenings.
_HOUR_WEIGHTS = (
    0.25, 0.18, 0.12, 0.1, 0.1, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 1.0,
    1.0, 0.95, 0.9, 0.9, 0.95, 1.0, 1.1, 1.2, 1.2, 1.05, 0.8, 0.5,
)  # fmt: skip
_WEEKEND_FACTOR = 1.15


def _busy(moment_ms: int) -> float:
    """Probability of keeping a visit drawn at this moment (rejection sampling of the rhythm)."""
    day = moment_ms // _DAY_MS
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    factor = _WEEKEND_FACTOR if weekday >= 5 else 1.0
    return _HOUR_WEIGHTS[(moment_ms // _HOUR_MS) % 24] * factor / (1.2 * _WEEKEND_FACTOR)


def _new_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


# -- the DOM, as the element lists events carry (target first) --------------------------------


def _el(
    tag: str,
    nth: int,
    id_: str | None = None,
    classes: tuple[str, ...] = (),
    attributes: dict[str, str] | None = None,
) -> dict:
    element: dict[str, Any] = {"tag": tag}
    if id_:
        element["id"] = id_
    if classes:
        element["classes"] = list(classes)
    element["nth_child"] = nth
    if attributes:
        element["attributes"] = attributes
    return element


def _target(text: str | None, *elements: dict) -> dict:
    target: dict[str, Any] = {"elements": list(elements)}
    if text:
        target["text"] = text
    return target


_HTML = _el("html", 1)
_BODY = _el("body", 2)
_HEADER = (_el("header", 1, classes=("site-header",)), _BODY, _HTML)
_NAV = (_el("nav", 2, classes=("main-nav",)), *_HEADER)
_SEARCH_FORM = (_el("form", 4, "search", ("search-form",)), *_HEADER)
_SEARCH_BUTTON = (_el("button", 2, classes=("search-button",), attributes={"type": "submit"}),)
_SEARCH_BUTTON += _SEARCH_FORM


class _Header:
    """Click targets in the frame every page shares (class attributes are read-only)."""

    logo = _target(SHOP_NAME, _el("a", 1, classes=("logo",), attributes={"href": "/"}), *_HEADER)
    nav: ClassVar[dict[str, dict]] = {
        href: _target(text, _el("a", i, classes=("nav-link",), attributes={"href": href}), *_NAV)
        for i, (href, text) in enumerate(
            (("/", "Home"), ("/products", "Products"), ("/cart", "Cart"), ("/signup", "Sign up")),
            start=1,
        )
    }
    login = _target(
        "Log in", _el("a", 3, classes=("account-link",), attributes={"href": "/login"}), *_HEADER
    )
    search_form = _target(None, *_SEARCH_FORM)
    search_input = _target(
        None, _el("input", 1, attributes={"name": "q", "type": "search"}), *_SEARCH_FORM
    )
    search_button = _target("Search", *_SEARCH_BUTTON)
    search_label = _target("Search", _el("span", 1, classes=("label",)), *_SEARCH_BUTTON)


def _main(page_class: str) -> tuple[dict, ...]:
    return (_el("main", 2, "content", (page_class,)), _BODY, _HTML)


def _grid(products: Sequence[Product], *above: dict) -> dict[str, tuple[dict, dict, dict]]:
    """Per product id: its link, the image in it and the name in it, as click targets."""
    targets = {}
    for nth, product in enumerate(products, start=1):
        card = _el(
            "div",
            nth,
            classes=("product-card",),
            attributes={"data-product-id": product.id, "data-category": product.category},
        )
        link = _el("a", 1, classes=("product-link",), attributes={"href": f"/product/{product.id}"})
        chain = (link, card, *above)
        targets[product.id] = (
            _target(product.name, *chain),
            _target(None, _el("img", 1, classes=("product-image",)), *chain),
            _target(product.name, _el("span", 2, classes=("product-name",)), *chain),
        )
    return targets


_HOME_MAIN = _main("page-home")
_HOME_CTA = _target(
    "Shop now",
    _el("a", 2, classes=("cta", "btn", "btn-primary"), attributes={"href": "/products"}),
    _el("section", 1, classes=("hero",)),
    *_HOME_MAIN,
)
_HOME_GRID = _grid(
    _FEATURED,
    _el("div", 2, classes=("product-grid",)),
    _el("section", 2, classes=("featured",)),
    *_HOME_MAIN,
)

_PRODUCTS_MAIN = _main("page-products")
_FILTER_LIST = (
    _el("ul", 1, classes=("category-filter",)),
    _el("aside", 1, classes=("filters",)),
    *_PRODUCTS_MAIN,
)
_FILTER_ALL = _target(
    "All",
    _el("a", 1, classes=("filter-link",), attributes={"href": "/products"}),
    _el("li", 1),
    *_FILTER_LIST,
)
_FILTERS = {
    category: _target(
        category.title(),
        _el(
            "a",
            1,
            classes=("filter-link",),
            attributes={"href": f"/products?category={category}", "data-category": category},
        ),
        _el("li", i),
        *_FILTER_LIST,
    )
    for i, category in enumerate(CATEGORIES, start=2)
}
_LISTING_GRIDS = {
    category: _grid(
        _PRODUCTS_BY_CATEGORY[category] if category else PRODUCTS,
        _el("div", 2, classes=("product-grid",)),
        *_PRODUCTS_MAIN,
    )
    for category in (None, *CATEGORIES)
}
_SEARCH_MAIN = _main("page-search")
_SEARCH_GRIDS = {
    category: _grid(
        _PRODUCTS_BY_CATEGORY[category], _el("div", 2, classes=("product-grid",)), *_SEARCH_MAIN
    )
    for category in CATEGORIES
}


@dataclass(frozen=True)
class _ProductPage:
    add_to_cart: dict
    add_to_cart_label: dict
    review_link: dict
    back_link: dict  # on the reviews page


def _product_page(product: Product) -> _ProductPage:
    main = _main("page-product")
    detail = _el(
        "div",
        1,
        classes=("product-detail",),
        attributes={"data-product-id": product.id, "data-category": product.category},
    )
    button = _el(
        "button",
        4,
        "add-to-cart",
        ("btn", "btn-primary"),
        {"type": "button", "data-product-id": product.id},
    )
    return _ProductPage(
        add_to_cart=_target("Add to cart", button, detail, *main),
        add_to_cart_label=_target(
            "Add to cart", _el("span", 1, classes=("label",)), button, detail, *main
        ),
        review_link=_target(
            f"Read {product.reviews} reviews",
            _el(
                "a",
                2,
                classes=("review-link",),
                attributes={"href": f"/product/{product.id}/reviews"},
            ),
            _el("div", 2, classes=("reviews",)),
            *main,
        ),
        back_link=_target(
            f"Back to {product.name}",
            _el("a", 1, classes=("back-link",), attributes={"href": f"/product/{product.id}"}),
            *_main("page-reviews"),
        ),
    )


_PRODUCT_PAGES = {p.id: _product_page(p) for p in PRODUCTS}

_CART_MAIN = _main("page-cart")
_EMPTY_CART_CONTINUE = _target(
    "Continue shopping",
    _el("a", 2, classes=("continue-link",), attributes={"href": "/products"}),
    _el("div", 1, classes=("empty-cart",)),
    *_CART_MAIN,
)


def _cart_targets(product_ids: Sequence[str]) -> tuple[dict, dict, dict, dict[str, dict]]:
    """The cart form, its checkout button and label, and each line's remove button."""
    form = _el("form", 1, "cart", ("cart",))
    form_chain = (form, *_CART_MAIN)
    removes = {}
    for nth, product_id in enumerate(product_ids, start=1):
        item = _el(
            "div",
            nth,
            classes=("cart-item",),
            attributes={
                "data-product-id": product_id,
                "data-category": PRODUCTS_BY_ID[product_id].category,
            },
        )
        remove = _el(
            "button",
            3,
            classes=("remove-item",),
            attributes={"type": "button", "data-product-id": product_id},
        )
        removes[product_id] = _target("Remove", remove, item, *form_chain)
    checkout = _el(
        "button",
        len(product_ids) + 1,
        classes=("checkout", "btn", "btn-primary"),
        attributes={"type": "submit"},
    )
    return (
        _target(None, *form_chain),
        _target("Checkout", checkout, *form_chain),
        _target("Checkout", _el("span", 1, classes=("label",)), checkout, *form_chain),
        removes,
    )


@dataclass(frozen=True)
class _CheckoutPage:
    form: dict
    email: dict
    address: dict
    place_order: dict
    place_order_label: dict


def _checkout_page(with_prompt: bool) -> _CheckoutPage:
    main = _main("page-checkout")
    form = (_el("form", 2 if with_prompt else 1, "checkout-form", ("checkout-form",)), *main)
    button = _el("button", 3, "place-order", ("btn", "btn-primary"), {"type": "submit"})
    return _CheckoutPage(
        form=_target(None, *form),
        email=_target(None, _el("input", 1, attributes={"name": "email", "type": "email"}), *form),
        address=_target(
            None, _el("input", 2, attributes={"name": "address", "type": "text"}), *form
        ),
        place_order=_target("Place order", button, *form),
        place_order_label=_target("Place order", _el("span", 1, classes=("label",)), button, *form),
    )


_CHECKOUT_PAGES = {prompt: _checkout_page(prompt) for prompt in (True, False)}
_PROMPT = _el("div", 1, classes=("account-prompt",))
_CHECKOUT_LOGIN = _target(
    "Log in",
    _el("a", 1, classes=("login-link",), attributes={"href": "/login?next=/checkout"}),
    _PROMPT,
    *_main("page-checkout"),
)
_CHECKOUT_SIGNUP = _target(
    "Create an account",
    _el("a", 2, classes=("signup-link",), attributes={"href": "/signup?next=/checkout"}),
    _PROMPT,
    *_main("page-checkout"),
)


def _order_continue(order_id: str) -> dict:
    return _target(
        "Continue shopping",
        _el("a", 2, classes=("continue-link",), attributes={"href": "/products"}),
        _el("div", 1, classes=("order-confirmation",), attributes={"data-order-id": order_id}),
        *_main("page-order-complete"),
    )


@dataclass(frozen=True)
class _AuthForm:
    form: dict
    email: dict
    password: dict
    submit: dict


def _auth_form(page: str, form_id: str, button_text: str) -> _AuthForm:
    form = (_el("form", 1, form_id, ("auth-form",)), *_main(page))
    return _AuthForm(
        form=_target(None, *form),
        email=_target(None, _el("input", 1, attributes={"name": "email", "type": "email"}), *form),
        password=_target(
            None, _el("input", 2, attributes={"name": "password", "type": "password"}), *form
        ),
        submit=_target(
            button_text,
            _el("button", 3, classes=("btn", "btn-primary"), attributes={"type": "submit"}),
            *form,
        ),
    )


_SIGNUP_FORM = _auth_form("page-signup", "signup-form", "Create account")
_LOGIN_FORM = _auth_form("page-login", "login-form", "Log in")


# -- people, devices, sessions ------------------------------------------------------------------


@dataclass
class _Device:
    anonymous_id: str
    kind: str
    context: dict
    identified: bool = False
    cart: dict[str, int] = field(default_factory=dict)  # product id -> quantity, in added order


@dataclass
class _Person:
    user_id: str
    devices: list[_Device]
    has_account: bool
    intent: float  # multiplies the chance of adding to cart and buying
    favourite: str
    first_visit_ms: int


def _random_moment(rng: random.Random, start_ms: int, end_ms: int) -> int:
    """A moment in [start, end) that follows the daily rhythm."""
    while True:
        moment = start_ms + int(rng.random() * (end_ms - start_ms))
        if rng.random() < _busy(moment):
            return moment


def _new_device(rng: random.Random, kind: str) -> _Device:
    user_agent, width, height = rng.choice(_DEVICE_MODELS[kind])
    context = {
        "user_agent": user_agent,
        "library": LIBRARY,
        "screen": {"width": width, "height": height},
        "locale": _LOCALES.pick(rng),
    }
    return _Device(str(_new_uuid(rng)), kind, context)


def _new_person(rng: random.Random, start_ms: int, end_ms: int) -> _Person:
    two_devices = rng.random() < 0.15
    if two_devices:
        devices = [_new_device(rng, "mobile"), _new_device(rng, "desktop")]
    else:
        devices = [_new_device(rng, _DEVICE_KINDS.pick(rng))]
    has_account = rng.random() < (0.7 if two_devices else 0.25)
    if has_account and rng.random() < 0.4:
        devices[0].identified = True  # logged in before the window began
    return _Person(
        user_id=f"u_{rng.getrandbits(48):012x}",
        devices=devices,
        has_account=has_account,
        intent=min(3.0, max(0.2, rng.lognormvariate(0.0, 0.6))),
        favourite=_FAVOURITES.pick(rng),
        first_visit_ms=_random_moment(rng, start_ms, end_ms),
    )


class _WindowClosed(Exception):
    """The simulated clock passed the end of the window: the visit ends there."""


# A simulated event before delivery:
# (occurred_ms, type, name, user_id, page, target, properties, context, event_id bits)
_Raw = tuple


class _Visit:
    """One session of one device, written in time order into ``events``."""

    def __init__(
        self, rng: random.Random, person: _Person, device: _Device, start_ms: int, end_ms: int
    ) -> None:
        self.rng = rng
        self.person = person
        self.device = device
        self.session_id = str(_new_uuid(rng))
        self.t = start_ms
        self.end_ms = end_ms
        self.user_id = person.user_id if device.identified else None
        self.page: dict | None = None
        self.landing_referrer: str | None = None
        self.landing_query = ""
        self.landing_context: dict | None = None
        self.events: list[_Raw] = []
        self.purchased = False

    # -- writing events

    def emit(
        self,
        type_: str,
        name: str | None = None,
        target: dict | None = None,
        properties: dict | None = None,
        context: dict | None = None,
    ) -> None:
        if self.t >= self.end_ms:
            raise _WindowClosed
        self.events.append(
            (
                self.t,
                type_,
                name,
                self.user_id,
                self.page,
                target,
                properties,
                context or self.device.context,
                self.rng.getrandbits(128),
            )
        )

    def pause(self, median_s: float) -> None:
        """A person reading or thinking: log-normal, capped well below the session timeout."""
        seconds = min(self.rng.lognormvariate(math.log(median_s), 0.8), _MAX_PAUSE_S)
        self.t += int(seconds * 1000) + 1

    def step(self, low_ms: int, high_ms: int) -> None:
        self.t += self.rng.randint(low_ms, high_ms)

    def click(self, target: dict, child: dict | None = None, child_share: float = 0.35) -> None:
        """Click an element; some clicks land on its child (a label, an image)."""
        chosen = child if child is not None and self.rng.random() < child_share else target
        self.emit("click", target=chosen)
        self.step(150, 1200)

    def submit(self, form: dict) -> None:
        self.step(3, 40)
        self.emit("submit", target=form)
        self.step(200, 1500)

    def change(self, field_target: dict, median_s: float) -> None:
        self.pause(median_s)
        self.emit("change", target=field_target)

    def open(self, path: str, query: str, title: str) -> None:
        """A page load: the pageview, with the landing details on the first one."""
        context = None
        if self.page is None:
            referrer = self.landing_referrer
            if self.landing_query:
                query = f"{query}&{self.landing_query}" if query else self.landing_query
            context = self.landing_context
        else:
            referrer = self.page["url"]
        url = SHOP_ORIGIN + path + (f"?{query}" if query else "")
        self.page = {"url": url, "path": path, "title": f"{title} | {SHOP_NAME}"}
        if referrer:
            self.page["referrer"] = referrer
        self.emit("pageview", context=context)

    def custom(self, name: str, properties: dict) -> None:
        self.step(20, 400)
        self.emit("custom", name=name, properties=properties)

    def identify(self) -> None:
        self.device.identified = True
        self.person.has_account = True
        self.user_id = self.person.user_id
        self.step(20, 200)
        self.emit("identify")

    # -- where a visit starts

    def land(self) -> tuple[str, Any]:
        rng = self.rng
        medium, referrer, utm = _SOURCES.pick(rng)
        category = self.person.favourite if rng.random() < 0.7 else rng.choice(CATEGORIES)
        product = rng.choice(_PRODUCTS_BY_CATEGORY[category]).id
        has_cart = bool(self.device.cart)
        campaign = None
        if medium == "paid":
            campaign = f"{category}_search"
            route = ("products", category) if rng.random() < 0.6 else ("product", product)
        elif medium == "social":
            campaign = "summer_looks"
            route = ("product", product) if rng.random() < 0.8 else ("home", None)
        elif medium == "email":
            if has_cart and rng.random() < 0.6:
                campaign, route = "cart_reminder", ("cart", None)
            else:
                campaign = "weekly_picks"
                route = ("products", None) if rng.random() < 0.5 else ("product", product)
        elif medium == "organic":
            r = rng.random()
            route = (
                ("product", product)
                if r < 0.5
                else ("home", None)
                if r < 0.8
                else ("products", category)
            )
        elif medium == "referral":
            route = ("product", product) if rng.random() < 0.9 else ("home", None)
        else:  # direct: typed address, bookmark, a cart left open
            r = rng.random()
            if has_cart and r < 0.2:
                route = ("cart", None)
            else:
                route = (
                    ("home", None)
                    if r < 0.7
                    else ("products", None)
                    if r < 0.85
                    else ("product", product)
                )
        self.landing_referrer = referrer
        if utm:
            source, utm_medium = utm
            self.landing_query = (
                f"utm_source={source}&utm_medium={utm_medium}&utm_campaign={campaign}"
            )
            self.landing_context = {
                **self.device.context,
                "utm": {"source": source, "medium": utm_medium, "campaign": campaign},
            }
        return route

    def run(self) -> None:
        route: tuple[str, Any] | None = self.land()
        if not self.device.identified and self.person.has_account and self.rng.random() < 0.12:
            route = ("home", "log in")  # a returning customer on a device not yet logged in
        try:
            for _ in range(_MAX_PAGES_PER_SESSION):
                if route is None:
                    break
                kind, argument = route
                route = _PAGES[kind](self, argument)
        except _WindowClosed:
            pass

    # -- shared navigation

    def wander(self, stay: float = 0.45) -> tuple[str, Any] | None:
        """Use the header (nav, logo, login, search) or leave the site."""
        rng = self.rng
        if rng.random() >= stay:
            return None
        anonymous = not self.device.identified
        choices = [("/products", 0.5), ("/", 0.08), ("logo", 0.05), ("search", 0.12)]
        choices.append(("/cart", 0.25 if self.device.cart else 0.04))
        if anonymous and not self.person.has_account:
            choices.append(("/signup", 0.05))
        if anonymous and self.person.has_account:
            choices.append(("login", 0.08))
        action = _Table(choices).pick(rng)
        if action == "search":
            return self.search()
        if action == "logo":
            self.click(_Header.logo)
            return ("home", None)
        if action == "login":
            self.click(_Header.login)
            return ("login", None)
        self.click(_Header.nav[action])
        return _NAV_ROUTES[action]

    def search(self) -> tuple[str, Any]:
        """Type a query into the header search and submit it (Enter or the button)."""
        rng = self.rng
        if rng.random() < 0.85:
            query, _ = rng.choice(_SEARCHES_BY_CATEGORY[self.person.favourite])
        else:
            query, _ = rng.choice(_SEARCHES)
        self.change(_Header.search_input, 4)
        if rng.random() < 0.5:
            self.step(100, 900)
            self.click(_Header.search_button, _Header.search_label, 0.4)
        self.submit(_Header.search_form)
        return ("search", (query, True))

    def pick_product(self, grid: dict[str, tuple[dict, dict, dict]]) -> str:
        """A product from a grid, leaning towards the person's favourite category."""
        rng = self.rng
        ids = list(grid)
        favourites = [i for i in ids if PRODUCTS_BY_ID[i].category == self.person.favourite]
        product_id = rng.choice(favourites if favourites and rng.random() < 0.6 else ids)
        link, image, name = grid[product_id]
        r = rng.random()
        self.emit("click", target=image if r < 0.45 else name if r < 0.65 else link)
        self.step(150, 1200)
        return product_id

    # -- pages: each opens itself, then returns where the visitor goes next (None: leaves)

    def home(self, intent: str | None) -> tuple[str, Any] | None:
        self.open("/", "", SHOP_NAME)
        self.pause(10)
        if intent == "log in":
            self.click(_Header.login)
            return ("login", None)
        r = self.rng.random()
        if r < 0.3:
            self.click(_HOME_CTA)
            return ("products", None)
        if r < 0.52:
            return ("product", self.pick_product(_HOME_GRID))
        if r < 0.62:
            return self.search()
        return self.wander()

    def products(self, category: str | None) -> tuple[str, Any] | None:
        if category:
            self.open("/products", f"category={category}", category.title())
        else:
            self.open("/products", "", "All products")
        self.pause(12)
        rng = self.rng
        r = rng.random()
        if r < 0.18:
            if category is None:
                choice = self.person.favourite if rng.random() < 0.7 else rng.choice(CATEGORIES)
                self.click(_FILTERS[choice])
                return ("products", choice)
            self.click(_FILTER_ALL)
            return ("products", None)
        if r < 0.68:
            return ("product", self.pick_product(_LISTING_GRIDS[category]))
        if r < 0.74:
            return self.search()
        return self.wander()

    def search_results(self, search: tuple[str, bool]) -> tuple[str, Any] | None:
        query, fresh = search
        category = _SEARCH_CATEGORY[query]
        results = len(_PRODUCTS_BY_CATEGORY[category]) if category else 0
        self.open("/search", f"q={quote_plus(query)}", f"Search: {query}")
        if fresh:
            self.custom("search_performed", {"query": query, "result_count": results})
        self.pause(8)
        r = self.rng.random()
        if category and r < 0.6:
            return ("product", self.pick_product(_SEARCH_GRIDS[category]))
        if r < 0.75:
            return self.search()
        return self.wander()

    def product(self, product_id: str) -> tuple[str, Any] | None:
        product = PRODUCTS_BY_ID[product_id]
        page = _PRODUCT_PAGES[product_id]
        self.open(f"/product/{product_id}", "", product.name)
        properties = {
            "product_id": product_id,
            "name": product.name,
            "category": product.category,
            "price": product.price,
        }
        self.custom("product_viewed", properties)
        self.pause(20)
        rng = self.rng
        add_rate = _ADD_TO_CART_RATE[product.category] * self.person.intent
        if self.device.kind == "mobile":
            add_rate *= 0.75
        r = rng.random()
        if r < add_rate:
            self.click(page.add_to_cart, page.add_to_cart_label)
            cart = self.device.cart
            cart[product_id] = cart.get(product_id, 0) + (2 if rng.random() < 0.1 else 1)
            self.pause(3)
            r = rng.random()
            if r < 0.55:
                self.click(_Header.nav["/cart"])
                return ("cart", None)
            if r < 0.85:
                return ("back", None) if rng.random() < 0.5 else self.wander(0.9)
            return None
        if r < add_rate + 0.08:
            self.click(page.review_link)
            return ("reviews", product_id)
        if rng.random() < 0.35:
            return ("back", None)
        return self.wander()

    def back(self, _: None) -> tuple[str, Any] | None:
        """The browser's back button: the listing again, without a click."""
        self.step(300, 2000)
        return self.products(None)

    def reviews(self, product_id: str) -> tuple[str, Any] | None:
        product = PRODUCTS_BY_ID[product_id]
        self.open(f"/product/{product_id}/reviews", "", f"Reviews: {product.name}")
        self.pause(30)
        if self.rng.random() < 0.55:
            self.click(_PRODUCT_PAGES[product_id].back_link)
            return ("product", product_id)
        return self.wander()

    def cart(self, _: None) -> tuple[str, Any] | None:
        self.open("/cart", "", "Your cart")
        cart = self.device.cart
        rng = self.rng
        if not cart:
            self.pause(4)
            if rng.random() < 0.5:
                self.click(_EMPTY_CART_CONTINUE)
                return ("products", None)
            return self.wander()
        self.pause(12)
        form, checkout, checkout_label, removes = _cart_targets(list(cart))
        if rng.random() < 0.12:
            removed = rng.choice(list(cart))
            self.click(removes[removed])
            del cart[removed]
            if not cart:
                return self.wander()
            form, checkout, checkout_label, removes = _cart_targets(list(cart))
            self.pause(5)
        if rng.random() < min(0.9, 0.5 * math.sqrt(self.person.intent)):
            self.click(checkout, checkout_label)
            self.submit(form)
            return ("checkout", None)
        return self.wander(0.6)

    def checkout(self, _: None) -> tuple[str, Any] | None:
        self.open("/checkout", "", "Checkout")
        rng = self.rng
        anonymous = not self.device.identified
        page = _CHECKOUT_PAGES[anonymous]
        self.pause(6)
        if anonymous:
            if self.person.has_account and rng.random() < 0.45:
                self.click(_CHECKOUT_LOGIN)
                return ("login", "/checkout")
            if not self.person.has_account and rng.random() < 0.2:
                self.click(_CHECKOUT_SIGNUP)
                return ("signup", "/checkout")
        if anonymous or rng.random() < 0.3:  # logged-in visitors find the email filled in
            self.change(page.email, 8)
        if rng.random() < 0.12:
            return None
        self.change(page.address, 20)
        if rng.random() < min(0.95, 0.7 * self.person.intent**0.3):
            self.pause(4)
            self.click(page.place_order, page.place_order_label)
            self.submit(page.form)
            return ("complete", f"ord_{rng.getrandbits(40):010x}")
        return None

    def complete(self, order_id: str) -> tuple[str, Any] | None:
        cart = self.device.cart
        self.open("/checkout/complete", "", "Order complete")
        lines = [(PRODUCTS_BY_ID[i], quantity) for i, quantity in cart.items()]
        main_line = max(lines, key=lambda line: line[0].price * line[1])
        self.custom(
            "purchase_completed",
            {
                "order_id": order_id,
                "revenue": round(sum(p.price * q for p, q in lines), 2),
                "currency": CURRENCY,
                "item_count": sum(q for _, q in lines),
                "category": main_line[0].category,
            },
        )
        cart.clear()
        self.purchased = True
        self.pause(10)
        if self.rng.random() < 0.3:
            self.click(_order_continue(order_id))
            return ("products", None)
        return None

    def signup(self, next_path: str | None) -> tuple[str, Any] | None:
        self.open("/signup", f"next={next_path}" if next_path else "", "Sign up")
        form = _SIGNUP_FORM
        self.change(form.email, 6)
        if self.rng.random() < 0.25:
            return None
        self.change(form.password, 5)
        self.pause(2)
        self.click(form.submit)
        self.submit(form.form)
        self.identify()
        source = "checkout" if next_path == "/checkout" else "header"
        self.custom("signup_completed", {"method": "email", "source": source})
        self.step(200, 1200)
        return ("checkout", None) if next_path == "/checkout" else ("home", None)

    def login(self, next_path: str | None) -> tuple[str, Any] | None:
        self.open("/login", f"next={next_path}" if next_path else "", "Log in")
        form = _LOGIN_FORM
        self.change(form.email, 5)
        self.change(form.password, 3)
        self.pause(1)
        self.click(form.submit)
        self.submit(form.form)
        if self.rng.random() < 0.1:  # wrong password: type it again
            self.change(form.password, 4)
            self.click(form.submit)
            self.submit(form.form)
        self.identify()
        self.step(200, 1200)
        return ("checkout", None) if next_path == "/checkout" else ("home", None)


_NAV_ROUTES = {
    "/": ("home", None),
    "/products": ("products", None),
    "/cart": ("cart", None),
    "/signup": ("signup", None),
}
_PAGES = {
    "home": _Visit.home,
    "products": _Visit.products,
    "search": _Visit.search_results,
    "product": _Visit.product,
    "back": _Visit.back,
    "reviews": _Visit.reviews,
    "cart": _Visit.cart,
    "checkout": _Visit.checkout,
    "complete": _Visit.complete,
    "signup": _Visit.signup,
    "login": _Visit.login,
}


# -- delivery and the whole run -----------------------------------------------------------------

# A delivered message: (received_ms, occurred_ms, type, name, user_id, page, target, properties,
# context, event_id bits, anonymous_id, session_id, is_duplicate)
_Message = tuple


def _deliver(rng: random.Random, visit: _Visit) -> list[_Message]:
    """Collector receive times: a short network delay, ~1% hours late, ~0.2% sent twice."""
    anonymous_id, session_id = visit.device.anonymous_id, visit.session_id
    slowest = 900 if visit.device.kind == "desktop" else 2500
    messages = []
    for raw in visit.events:
        occurred = raw[0]
        r = rng.random()
        if r < LATE_SHARE:
            received = occurred + rng.randint(_HOUR_MS, 6 * _HOUR_MS)
        else:
            received = occurred + rng.randint(30, slowest)
        messages.append((received, *raw, anonymous_id, session_id, False))
        if LATE_SHARE <= r < LATE_SHARE + DUPLICATE_SHARE:
            retried = received + rng.randint(1000, 30_000)
            messages.append((retried, *raw, anonymous_id, session_id, True))
    return messages


def _simulate_session(
    seed: int, person_index: int, number: int, person: _Person, start_ms: int, end_ms: int
) -> tuple[list[_Message], int | None, str]:
    """One session's messages, the start of the person's next session (or None) and the device.

    Its own random stream, keyed by (seed, person, session number), lets a second pass replay the
    session alone, in global time order, and get exactly the same events.
    """
    rng = random.Random(f"retrolytics/{seed}/{person_index}/{number}")
    devices = person.devices
    device = devices[0] if len(devices) == 1 or rng.random() < 0.55 else devices[1]
    visit = _Visit(rng, person, device, start_ms, end_ms)
    visit.run()
    messages = _deliver(rng, visit)
    comes_back = 0.28 + (0.25 if device.cart else 0.0) + (0.15 if len(devices) > 1 else 0.0)
    if visit.purchased:
        comes_back = 0.2
    next_start = None
    if number + 1 < _MAX_SESSIONS_PER_PERSON and rng.random() < comes_back:
        earliest = visit.t + SESSION_TIMEOUT_MS + 60_000
        for _ in range(20):
            mean_hours = 2.0 if rng.random() < 0.35 else 40.0
            candidate = earliest + int(rng.expovariate(1 / mean_hours) * _HOUR_MS)
            if rng.random() < _busy(candidate):
                break
        if candidate < end_ms:
            next_start = candidate
    return messages, next_start, device.anonymous_id


def _new_person_for(seed: int, index: int, start_ms: int, end_ms: int) -> _Person:
    return _new_person(random.Random(f"retrolytics/{seed}/person/{index}"), start_ms, end_ms)


@dataclass
class TrafficStats:
    """What a run generated; filled while its events are being consumed."""

    events: int = 0
    persons: int = 0
    sessions: int = 0
    devices: int = 0
    purchases: int = 0
    duplicates: int = 0
    late: int = 0


def _window(days: int, until: date) -> tuple[int, int]:
    first = datetime.combine(until - timedelta(days=days - 1), datetime.min.time(), UTC)
    start_ms = int(first.timestamp()) * 1000
    return start_ms, start_ms + days * _DAY_MS


def _plan(events: int, seed: int, start_ms: int, end_ms: int) -> tuple[list[tuple], int]:
    """First pass: simulate whole persons until ``events`` messages, keeping only the schedule.

    Returns (start_ms, person, session number, messages to keep, is the person's last) per
    session, and the number of persons.
    """
    schedule: list[tuple] = []
    total = 0
    person_index = 0
    while total < events:
        person = _new_person_for(seed, person_index, start_ms, end_ms)
        start: int | None = person.first_visit_ms
        number = 0
        first_of_person = len(schedule)
        while start is not None and total < events:
            messages, next_start, _ = _simulate_session(
                seed, person_index, number, person, start, end_ms
            )
            keep = min(len(messages), events - total)
            schedule.append((start, person_index, number, keep, False))
            total += keep
            start, number = next_start, number + 1
        if len(schedule) > first_of_person:
            schedule[-1] = (*schedule[-1][:4], True)
        person_index += 1
    return schedule, person_index


class _Timestamps:
    """RFC 3339 UTC text for epoch milliseconds, caching the part up to the minute."""

    def __init__(self) -> None:
        self.minutes: dict[int, str] = {}

    def __call__(self, ms: int) -> str:
        minute, rest = divmod(ms, 60_000)
        prefix = self.minutes.get(minute)
        if prefix is None:
            moment = datetime.fromtimestamp(minute * 60, UTC)
            prefix = moment.strftime("%Y-%m-%dT%H:%M:")
            self.minutes[minute] = prefix
        seconds, millis = divmod(rest, 1000)
        return f"{prefix}{seconds:02d}.{millis:03d}Z"


def _to_event(message: _Message, timestamp: _Timestamps) -> dict:
    (received, occurred, type_, name, user_id, page, target, properties, context, bits) = message[
        :10
    ]
    event: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=bits, version=4)),
        "type": type_,
    }
    if name:
        event["name"] = name
    event["occurred_at"] = timestamp(occurred)
    event["received_at"] = timestamp(received)
    event["anonymous_id"] = message[10]
    event["user_id"] = user_id
    event["session_id"] = message[11]
    event["page"] = page
    event["context"] = context
    if target:
        event["target"] = target
    if properties:
        event["properties"] = properties
    return event


def _check_arguments(events: int, days: int) -> None:
    if not isinstance(events, int) or events < 1:
        raise ValueError(f"events must be a positive whole number, got {events!r}")
    if not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive whole number, got {days!r}")


def _generate(
    events: int, days: int, seed: int, until: date | None, stats: TrafficStats
) -> Iterator[dict]:
    _check_arguments(events, days)
    start_ms, end_ms = _window(days, until or datetime.now(UTC).date())
    schedule, stats.persons = _plan(events, seed, start_ms, end_ms)
    schedule.sort()
    stats.sessions = len(schedule)
    persons: dict[int, _Person] = {}
    devices: set[str] = set()
    pending: list[tuple[int, int, _Message]] = []  # (received_ms, order, message)
    order = 0
    timestamp = _Timestamps()

    def release(before_ms: int | None) -> Iterator[dict]:
        # Every later session starts at or after before_ms, so its messages arrive after it.
        while pending and (before_ms is None or pending[0][0] <= before_ms):
            message = heapq.heappop(pending)[2]
            stats.events += 1
            if message[12]:
                stats.duplicates += 1
            elif message[3] == "purchase_completed":
                stats.purchases += 1
            if message[0] - message[1] >= _HOUR_MS:
                stats.late += 1
            yield _to_event(message, timestamp)

    for start, person_index, number, keep, last in schedule:
        yield from release(start)
        person = persons.get(person_index)
        if person is None:
            person = persons[person_index] = _new_person_for(seed, person_index, start_ms, end_ms)
        messages, _, anonymous_id = _simulate_session(
            seed, person_index, number, person, start, end_ms
        )
        devices.add(anonymous_id)
        for message in messages[:keep]:
            heapq.heappush(pending, (message[0], order, message))
            order += 1
        if last:
            del persons[person_index]
    stats.devices = len(devices)
    yield from release(None)


def generate_events(events: int, days: int, seed: int, until: date | None = None) -> Iterator[dict]:
    """Exactly ``events`` contract events (duplicates included), in the order received.

    Deterministic for the arguments; ``until`` (default: today, UTC) is the last day of the
    ``days``-day window. The dicts share nested objects: treat them as read-only.
    """
    return _generate(events, days, seed, until, TrafficStats())


def _delivery_report(failures: list) -> Any:
    def on_delivery(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(error)

    return on_delivery


def produce(
    settings: Settings, events: int, days: int = 7, seed: int = 1, until: date | None = None
) -> str:
    """Generate ``events`` events and produce them to ``settings.topic``, keyed by device.

    Raises RuntimeError naming the Kafka error if the topic cannot be reached or any message is
    not acknowledged. Returns a one-line summary.
    """
    _check_arguments(events, days)
    began = time.monotonic()
    try:
        ensure_topic(settings.kafka_bootstrap, settings.topic)
    except KafkaException as exc:
        raise RuntimeError(
            f"cannot prepare topic {settings.topic} on Kafka at {settings.kafka_bootstrap}: {exc}"
        ) from exc
    # No message timestamps from the simulated clock: the broker would apply its retention to
    # them and could delete week-old events right away. Kafka stamps the produce time instead.
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, **RELIABLE_PRODUCER_CONFIG})
    failures: list = []
    on_delivery = _delivery_report(failures)
    stats = TrafficStats()
    for event in _generate(events, days, seed, until, stats):
        value = json.dumps(event, separators=(",", ":")).encode()
        key = event["anonymous_id"].encode()
        while True:
            try:
                producer.produce(settings.topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.5)
        producer.poll(0)
        if failures:
            break
    undelivered = producer.flush(120)
    if failures:
        raise RuntimeError(
            f"{len(failures)} event(s) were not delivered to {settings.topic} at "
            f"{settings.kafka_bootstrap}; first error: {failures[0]}"
        )
    if undelivered:
        raise RuntimeError(
            f"{undelivered} event(s) still unacknowledged by Kafka at {settings.kafka_bootstrap} "
            f"after 120 s (topic {settings.topic})"
        )
    seconds = time.monotonic() - began
    return (
        f"produced {stats.events} events ({stats.sessions} sessions, {stats.devices} devices, "
        f"{stats.purchases} purchases, {stats.duplicates} duplicates of already sent events, "
        f"{stats.late} hours late) to {settings.topic} in {seconds:.1f} s"
    )
