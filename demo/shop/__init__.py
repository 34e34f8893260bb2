"""Retro Shop: the demo web shop, wired with the Retrolytics snippet.

``retrolytics shop [--port 8800] [--collector http://127.0.0.1:8700]`` serves it. Its pages are
the element trees of ``demo.pages``, the same the traffic generator sends as event targets, and
its catalogue is ``demo.catalogue``, so the event definitions under ``definitions/`` match real
browser events the same way they match synthetic ones. Every page loads ``retrolytics.js`` from
the collector and ``/static/shop.js``, the shop's own behaviour:

- the cart lives in the ``shop_cart`` cookie (``101:1,103:2``), which ``shop.js`` writes on
  "Add to cart" and "Remove" and the server reads to render ``/cart`` and to place the order;
- signing up or logging in sets the ``shop_user`` cookie and calls ``retrolytics.identify`` with
  ``u_`` + the first 12 hex digits of SHA-256 of the lower-cased e-mail address;
- product, search-results and order pages carry their facts as JSON in ``<head>``, from which
  ``shop.js`` sends the custom events ``product_viewed``, ``search_performed``,
  ``signup_completed`` and ``purchase_completed`` with the generator's properties.

The collector accepts the shop's events only from an origin it allows: start it with
``retrolytics collect --allow-origin http://127.0.0.1:8800`` (the shop's own address).

Orders are kept in memory (it is a demo): ``POST /checkout/complete`` places one and redirects to
``/checkout/complete?order=<id>``.
"""

from __future__ import annotations

import html
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from demo import pages
from demo.catalogue import (
    CATEGORIES,
    FEATURED,
    PRODUCTS,
    PRODUCTS_BY_CATEGORY,
    PRODUCTS_BY_ID,
    SHOP_NAME,
    CartLine,
    Product,
    product_viewed,
    purchase_completed,
    search,
)
from demo.dom import Element, to_html

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8800
DEFAULT_COLLECTOR = "http://127.0.0.1:8700"
STATIC_DIR = Path(__file__).resolve().parent / "static"
CART_COOKIE = "shop_cart"
USER_COOKIE = "shop_user"
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#e63946"/></svg>'
)
_CATEGORY_COLOURS = {"shoes": "#c8553d", "shirts": "#2d7dd2", "bags": "#588b8b", "hats": "#f28f3b"}


def origin(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    """The origin the shop's pages send events from: what the collector must allow."""
    return f"http://{host}:{port}"


def parse_cart(cookie: str | None) -> list[CartLine]:
    """Cart lines in added order from ``101:1,103:2`` (percent-encoded, as ``shop.js`` writes
    it); unknown products and junk are skipped."""
    lines: dict[str, int] = {}
    for part in unquote(cookie or "").split(","):
        product_id, _, quantity = part.partition(":")
        if product_id in PRODUCTS_BY_ID and quantity.isdigit() and int(quantity) > 0:
            lines[product_id] = lines.get(product_id, 0) + int(quantity)
    return [CartLine(PRODUCTS_BY_ID[i], q) for i, q in lines.items()]


def product_image(product: Product) -> str:
    colour = _CATEGORY_COLOURS[product.category]
    initial = html.escape(product.name[:1])
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="240" height="180" \
viewBox="0 0 240 180"><rect width="240" height="180" rx="12" fill="{colour}"/>\
<text x="120" y="104" font-family="sans-serif" font-size="40" fill="#fff" \
text-anchor="middle">{initial}</text></svg>"""


@dataclass(frozen=True)
class Order:
    order_id: str
    lines: tuple[CartLine, ...]


def create_app(collector_url: str = DEFAULT_COLLECTOR) -> Starlette:
    """The shop as an ASGI app whose pages load the snippet from ``collector_url``."""
    orders: dict[str, Order] = {}

    def page(
        title: str, main: Element, data: dict[str, Any] | None = None, status_code: int = 200
    ) -> HTMLResponse:
        document = pages.document(main, title, collector_url, data)
        return HTMLResponse("<!doctype html>\n" + to_html(document) + "\n", status_code)

    def not_found(what: str) -> HTMLResponse:
        return page("Not found", pages.not_found_main(what), status_code=404)

    def product_of(request: Request) -> Product | None:
        return PRODUCTS_BY_ID.get(request.path_params["product_id"])

    async def home(_: Request) -> Response:
        return page(SHOP_NAME, pages.home_main(FEATURED))

    async def products(request: Request) -> Response:
        category = request.query_params.get("category")
        if category is None:
            return page("All products", pages.products_main(CATEGORIES, PRODUCTS))
        if category not in CATEGORIES:
            return not_found(f"No category {category}")
        shown = PRODUCTS_BY_CATEGORY[category]
        return page(category.title(), pages.products_main(CATEGORIES, shown))

    async def search_results(request: Request) -> Response:
        query = " ".join(request.query_params.get("q", "").split())[:100]
        found = search(query)
        data = {"search": {"query": query, "result_count": len(found)}}
        return page(f"Search: {query}", pages.search_main(query, found), data)

    async def product(request: Request) -> Response:
        item = product_of(request)
        if item is None:
            return not_found("No such product")
        return page(item.name, pages.product_main(item), {"product": product_viewed(item)})

    async def reviews(request: Request) -> Response:
        item = product_of(request)
        if item is None:
            return not_found("No such product")
        return page(f"Reviews: {item.name}", pages.reviews_main(item))

    async def cart(request: Request) -> Response:
        lines = parse_cart(request.cookies.get(CART_COOKIE))
        return page("Your cart", pages.cart_main(lines))

    async def checkout(request: Request) -> Response:
        logged_in = bool(request.cookies.get(USER_COOKIE))
        return page("Checkout", pages.checkout_main(logged_in))

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
        data = {"order": purchase_completed(order.order_id, order.lines)}
        return page("Order complete", pages.order_main(order.order_id), data)

    async def signup(_: Request) -> Response:
        return page("Sign up", pages.signup_main())

    async def login(_: Request) -> Response:
        return page("Log in", pages.login_main())

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
        Route("/search", search_results),
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
        f"Retro Shop on {origin(host, port)}/ sending events to {collector_url} "
        f"(start the collector with: retrolytics collect --allow-origin {origin(host, port)})",
        flush=True,
    )
    serve(create_app(collector_url), host, port)
    return 0
