"""Retro Shop: the demo web shop, wired with the Retrolytics snippet.

``retrolytics shop [--port 8800] [--collector http://127.0.0.1:8700]`` serves it. Its pages have
exactly the DOM that ``demo.traffic`` documents (``SHOP_LAYOUT``/``SHOP_PAGES``) and its
catalogue (``demo.traffic.PRODUCTS``), so the event definitions under ``definitions/`` match real
browser events the same way they match synthetic ones. Every page loads ``retrolytics.js`` from
the collector in ``<head>`` (a script in ``<body>`` would shift the ``nth-child`` of its
siblings) and ``/static/shop.js``, the shop's own behaviour:

- the cart lives in the ``shop_cart`` cookie (``101:1,103:2``), which ``shop.js`` writes on
  "Add to cart" and "Remove" and the server reads to render ``/cart`` and to place the order;
- signing up or logging in sets the ``shop_user`` cookie and calls ``retrolytics.identify`` with
  ``u_`` + the first 12 hex digits of SHA-256 of the lower-cased e-mail address;
- product, search-results and order pages carry their facts as JSON in ``<head>``, from which
  ``shop.js`` sends the custom events ``product_viewed``, ``search_performed``,
  ``signup_completed`` and ``purchase_completed`` with the generator's properties.

Orders are kept in memory (it is a demo): ``POST /checkout/complete`` places one and redirects to
``/checkout/complete?order=<id>``.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from demo.traffic import CATEGORIES, CURRENCY, PRODUCTS, PRODUCTS_BY_ID, SHOP_NAME, Product

DEFAULT_PORT = 8800
DEFAULT_COLLECTOR = "http://127.0.0.1:8700"
STATIC_DIR = Path(__file__).resolve().parent / "static"
CART_COOKIE = "shop_cart"
USER_COOKIE = "shop_user"
FEATURED = tuple(next(p for p in PRODUCTS if p.category == c) for c in CATEGORIES)
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#e63946"/></svg>'
)
_CATEGORY_COLOURS = {"shoes": "#c8553d", "shirts": "#2d7dd2", "bags": "#588b8b", "hats": "#f28f3b"}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _price(amount: float) -> str:
    return f"${amount:,.2f}"


# -- page frame -----------------------------------------------------------------------------


def _page_data(data: dict[str, Any] | None) -> str:
    if data is None:
        return ""
    # "<" escaped so no "</script>" can end the element early.
    payload = json.dumps(data).replace("<", "\\u003c")
    return f'<script type="application/json" id="page-data">{payload}</script>\n'


def render_page(
    title: str, main: str, collector_url: str, data: dict[str, Any] | None = None
) -> str:
    """A whole page: head (snippet, shop script, page data), header, ``main``, footer."""
    full_title = SHOP_NAME if title == SHOP_NAME else f"{title} | {SHOP_NAME}"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(full_title)}</title>
<link rel="stylesheet" href="/static/shop.css">
{_page_data(data)}<script defer src="{_e(collector_url.rstrip("/"))}/retrolytics.js"></script>
<script defer src="/static/shop.js"></script>
</head>
<body>
<header class="site-header">
  <a class="logo" href="/">{_e(SHOP_NAME)}</a>
  <nav class="main-nav">
    <a class="nav-link" href="/">Home</a>
    <a class="nav-link" href="/products">Products</a>
    <a class="nav-link" href="/cart">Cart</a>
    <a class="nav-link" href="/signup">Sign up</a>
  </nav>
  <a class="account-link" href="/login">Log in</a>
  <form id="search" class="search-form" action="/search" method="get" role="search">
    <input name="q" type="search" placeholder="Search the shop" aria-label="Search">
    <button class="search-button" type="submit"><span class="label">Search</span></button>
  </form>
</header>
{main}
<footer class="site-footer">
  <p>{_e(SHOP_NAME)} is the demo shop of Retrolytics. Every click here is an event.</p>
</footer>
</body>
</html>
"""


def _product_card(product: Product) -> str:
    return f"""      <div class="product-card" data-product-id="{product.id}" \
data-category="{product.category}">
        <a class="product-link" href="/product/{product.id}"><img class="product-image" \
src="/images/{product.id}.svg" alt=""><span class="product-name">{_e(product.name)}</span></a>
        <span class="price">{_price(product.price)}</span>
      </div>"""


