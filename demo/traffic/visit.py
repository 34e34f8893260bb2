"""One visit: a session of one device, page by page from landing to leaving, in time order."""

from __future__ import annotations

import math
import random
from typing import Any, NamedTuple
from urllib.parse import quote_plus

from demo.catalogue import (
    CATEGORIES,
    PRODUCTS_BY_CATEGORY,
    PRODUCTS_BY_ID,
    SHOP_NAME,
    CartLine,
    product_viewed,
    purchase_completed,
    search,
)
from demo.traffic.population import SOURCES, Device, Person, WeightedTable, new_uuid
from demo.traffic.records import ClientEvent
from demo.traffic.targets import (
    ACCOUNT_PROMPT,
    CHECKOUT_PAGES,
    EMPTY_CART_CONTINUE,
    HEADER,
    HOME,
    LISTINGS,
    LOGIN,
    PRODUCT_PAGES,
    SEARCH_GRIDS,
    SIGNUP,
    Grid,
    Target,
    cart_page,
    order_continue,
)

SHOP_ORIGIN = "https://shop.example.com"
MAX_PAUSE_S = 600  # far below the session timeout, so a session never splits by accident
MAX_PAGES_PER_SESSION = 40
# How readily a product page turns into an add-to-cart, by category (cheap hats sell easily).
_ADD_TO_CART_RATE = {"shoes": 0.11, "shirts": 0.14, "bags": 0.09, "hats": 0.17}
# What visitors type into the search box; the last two find nothing.
SEARCHES = (
    "running shoes",
    "boots",
    "sneakers",
    "linen shirt",
    "tee",
    "flannel",
    "backpack",
    "tote bag",
    "duffel",
    "beanie",
    "sun hat",
    "cap",
    "sneekers",
    "gift card",
)
_FOUND = {query: search(query) for query in SEARCHES}
_SEARCHES_BY_CATEGORY = {
    category: tuple(q for q in SEARCHES if _FOUND[q] and _FOUND[q][0].category == category)
    for category in CATEGORIES
}


class Next(NamedTuple):
    """Where a visitor goes next: a page of ``_Visit`` and what it shows."""

    page: str
    argument: Any = None


class WindowClosed(Exception):
    """The simulated clock passed the end of the window: the visit ends there."""


