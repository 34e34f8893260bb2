"""Retro Shop's pages, described once as element trees (``demo.dom``).

The shop serves them as HTML, the traffic generator sends their elements as event targets, and
this documentation shows their outline, so all three always agree. Elements an event can hit
carry a ``key`` the generator finds them by and the event (``on``) they are the target of.

The shop's pages
----------------
Analysts write CSS selectors against this DOM. Each line is one element as a CSS compound
selector of what the snippet captures (tag, id, classes and the attributes ``href``, ``name``,
``type``, ``data-*``), indented under its parent; ``"…"`` is its text (for a target, the text
its events report), ``<- …`` the event it is the target of, ``-- …`` a note. ``<…>`` stands for
a value that varies, e.g. ``<id>`` a product id such as ``101``. Every page has the same frame
(``SHOP_LAYOUT``); ``SHOP_PAGES`` maps each path to the tree inside ``body``.

"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from demo.catalogue import CATEGORIES, SHOP_NAME, CartLine, Product
from demo.dom import Element, Raw, h, merge, outline

NAV_LINKS = (("/", "Home"), ("/products", "Products"), ("/cart", "Cart"), ("/signup", "Sign up"))


def price(amount: float) -> str:
    return f"${amount:,.2f}"


# -- the frame every page shares ----------------------------------------------------------------


def _page_data(data: dict[str, Any] | None) -> Element | None:
    if data is None:
        return None
    # "<" escaped so no "</script>" can end the element early.
    payload = json.dumps(data).replace("<", "\\u003c")
    return h("script#page-data", Raw(payload), attrs={"type": "application/json"})


def _head(title: str, collector_url: str, data: dict[str, Any] | None) -> Element:
    full_title = SHOP_NAME if title == SHOP_NAME else f"{title} | {SHOP_NAME}"
    return h(
        "head",
        h("meta", attrs={"charset": "utf-8"}),
        h("meta", attrs={"name": "viewport", "content": "width=device-width, initial-scale=1"}),
        h("title", full_title),
        h("link", attrs={"rel": "stylesheet", "href": "/static/shop.css"}),
        _page_data(data),
        h("script", attrs={"defer": "", "src": f"{collector_url.rstrip('/')}/retrolytics.js"}),
        h("script", attrs={"defer": "", "src": "/static/shop.js"}),
    )


def _header() -> Element:
    return h(
        "header.site-header",
        h("a.logo", SHOP_NAME, attrs={"href": "/"}, key="logo", on="click"),
        h(
            "nav.main-nav",
            *(
                h("a.nav-link", text, attrs={"href": href}, key=f"nav {href}", on="click")
                for href, text in NAV_LINKS
            ),
        ),
        h("a.account-link", "Log in", attrs={"href": "/login"}, key="login", on="click"),
        h(
            "form#search.search-form",
            h(
                "input",
                attrs={
                    "name": "q",
                    "type": "search",
                    "placeholder": "Search the shop",
                    "aria-label": "Search",
                },
                key="search-input",
                on="change",
            ),
            h(
                "button.search-button",
                h("span.label", "Search", key="search-label", on="click"),
                attrs={"type": "submit"},
                key="search-button",
                on="click",
            ),
            attrs={"action": "/search", "method": "get", "role": "search"},
            key="search-form",
            on="submit",
        ),
    )


def document(
    main: Element,
    title: str = SHOP_NAME,
    collector_url: str = "",
    data: dict[str, Any] | None = None,
) -> Element:
    """A whole page: head (snippet, shop script, page data), header, ``main``, footer. The
    snippet sits in ``<head>``: a script in ``<body>`` would shift its children's ``nth-child``."""
    footer = h(
        "footer.site-footer",
        h("p", f"{SHOP_NAME} is the demo shop of Retrolytics. Every click here is an event."),
    )
    body = h("body", _header(), main, footer)
    return h("html", _head(title, collector_url, data), body, attrs={"lang": "en"})


# -- each page's main ---------------------------------------------------------------------------


def _product_card(product: Product) -> Element:
    return h(
        "div.product-card",
        h(
            "a.product-link",
            h(
                "img.product-image",
                attrs={"src": f"/images/{product.id}.svg", "alt": ""},
                key=f"product-image {product.id}",
                on="click",
            ),
            h("span.product-name", product.name, key=f"product-name {product.id}", on="click"),
            attrs={"href": f"/product/{product.id}"},
            key=f"product-link {product.id}",
            on="click",
        ),
        h("span.price", price(product.price)),
        attrs={"data-product-id": product.id, "data-category": product.category},
        note="one per product, in catalogue order",
    )