def _grid(products: Iterable[Product]) -> str:
    cards = "\n".join(_product_card(p) for p in products)
    return f'<div class="product-grid">\n{cards}\n    </div>'


# -- pages ----------------------------------------------------------------------------------


def home_main() -> str:
    return f"""<main id="content" class="page-home">
  <section class="hero">
    <h1>New season, old favourites</h1>
    <a class="cta btn btn-primary" href="/products">Shop now</a>
  </section>
  <section class="featured">
    <h2>Featured</h2>
    {_grid(FEATURED)}
  </section>
</main>"""


def products_main(category: str | None) -> str:
    filters = "\n".join(
        f'      <li><a class="filter-link" href="/products?category={c}" '
        f'data-category="{c}">{c.title()}</a></li>'
        for c in CATEGORIES
    )
    shown = [p for p in PRODUCTS if category is None or p.category == category]
    return f"""<main id="content" class="page-products">
  <aside class="filters">
    <ul class="category-filter">
      <li><a class="filter-link" href="/products">All</a></li>
{filters}
    </ul>
  </aside>
  {_grid(shown)}
</main>"""


def search_products(query: str) -> list[Product]:
    """The catalogue of the first category a query word points at, by the category's name or
    a product's (plurals forgiven): "backpack" finds all bags, as in the generator."""
    words = {w.rstrip("s") for w in query.lower().split() if len(w.rstrip("s")) >= 3}
    for category in CATEGORIES:
        products = [p for p in PRODUCTS if p.category == category]
        if any(w in category or any(w in p.name.lower() for p in products) for w in words):
            return products
    return []


def search_main(query: str, found: list[Product]) -> str:
    results = _grid(found) if found else f'<p class="no-results">No products match {_e(query)}</p>'
    return f"""<main id="content" class="page-search">
  <h1>Results for {_e(query)}</h1>
  {results}
</main>"""


def product_main(product: Product) -> str:
    return f"""<main id="content" class="page-product">
  <div class="product-detail" data-product-id="{product.id}" data-category="{product.category}">
    <img class="product-image" src="/images/{product.id}.svg" alt="{_e(product.name)}">
    <h1 class="product-title">{_e(product.name)}</h1>
    <span class="price">{_price(product.price)}</span>
    <button id="add-to-cart" class="btn btn-primary" type="button" \
data-product-id="{product.id}"><span class="label">Add to cart</span></button>
  </div>
  <div class="reviews">
    <h2>Reviews</h2>
    <a class="review-link" href="/product/{product.id}/reviews">Read {product.reviews} reviews</a>
  </div>
</main>"""


def reviews_main(product: Product) -> str:
    reviews = "\n".join(
        f'    <div class="review"><p>{stars} stars. A solid {product.category[:-1]}.</p></div>'
        for stars in (5, 4, 4, 3, 5)[: min(5, product.reviews)]
    )
    return f"""<main id="content" class="page-reviews">
  <a class="back-link" href="/product/{product.id}">Back to {_e(product.name)}</a>
  <div class="reviews">
{reviews}
  </div>
</main>"""


def parse_cart(cookie: str | None) -> list[tuple[Product, int]]:
    """Cart lines in added order from ``101:1,103:2`` (percent-encoded, as ``shop.js`` writes
    it); unknown products and junk are skipped."""
    lines: dict[str, int] = {}
    for part in unquote(cookie or "").split(","):
        product_id, _, quantity = part.partition(":")
        if product_id in PRODUCTS_BY_ID and quantity.isdigit() and int(quantity) > 0:
            lines[product_id] = lines.get(product_id, 0) + int(quantity)
    return [(PRODUCTS_BY_ID[i], q) for i, q in lines.items()]