class Visit:
    """One session of one device, written in time order into ``events``."""

    def __init__(
        self, rng: random.Random, person: Person, device: Device, start_ms: int, end_ms: int
    ) -> None:
        self.rng = rng
        self.person = person
        self.device = device
        self.session_id = str(new_uuid(rng))
        self.t = start_ms
        self.end_ms = end_ms
        self.user_id = person.user_id if device.identified else None
        self.page: dict[str, Any] | None = None
        self.landing_referrer: str | None = None
        self.landing_query = ""
        self.landing_context: dict[str, Any] | None = None
        self.events: list[ClientEvent] = []
        self.purchased = False

    # -- writing events

    def emit(
        self,
        type_: str,
        name: str | None = None,
        target: Target | None = None,
        properties: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        if self.t >= self.end_ms:
            raise WindowClosed
        assert self.page is not None, "every event follows a pageview"
        self.events.append(
            ClientEvent(
                occurred_ms=self.t,
                type=type_,
                name=name,
                user_id=self.user_id,
                page=self.page,
                target=target,
                properties=properties,
                context=context or self.device.context,
                id_bits=self.rng.getrandbits(128),
            )
        )

    def pause(self, median_s: float) -> None:
        """A person reading or thinking: log-normal, capped well below the session timeout."""
        seconds = min(self.rng.lognormvariate(math.log(median_s), 0.8), MAX_PAUSE_S)
        self.t += int(seconds * 1000) + 1

    def step(self, low_ms: int, high_ms: int) -> None:
        self.t += self.rng.randint(low_ms, high_ms)

    def click(self, target: Target, child: Target | None = None, child_share: float = 0.35) -> None:
        """Click an element; some clicks land on its child (a label, an image)."""
        chosen = child if child is not None and self.rng.random() < child_share else target
        self.emit("click", target=chosen)
        self.step(150, 1200)

    def submit(self, form: Target) -> None:
        self.step(3, 40)
        self.emit("submit", target=form)
        self.step(200, 1500)

    def change(self, field_target: Target, median_s: float) -> None:
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

    def custom(self, name: str, properties: dict[str, Any]) -> None:
        self.step(20, 400)
        self.emit("custom", name=name, properties=properties)

    def identify(self) -> None:
        self.device.identified = True
        self.person.has_account = True
        self.user_id = self.person.user_id
        self.step(20, 200)
        self.emit("identify")

    # -- where a visit starts

    def land(self) -> Next:
        rng = self.rng
        source = SOURCES.pick(rng)
        category = self.person.favourite if rng.random() < 0.7 else rng.choice(CATEGORIES)
        product = rng.choice(PRODUCTS_BY_CATEGORY[category]).id
        has_cart = bool(self.device.cart)
        campaign = None
        medium = source.medium
        if medium == "paid":
            campaign = f"{category}_search"
            route = Next("products", category) if rng.random() < 0.6 else Next("product", product)
        elif medium == "social":
            campaign = "summer_looks"
            route = Next("product", product) if rng.random() < 0.8 else Next("home")
        elif medium == "email":
            if has_cart and rng.random() < 0.6:
                campaign, route = "cart_reminder", Next("cart")
            else:
                campaign = "weekly_picks"
                route = Next("products") if rng.random() < 0.5 else Next("product", product)
        elif medium == "organic":
            r = rng.random()
            route = (
                Next("product", product)
                if r < 0.5
                else Next("home")
                if r < 0.8
                else Next("products", category)
            )
        elif medium == "referral":
            route = Next("product", product) if rng.random() < 0.9 else Next("home")
        else:  # direct: typed address, bookmark, a cart left open
            r = rng.random()
            if has_cart and r < 0.2:
                route = Next("cart")
            else:
                route = (
                    Next("home")
                    if r < 0.7
                    else Next("products")
                    if r < 0.85
                    else Next("product", product)
                )
        self.landing_referrer = source.referrer
        if source.utm_source:
            self.landing_query = (
                f"utm_source={source.utm_source}&utm_medium={source.utm_medium}"
                f"&utm_campaign={campaign}"
            )
            utm = {"source": source.utm_source, "medium": source.utm_medium, "campaign": campaign}
            self.landing_context = {**self.device.context, "utm": utm}
        return route

    def run(self) -> None:
        route: Next | None = self.land()
        if not self.device.identified and self.person.has_account and self.rng.random() < 0.12:
            route = Next("home", "log in")  # a returning customer on a device not yet logged in
        try:
            for _ in range(MAX_PAGES_PER_SESSION):
                if route is None:
                    break
                route = _PAGES[route.page](self, route.argument)
        except WindowClosed:
            pass

    # -- shared navigation

    def wander(self, stay: float = 0.45) -> Next | None:
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
        action = WeightedTable(choices).pick(rng)
        if action == "search":
            return self.search()
        if action == "logo":
            self.click(HEADER.logo)
            return Next("home")
        if action == "login":
            self.click(HEADER.login)
            return Next("login")
        self.click(HEADER.nav[action])
        return _NAV_ROUTES[action]

    def search(self) -> Next:
        """Type a query into the header search and submit it (Enter or the button)."""
        rng = self.rng
        if rng.random() < 0.85:
            query = rng.choice(_SEARCHES_BY_CATEGORY[self.person.favourite])
        else:
            query = rng.choice(SEARCHES)
        self.change(HEADER.search_input, 4)
        if rng.random() < 0.5:
            self.step(100, 900)
            self.click(HEADER.search_button, HEADER.search_label, 0.4)
        self.submit(HEADER.search_form)
        return Next("search", query)

    def pick_product(self, grid: Grid) -> str:
        """A product from a grid, leaning towards the person's favourite category."""
        rng = self.rng
        ids = list(grid)
        favourites = [i for i in ids if PRODUCTS_BY_ID[i].category == self.person.favourite]
        product_id = rng.choice(favourites if favourites and rng.random() < 0.6 else ids)
        card = grid[product_id]
        r = rng.random()
        self.emit("click", target=card.image if r < 0.45 else card.name if r < 0.65 else card.link)
        self.step(150, 1200)
        return product_id

    # -- pages: each opens itself, then returns where the visitor goes next (None: leaves)

    def home(self, intent: str | None) -> Next | None:
        self.open("/", "", SHOP_NAME)
        self.pause(10)
        if intent == "log in":
            self.click(HEADER.login)
            return Next("login")
        r = self.rng.random()
        if r < 0.3:
            self.click(HOME.shop_now)
            return Next("products")
        if r < 0.52:
            return Next("product", self.pick_product(HOME.grid))
        if r < 0.62:
            return self.search()
        return self.wander()

    def products(self, category: str | None) -> Next | None:
        if category:
            self.open("/products", f"category={category}", category.title())
        else:
            self.open("/products", "", "All products")
        self.pause(12)
        rng = self.rng
        listing = LISTINGS[category]
        r = rng.random()
        if r < 0.18:
            if category is None:
                choice = self.person.favourite if rng.random() < 0.7 else rng.choice(CATEGORIES)
                self.click(listing.filters[choice])
                return Next("products", choice)
            self.click(listing.filter_all)
            return Next("products")
        if r < 0.68:
            return Next("product", self.pick_product(listing.grid))
        if r < 0.74:
            return self.search()
        return self.wander()

    def search_results(self, query: str) -> Next | None:
        """A query's results; the query was just submitted, so they send search_performed."""
        found = _FOUND[query]
        self.open("/search", f"q={quote_plus(query)}", f"Search: {query}")
        self.custom("search_performed", {"query": query, "result_count": len(found)})
        self.pause(8)
        r = self.rng.random()
        if found and r < 0.6:
            return Next("product", self.pick_product(SEARCH_GRIDS[found[0].category]))
        if r < 0.75:
            return self.search()
        return self.wander()

    def product(self, product_id: str) -> Next | None:
        product = PRODUCTS_BY_ID[product_id]
        page = PRODUCT_PAGES[product_id]
        self.open(f"/product/{product_id}", "", product.name)
        self.custom("product_viewed", product_viewed(product))
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
                self.click(HEADER.nav["/cart"])
                return Next("cart")
            if r < 0.85:
                return Next("back") if rng.random() < 0.5 else self.wander(0.9)
            return None
        if r < add_rate + 0.08:
            self.click(page.review_link)
            return Next("reviews", product_id)
        if rng.random() < 0.35:
            return Next("back")
        return self.wander()

    def back(self, _: None) -> Next | None:
        """The browser's back button: the listing again, without a click."""
        self.step(300, 2000)
        return self.products(None)

    def reviews(self, product_id: str) -> Next | None:
        product = PRODUCTS_BY_ID[product_id]
        self.open(f"/product/{product_id}/reviews", "", f"Reviews: {product.name}")
        self.pause(30)
        if self.rng.random() < 0.55:
            self.click(PRODUCT_PAGES[product_id].back_link)
            return Next("product", product_id)
        return self.wander()

    def cart(self, _: None) -> Next | None:
        self.open("/cart", "", "Your cart")
        cart = self.device.cart
        rng = self.rng
        if not cart:
            self.pause(4)
            if rng.random() < 0.5:
                self.click(EMPTY_CART_CONTINUE)
                return Next("products")
            return self.wander()
        self.pause(12)
        page = cart_page(tuple(cart))
        if rng.random() < 0.12:
            removed = rng.choice(list(cart))
            self.click(page.removes[removed])
            del cart[removed]
            if not cart:
                return self.wander()
            page = cart_page(tuple(cart))
            self.pause(5)
        if rng.random() < min(0.9, 0.5 * math.sqrt(self.person.intent)):
            self.click(page.checkout, page.checkout_label)
            self.submit(page.form)
            return Next("checkout")
        return self.wander(0.6)

    def checkout(self, _: None) -> Next | None:
        self.open("/checkout", "", "Checkout")
        rng = self.rng
        anonymous = not self.device.identified
        page = CHECKOUT_PAGES[not anonymous]
        self.pause(6)
        if anonymous:
            if self.person.has_account and rng.random() < 0.45:
                self.click(ACCOUNT_PROMPT.login)
                return Next("login", "/checkout")
            if not self.person.has_account and rng.random() < 0.2:
                self.click(ACCOUNT_PROMPT.signup)
                return Next("signup", "/checkout")
        if anonymous or rng.random() < 0.3:  # logged-in visitors find the email filled in
            self.change(page.email, 8)
        if rng.random() < 0.12:
            return None
        self.change(page.address, 20)
        if rng.random() < min(0.95, 0.7 * self.person.intent**0.3):
            self.pause(4)
            self.click(page.place_order, page.place_order_label)
            self.submit(page.form)
            return Next("complete", f"ord_{rng.getrandbits(40):010x}")
        return None

    def complete(self, order_id: str) -> Next | None:
        cart = self.device.cart
        self.open("/checkout/complete", "", "Order complete")
        lines = [CartLine(PRODUCTS_BY_ID[i], quantity) for i, quantity in cart.items()]
        self.custom("purchase_completed", purchase_completed(order_id, lines))
        cart.clear()
        self.purchased = True
        self.pause(10)
        if self.rng.random() < 0.3:
            self.click(order_continue(order_id))
            return Next("products")
        return None

    def signup(self, next_path: str | None) -> Next | None:
        self.open("/signup", f"next={next_path}" if next_path else "", "Sign up")
        self.change(SIGNUP.email, 6)
        if self.rng.random() < 0.25:
            return None
        self.change(SIGNUP.password, 5)
        self.pause(2)
        self.click(SIGNUP.submit)
        self.submit(SIGNUP.form)
        self.identify()
        source = "checkout" if next_path == "/checkout" else "header"
        self.custom("signup_completed", {"method": "email", "source": source})
        self.step(200, 1200)
        return Next("checkout") if next_path == "/checkout" else Next("home")

    def login(self, next_path: str | None) -> Next | None:
        self.open("/login", f"next={next_path}" if next_path else "", "Log in")
        self.change(LOGIN.email, 5)
        self.change(LOGIN.password, 3)
        self.pause(1)
        self.click(LOGIN.submit)
        self.submit(LOGIN.form)
        if self.rng.random() < 0.1:  # wrong password: type it again
            self.change(LOGIN.password, 4)
            self.click(LOGIN.submit)
            self.submit(LOGIN.form)
        self.identify()
        self.step(200, 1200)
        return Next("checkout") if next_path == "/checkout" else Next("home")


_NAV_ROUTES = {
    "/": Next("home"),
    "/products": Next("products"),
    "/cart": Next("cart"),
    "/signup": Next("signup"),
}
_PAGES = {
    "home": Visit.home,
    "products": Visit.products,
    "search": Visit.search_results,
    "product": Visit.product,
    "back": Visit.back,
    "reviews": Visit.reviews,
    "cart": Visit.cart,
    "checkout": Visit.checkout,
    "complete": Visit.complete,
    "signup": Visit.signup,
    "login": Visit.login,
}