def _grid(products: Sequence[Product], note: str) -> Element:
    return h("div.product-grid", *(_product_card(p) for p in products), note=note)


def home_main(featured: Sequence[Product]) -> Element:
    return h(
        "main#content.page-home",
        h(
            "section.hero",
            h("h1", "New season, old favourites"),
            h(
                "a.cta.btn.btn-primary",
                "Shop now",
                attrs={"href": "/products"},
                key="shop-now",
                on="click",
            ),
        ),
        h("section.featured", h("h2", "Featured"), _grid(featured, "one product per category")),
    )


def products_main(categories: Sequence[str], shown: Sequence[Product]) -> Element:
    """The listing with its category filter; ``shown``: all products or one category's."""
    filters = [
        h(
            "li",
            h(
                "a.filter-link",
                category.title(),
                attrs={"href": f"/products?category={category}", "data-category": category},
                key=f"filter {category}",
                on="click",
            ),
            note=f"one per category: {', '.join(CATEGORIES)}",
        )
        for category in categories
    ]
    everything = h(
        "a.filter-link", "All", attrs={"href": "/products"}, key="filter all", on="click"
    )
    return h(
        "main#content.page-products",
        h("aside.filters", h("ul.category-filter", h("li", everything), *filters)),
        _grid(shown, "every product, or those of the chosen category"),
        note="also /products?category=<category>",
    )


def search_main(query: str, found: Sequence[Product]) -> Element:
    results = (
        _grid(found, "the products of the category the query is about")
        if found
        else h("p.no-results", f"No products match {query}", note="instead of the grid")
    )
    return h(
        "main#content.page-search",
        h("h1", f"Results for {query}"),
        results,
        note="/search?q=<query>",
    )


def product_main(product: Product) -> Element:
    return h(
        "main#content.page-product",
        h(
            "div.product-detail",
            h("img.product-image", attrs={"src": f"/images/{product.id}.svg", "alt": product.name}),
            h("h1.product-title", product.name),
            h("span.price", price(product.price)),
            h(
                "button#add-to-cart.btn.btn-primary",
                h("span.label", "Add to cart", key="add-to-cart-label", on="click"),
                attrs={"type": "button", "data-product-id": product.id},
                key="add-to-cart",
                on="click",
            ),
            attrs={"data-product-id": product.id, "data-category": product.category},
        ),
        h(
            "div.reviews",
            h("h2", "Reviews"),
            h(
                "a.review-link",
                f"Read {product.reviews} reviews",
                attrs={"href": f"/product/{product.id}/reviews"},
                key="review-link",
                on="click",
            ),
        ),
    )


REVIEW_STARS = (5, 4, 4, 3, 5)


def reviews_main(product: Product) -> Element:
    reviews = (
        h(
            "div.review",
            h("p", f"{stars} stars. Just as described."),
            note="one per review, up to 5",
        )
        for stars in REVIEW_STARS[: product.reviews]
    )
    return h(
        "main#content.page-reviews",
        h(
            "a.back-link",
            f"Back to {product.name}",
            attrs={"href": f"/product/{product.id}"},
            key="back-link",
            on="click",
        ),
        h("div.reviews", *reviews),
    )


def _cart_item(line: CartLine) -> Element:
    product, quantity = line.product, line.quantity
    return h(
        "div.cart-item",
        h("span.product-name", product.name + (f" \u00d7 {quantity}" if quantity > 1 else "")),
        h("span.price", price(product.price * quantity)),
        h(
            "button.remove-item",
            "Remove",
            attrs={"type": "button", "data-product-id": product.id},
            key=f"remove {product.id}",
            on="click",
        ),
        attrs={"data-product-id": product.id, "data-category": product.category},
        note="one per product in the cart",
    )


def cart_main(lines: Sequence[CartLine]) -> Element:
    if not lines:
        return h(
            "main#content.page-cart",
            h(
                "div.empty-cart",
                h("p", "Your cart is empty"),
                h(
                    "a.continue-link",
                    "Continue shopping",
                    attrs={"href": "/products"},
                    key="continue-shopping",
                    on="click",
                ),
                note="instead of the form when the cart is empty",
            ),
        )
    return h(
        "main#content.page-cart",
        h(
            "form#cart.cart",
            *(_cart_item(line) for line in lines),
            h(
                "button.checkout.btn.btn-primary",
                h("span.label", "Checkout", key="checkout-label", on="click"),
                attrs={"type": "submit"},
                key="checkout",
                on="click",
            ),
            attrs={"action": "/checkout", "method": "get"},
            key="cart-form",
            on="submit",
        ),
    )