def cart_main(lines: list[tuple[Product, int]]) -> str:
    if not lines:
        return """<main id="content" class="page-cart">
  <div class="empty-cart">
    <p>Your cart is empty</p>
    <a class="continue-link" href="/products">Continue shopping</a>
  </div>
</main>"""
    items = "\n".join(
        f"""    <div class="cart-item" data-product-id="{p.id}" data-category="{p.category}">
      <span class="product-name">{_e(p.name)}{f" &times; {q}" if q > 1 else ""}</span>
      <span class="price">{_price(p.price * q)}</span>
      <button class="remove-item" type="button" data-product-id="{p.id}">Remove</button>
    </div>"""
        for p, q in lines
    )
    return f"""<main id="content" class="page-cart">
  <form id="cart" class="cart" action="/checkout" method="get">
{items}
    <button class="checkout btn btn-primary" type="submit"><span class="label">Checkout</span>\
</button>
  </form>
</main>"""


def checkout_main(logged_in: bool) -> str:
    prompt = (
        ""
        if logged_in
        else """  <div class="account-prompt">
    <a class="login-link" href="/login?next=/checkout">Log in</a>
    <a class="signup-link" href="/signup?next=/checkout">Create an account</a>
  </div>
"""
    )
    return f"""<main id="content" class="page-checkout">
{prompt}  <form id="checkout-form" class="checkout-form" action="/checkout/complete" method="post">
    <input name="email" type="email" placeholder="E-mail" aria-label="E-mail" \
autocomplete="email" required>
    <input name="address" type="text" placeholder="Address" aria-label="Address" \
autocomplete="street-address" required>
    <button id="place-order" class="btn btn-primary" type="submit"><span class="label">Place \
order</span></button>
  </form>
</main>"""


def order_main(order_id: str) -> str:
    return f"""<main id="content" class="page-order-complete">
  <div class="order-confirmation" data-order-id="{_e(order_id)}">
    <h1>Thank you for your order</h1>
    <a class="continue-link" href="/products">Continue shopping</a>
  </div>
</main>"""


def auth_main(page: str, form_id: str, button: str, other_class: str, other: str) -> str:
    """Sign-up and login: ``shop.js`` handles the submit; POST (never GET) keeps the password
    out of URLs should the script not run."""
    own_path = "/signup" if other_class == "login-link" else "/login"
    other_href = "/login" if other_class == "login-link" else "/signup"
    password_autocomplete = "new-password" if own_path == "/signup" else "current-password"
    return f"""<main id="content" class="{page}">
  <form id="{form_id}" class="auth-form" action="{own_path}" method="post">
    <input name="email" type="email" placeholder="E-mail" aria-label="E-mail" \
autocomplete="email" required>
    <input name="password" type="password" placeholder="Password" aria-label="Password" \
autocomplete="{password_autocomplete}" required>
    <button class="btn btn-primary" type="submit">{_e(button)}</button>
  </form>
  <a class="{other_class}" href="{other_href}">{_e(other)}</a>
</main>"""


