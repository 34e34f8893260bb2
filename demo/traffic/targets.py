"""The elements simulated visitors act on, as the event targets a browser reports for them.

Each comes from the page trees of ``demo.pages`` (the same trees the shop serves), grouped per
page. Targets are shared, read-only dicts: events carry them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from demo import pages
from demo.catalogue import (
    CATEGORIES,
    FEATURED,
    PRODUCTS,
    PRODUCTS_BY_CATEGORY,
    PRODUCTS_BY_ID,
    CartLine,
    Product,
)
from demo.dom import Element, targets

Target = dict[str, Any]


def _targets_of(main: Element) -> dict[str, Target]:
    return targets(pages.document(main))


@dataclass(frozen=True)
class Header:
    """The frame every page shares."""

    logo: Target
    nav: dict[str, Target]  # by href
    login: Target
    search_form: Target
    search_input: Target
    search_button: Target
    search_label: Target


def _header() -> Header:
    found = _targets_of(pages.home_main(FEATURED))
    return Header(
        logo=found["logo"],
        nav={href: found[f"nav {href}"] for href, _ in pages.NAV_LINKS},
        login=found["login"],
        search_form=found["search-form"],
        search_input=found["search-input"],
        search_button=found["search-button"],
        search_label=found["search-label"],
    )


class ProductCard(NamedTuple):
    """A product in a grid: its link, and the image and the name inside the link."""

    link: Target
    image: Target
    name: Target


Grid = dict[str, ProductCard]  # by product id, in grid order


def _grid(found: dict[str, Target], products: tuple[Product, ...]) -> Grid:
    return {
        p.id: ProductCard(
            found[f"product-link {p.id}"],
            found[f"product-image {p.id}"],
            found[f"product-name {p.id}"],
        )
        for p in products
    }


@dataclass(frozen=True)
class HomePage:
    shop_now: Target
    grid: Grid


def _home() -> HomePage:
    found = _targets_of(pages.home_main(FEATURED))
    return HomePage(found["shop-now"], _grid(found, FEATURED))


@dataclass(frozen=True)
class ListingPage:
    """``/products``, or ``/products?category=…``."""

    filter_all: Target
    filters: dict[str, Target]  # by category
    grid: Grid


def _listing(category: str | None) -> ListingPage:
    shown = PRODUCTS_BY_CATEGORY[category] if category else PRODUCTS
    found = _targets_of(pages.products_main(CATEGORIES, shown))
    filters = {c: found[f"filter {c}"] for c in CATEGORIES}
    return ListingPage(found["filter all"], filters, _grid(found, shown))


def _search_grid(category: str) -> Grid:
    found_products = PRODUCTS_BY_CATEGORY[category]
    # The query is only in the heading; the grid's targets do not depend on it.
    found = _targets_of(pages.search_main(category, found_products))
    return _grid(found, found_products)


@dataclass(frozen=True)
class ProductPage:
    add_to_cart: Target
    add_to_cart_label: Target
    review_link: Target
    back_link: Target  # on its reviews page


def _product_page(product: Product) -> ProductPage:
    found = _targets_of(pages.product_main(product))
    back = _targets_of(pages.reviews_main(product))["back-link"]
    return ProductPage(found["add-to-cart"], found["add-to-cart-label"], found["review-link"], back)


@dataclass(frozen=True)
class CartPage:
    form: Target
    checkout: Target
    checkout_label: Target
    removes: dict[str, Target]  # by product id


@lru_cache(maxsize=4096)
def cart_page(product_ids: tuple[str, ...]) -> CartPage:
    """The cart holding these products, in added order (quantities change no target)."""
    found = _targets_of(pages.cart_main([CartLine(PRODUCTS_BY_ID[i], 1) for i in product_ids]))
    removes = {i: found[f"remove {i}"] for i in product_ids}
    return CartPage(found["cart-form"], found["checkout"], found["checkout-label"], removes)


@dataclass(frozen=True)
class CheckoutPage:
    form: Target
    email: Target
    address: Target
    place_order: Target
    place_order_label: Target


def _checkout_page(logged_in: bool) -> CheckoutPage:
    found = _targets_of(pages.checkout_main(logged_in))
    return CheckoutPage(
        form=found["checkout-form"],
        email=found["email"],
        address=found["address"],
        place_order=found["place-order"],
        place_order_label=found["place-order-label"],
    )


@dataclass(frozen=True)
class AccountPrompt:
    """The checkout's links for visitors who are not logged in."""

    login: Target
    signup: Target


def _account_prompt() -> AccountPrompt:
    found = _targets_of(pages.checkout_main(logged_in=False))
    return AccountPrompt(found["checkout-login"], found["checkout-signup"])


def order_continue(order_id: str) -> Target:
    """ "Continue shopping" on the confirmation of this order."""
    return _targets_of(pages.order_main(order_id))["continue-shopping"]


@dataclass(frozen=True)
class AuthPage:
    form: Target
    email: Target
    password: Target
    submit: Target


def _auth_page(main: Element) -> AuthPage:
    found = _targets_of(main)
    return AuthPage(found["form"], found["email"], found["password"], found["submit"])


HEADER = _header()
HOME = _home()
LISTINGS = {category: _listing(category) for category in (None, *CATEGORIES)}
SEARCH_GRIDS = {category: _search_grid(category) for category in CATEGORIES}
PRODUCT_PAGES = {p.id: _product_page(p) for p in PRODUCTS}
EMPTY_CART_CONTINUE = _targets_of(pages.cart_main(()))["continue-shopping"]
CHECKOUT_PAGES = {logged_in: _checkout_page(logged_in) for logged_in in (True, False)}
ACCOUNT_PROMPT = _account_prompt()
SIGNUP = _auth_page(pages.signup_main())
LOGIN = _auth_page(pages.login_main())