def _field(name: str, kind: str, label: str, autocomplete: str) -> Element:
    return h(
        "input",
        attrs={
            "name": name,
            "type": kind,
            "placeholder": label,
            "aria-label": label,
            "autocomplete": autocomplete,
            "required": "",
        },
        key=name,
        on="change",
    )


def checkout_main(logged_in: bool) -> Element:
    prompt = None
    if not logged_in:
        prompt = h(
            "div.account-prompt",
            h(
                "a.login-link",
                "Log in",
                attrs={"href": "/login?next=/checkout"},
                key="checkout-login",
                on="click",
            ),
            h(
                "a.signup-link",
                "Create an account",
                attrs={"href": "/signup?next=/checkout"},
                key="checkout-signup",
                on="click",
            ),
            note="only for visitors who are not logged in",
        )
    return h(
        "main#content.page-checkout",
        prompt,
        h(
            "form#checkout-form.checkout-form",
            _field("email", "email", "E-mail", "email"),
            _field("address", "text", "Address", "street-address"),
            h(
                "button#place-order.btn.btn-primary",
                h("span.label", "Place order", key="place-order-label", on="click"),
                attrs={"type": "submit"},
                key="place-order",
                on="click",
            ),
            attrs={"action": "/checkout/complete", "method": "post"},
            key="checkout-form",
            on="submit",
        ),
    )


def order_main(order_id: str) -> Element:
    return h(
        "main#content.page-order-complete",
        h(
            "div.order-confirmation",
            h("h1", "Thank you for your order"),
            h(
                "a.continue-link",
                "Continue shopping",
                attrs={"href": "/products"},
                key="continue-shopping",
                on="click",
            ),
            attrs={"data-order-id": order_id},
        ),
    )


def _auth_main(signup: bool) -> Element:
    """Sign-up and login: ``shop.js`` handles the submit; POST (never GET) keeps the password
    out of URLs should the script not run."""
    own, other = ("signup", "login") if signup else ("login", "signup")
    other_text = "Already have an account? Log in" if signup else "New here? Create an account"
    return h(
        f"main#content.page-{own}",
        h(
            f"form#{own}-form.auth-form",
            _field("email", "email", "E-mail", "email"),
            _field(
                "password", "password", "Password", "new-password" if signup else "current-password"
            ),
            h(
                "button.btn.btn-primary",
                "Create account" if signup else "Log in",
                attrs={"type": "submit"},
                key="submit",
                on="click",
            ),
            attrs={"action": f"/{own}", "method": "post"},
            key="form",
            on="submit",
        ),
        h(f"a.{other}-link", other_text, attrs={"href": f"/{other}"}),
        note=f"also /{own}?next=/checkout",
    )


def signup_main() -> Element:
    return _auth_main(signup=True)


def login_main() -> Element:
    return _auth_main(signup=False)


def not_found_main(what: str) -> Element:
    return h("main#content.page-not-found", h("h1", what))


# -- the outline of every page, for analysts ---------------------------------------------------

# Stands for any product in the outline; 89.0 and 12 show how a price and a count read.
_ANY_PRODUCT = Product("<id>", "<product name>", "<category>", 89.0, 12)
_ONE_REVIEW = Product("<id>", "<product name>", "<category>", 89.0, 1)


def _outline(*alternatives: Element) -> str:
    merged = alternatives[0]
    for other in alternatives[1:]:
        merged = merge(merged, other)
    return outline(merged)


# Nothing in <head> is ever the target of an event.
SHOP_LAYOUT = outline(
    document(h("main#content", note="the page's own tree, see SHOP_PAGES")),
    hidden=frozenset({"head"}),
)
SHOP_PAGES: dict[str, str] = {
    "/": _outline(home_main((_ANY_PRODUCT,))),
    "/products": _outline(products_main(("<category>",), (_ANY_PRODUCT,))),
    "/search": _outline(search_main("<query>", (_ANY_PRODUCT,)), search_main("<query>", ())),
    "/product/<id>": _outline(product_main(_ANY_PRODUCT)),
    "/product/<id>/reviews": _outline(reviews_main(_ONE_REVIEW)),
    "/cart": _outline(cart_main((CartLine(_ANY_PRODUCT, 1),)), cart_main(())),
    "/checkout": _outline(checkout_main(logged_in=False), checkout_main(logged_in=True)),
    "/checkout/complete": _outline(order_main("<order id>")),
    "/signup": _outline(signup_main()),
    "/login": _outline(login_main()),
}

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
