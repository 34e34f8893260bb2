"""Retro Shop's catalogue and the facts its custom events carry, shared by the shop and the
synthetic traffic so both send the same properties for the same product or order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

SHOP_NAME = "Retro Shop"
CURRENCY = "USD"
CATEGORIES = ("shoes", "shirts", "bags", "hats")


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    category: str
    price: float
    reviews: int


class CartLine(NamedTuple):
    product: Product
    quantity: int


_NAMES_AND_PRICES = {
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

# Ids from 101 in catalogue order; review counts spread over 3-42.
PRODUCTS: tuple[Product, ...] = tuple(
    Product(str(101 + i), name, category, price, reviews=3 + (i * 7) % 40)
    for i, (category, name, price) in enumerate(
        (category, name, price)
        for category, items in _NAMES_AND_PRICES.items()
        for name, price in items
    )
)
PRODUCTS_BY_ID = {p.id: p for p in PRODUCTS}
PRODUCTS_BY_CATEGORY = {c: tuple(p for p in PRODUCTS if p.category == c) for c in CATEGORIES}
# The home page's featured products: the first of each category.
FEATURED = tuple(PRODUCTS_BY_CATEGORY[c][0] for c in CATEGORIES)


def search(query: str) -> tuple[Product, ...]:
    """The catalogue of the first category a query word points at, by the category's name or
    a product's (plurals forgiven): "backpack" finds all bags; "gift card" finds nothing."""
    words = {w.rstrip("s") for w in query.lower().split() if len(w.rstrip("s")) >= 3}
    for category in CATEGORIES:
        products = PRODUCTS_BY_CATEGORY[category]
        if any(w in category or any(w in p.name.lower() for p in products) for w in words):
            return products
    return ()


def product_viewed(product: Product) -> dict[str, Any]:
    """The properties of the custom event ``product_viewed``."""
    return {
        "product_id": product.id,
        "name": product.name,
        "category": product.category,
        "price": product.price,
    }


def purchase_completed(order_id: str, lines: Sequence[CartLine]) -> dict[str, Any]:
    """The properties of the custom event ``purchase_completed``; ``category`` is the category
    of the line that cost the most."""
    main_line = max(lines, key=lambda line: line.product.price * line.quantity)
    return {
        "order_id": order_id,
        "revenue": round(sum(line.product.price * line.quantity for line in lines), 2),
        "currency": CURRENCY,
        "item_count": sum(line.quantity for line in lines),
        "category": main_line.product.category,
    }