def product_image(product: Product) -> str:
    colour = _CATEGORY_COLOURS[product.category]
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="240" height="180" \
viewBox="0 0 240 180"><rect width="240" height="180" rx="12" fill="{colour}"/>\
<text x="120" y="104" font-family="sans-serif" font-size="40" fill="#fff" \
text-anchor="middle">{_e(product.name[:1])}</text></svg>"""


# -- the app --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    order_id: str
    lines: tuple[tuple[Product, int], ...]

    def facts(self) -> dict[str, Any]:
        """The purchase_completed properties, as the generator sends them."""
        main_product, _ = max(self.lines, key=lambda line: line[0].price * line[1])
        return {
            "order_id": self.order_id,
            "revenue": round(sum(p.price * q for p, q in self.lines), 2),
            "currency": CURRENCY,
            "item_count": sum(q for _, q in self.lines),
            "category": main_product.category,
        }


def _product_facts(product: Product) -> dict[str, Any]:
    return {
        "product_id": product.id,
        "name": product.name,
        "category": product.category,
        "price": product.price,
    }


def create_app(collector_url: str = DEFAULT_COLLECTOR) -> Starlette:
    """The shop as an ASGI app whose pages load the snippet from ``collector_url``."""
    orders: dict[str, Order] = {}

    def page(title: str, main: str, data: dict[str, Any] | None = None) -> HTMLResponse:
        return HTMLResponse(render_page(title, main, collector_url, data))

    def not_found(what: str) -> HTMLResponse:
        main = f'<main id="content" class="page-not-found"><h1>{_e(what)}</h1></main>'
        return HTMLResponse(render_page("Not found", main, collector_url), status_code=404)

    def product_of(request: Request) -> Product | None:
        return PRODUCTS_BY_ID.get(request.path_params["product_id"])

    async def home(_: Request) -> Response:
        return page(SHOP_NAME, home_main())

    async def products(request: Request) -> Response:
        category = request.query_params.get("category")
        if category is not None and category not in CATEGORIES:
            return not_found(f"No category {category}")
        title = category.title() if category else "All products"
        return page(title, products_main(category))

    async def search(request: Request) -> Response:
        query = " ".join(request.query_params.get("q", "").split())[:100]
        found = search_products(query)
        data = {"search": {"query": query, "result_count": len(found)}}
        return page(f"Search: {query}", search_main(query, found), data)

    async def product(request: Request) -> Response:
        item = product_of(request)
        if item is None:
            return not_found("No such product")
        return page(item.name, product_main(item), {"product": _product_facts(item)})

    async def reviews(request: Request) -> Response:
        item = product_of(request)
        if item is None:
            return not_found("No such product")
        return page(f"Reviews: {item.name}", reviews_main(item))

    async def cart(request: Request) -> Response:
        return page("Your cart", cart_main(parse_cart(request.cookies.get(CART_COOKIE))))

    async def checkout(request: Request) -> Response:
        return page("Checkout", checkout_main(bool(request.cookies.get(USER_COOKIE))))

    async def place_order(request: Request) -> Response:
        lines = parse_cart(request.cookies.get(CART_COOKIE))
        if not lines:
            return RedirectResponse("/cart", status_code=303)
        order = Order(f"ord_{secrets.token_hex(5)}", tuple(lines))
        orders[order.order_id] = order
        response = RedirectResponse(f"/checkout/complete?order={order.order_id}", status_code=303)
        response.delete_cookie(CART_COOKIE, path="/")
        return response

    async def order_complete(request: Request) -> Response:
        order = orders.get(request.query_params.get("order", ""))
        if order is None:
            return not_found("No such order")
        data = {"order": order.facts()}
        return page("Order complete", order_main(order.order_id), data)

    async def signup(_: Request) -> Response:
        main = auth_main(
            "page-signup",
            "signup-form",
            "Create account",
            "login-link",
            "Already have an account? Log in",
        )
        return page("Sign up", main)

    async def login(_: Request) -> Response:
        main = auth_main(
            "page-login", "login-form", "Log in", "signup-link", "New here? Create an account"
        )
        return page("Log in", main)

    async def without_script(_: Request) -> Response:
        # shop.js signs in on the client; a form posted without it just goes home.
        return RedirectResponse("/", status_code=303)

    async def favicon(_: Request) -> Response:
        return Response(FAVICON, media_type="image/svg+xml")

    async def image(request: Request) -> Response:
        item = product_of(request)
        if item is None:
            return Response("no such image", status_code=404, media_type="text/plain")
        return Response(product_image(item), media_type="image/svg+xml")

    routes = [
        Route("/", home),
        Route("/products", products),
        Route("/search", search),
        Route("/product/{product_id}", product),
        Route("/product/{product_id}/reviews", reviews),
        Route("/cart", cart),
        Route("/checkout", checkout),
        Route("/checkout/complete", place_order, methods=["POST"]),
        Route("/checkout/complete", order_complete, methods=["GET"]),
        Route("/signup", signup, methods=["GET"]),
        Route("/signup", without_script, methods=["POST"]),
        Route("/login", login, methods=["GET"]),
        Route("/login", without_script, methods=["POST"]),
        Route("/images/{product_id}.svg", image),
        Route("/favicon.ico", favicon),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(routes=routes)


def main(host: str, port: int, collector_url: str) -> int:
    """``retrolytics shop``: serve the demo shop until interrupted."""
    from ingestion.collector import serve

    print(
        f"Retro Shop on http://{host}:{port}/ sending events to {collector_url} "
        f"(start the collector with --allow-origin http://{host}:{port})",
        flush=True,
    )
    serve(create_app(collector_url), host, port)
    return 0
