"""Who visits Retro Shop and when: persons with one or two devices, where their visits come from
and the daily rhythm they follow."""

from __future__ import annotations

import random
import uuid
from bisect import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

LIBRARY = {"name": "retrolytics.js", "version": "0.1.0"}
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

T = TypeVar("T")


class WeightedTable(Generic[T]):
    """Weighted choice with one random number and a binary search (rng.choices is slower)."""

    def __init__(self, weighted: Sequence[tuple[T, float]]) -> None:
        self.items = [item for item, _ in weighted]
        self.cumulative: list[float] = []
        total = 0.0
        for _, weight in weighted:
            total += weight
            self.cumulative.append(total)
        self.total = total

    def pick(self, rng: random.Random) -> T:
        return self.items[bisect(self.cumulative, rng.random() * self.total)]


class DeviceModel(NamedTuple):
    user_agent: str
    width: int
    height: int


DEVICE_MODELS: dict[str, tuple[DeviceModel, ...]] = {
    "desktop": (
        DeviceModel(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36",
            1920,
            1080,
        ),
        DeviceModel(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/17.4 Safari/605.1.15",
            1440,
            900,
        ),
        DeviceModel(
            "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", 1920, 1080
        ),
        DeviceModel(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
            1366,
            768,
        ),
    ),
    "mobile": (
        DeviceModel(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
            "like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            390,
            844,
        ),
        DeviceModel(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Mobile Safari/537.36",
            412,
            915,
        ),
        DeviceModel(
            "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Mobile Safari/537.36",
            360,
            780,
        ),
    ),
    "tablet": (
        DeviceModel(
            "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            820,
            1180,
        ),
    ),
}


DEVICE_KINDS = WeightedTable([("mobile", 55), ("desktop", 38), ("tablet", 7)])
LOCALES = WeightedTable([("en-US", 60), ("en-GB", 15), ("de-DE", 10), ("fr-FR", 8), ("es-ES", 7)])
FAVOURITES = WeightedTable([("shoes", 35), ("shirts", 30), ("bags", 20), ("hats", 15)])


class Source(NamedTuple):
    """Where a visit comes from: its medium, the referrer, and the UTM source and medium of a
    campaign (None outside campaigns)."""

    medium: str
    referrer: str | None
    utm_source: str | None = None
    utm_medium: str | None = None


SOURCES = WeightedTable(
    [
        (Source("direct", None), 33),
        (Source("organic", "https://www.google.com/"), 18),
        (Source("organic", "https://www.bing.com/"), 4),
        (Source("organic", "https://duckduckgo.com/"), 3),
        (Source("paid", "https://www.google.com/", "google", "cpc"), 14),
        (Source("social", "https://l.instagram.com/", "instagram", "social"), 6),
        (Source("social", "https://www.facebook.com/", "facebook", "social"), 4),
        (Source("email", None, "newsletter", "email"), 12),
        (Source("referral", "https://blog.example.org/gear-guide"), 6),
    ]
)
# Relative traffic per UTC hour: quiet nights, a lunch bump, busy evenings.
_HOUR_WEIGHTS = (
    0.25, 0.18, 0.12, 0.1, 0.1, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 1.0,
    1.0, 0.95, 0.9, 0.9, 0.95, 1.0, 1.1, 1.2, 1.2, 1.05, 0.8, 0.5,
)  # fmt: skip
_WEEKEND_FACTOR = 1.15


def busy(moment_ms: int) -> float:
    """Probability of keeping a visit drawn at this moment (rejection sampling of the rhythm)."""
    day = moment_ms // DAY_MS
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    factor = _WEEKEND_FACTOR if weekday >= 5 else 1.0
    return _HOUR_WEIGHTS[(moment_ms // HOUR_MS) % 24] * factor / (1.2 * _WEEKEND_FACTOR)


def new_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


@dataclass
class Device:
    anonymous_id: str
    kind: str
    context: dict[str, Any]
    identified: bool = False
    cart: dict[str, int] = field(default_factory=dict)  # product id -> quantity, in added order


@dataclass
class Person:
    user_id: str
    devices: list[Device]
    has_account: bool
    intent: float  # multiplies the chance of adding to cart and buying
    favourite: str
    first_visit_ms: int


def random_moment(rng: random.Random, start_ms: int, end_ms: int) -> int:
    """A moment in [start, end) that follows the daily rhythm."""
    while True:
        moment = start_ms + int(rng.random() * (end_ms - start_ms))
        if rng.random() < busy(moment):
            return moment


def _new_device(rng: random.Random, kind: str) -> Device:
    model = rng.choice(DEVICE_MODELS[kind])
    context = {
        "user_agent": model.user_agent,
        "library": LIBRARY,
        "screen": {"width": model.width, "height": model.height},
        "locale": LOCALES.pick(rng),
    }
    return Device(str(new_uuid(rng)), kind, context)


def new_person(rng: random.Random, start_ms: int, end_ms: int) -> Person:
    two_devices = rng.random() < 0.15
    if two_devices:
        devices = [_new_device(rng, "mobile"), _new_device(rng, "desktop")]
    else:
        devices = [_new_device(rng, DEVICE_KINDS.pick(rng))]
    has_account = rng.random() < (0.7 if two_devices else 0.25)
    if has_account and rng.random() < 0.4:
        devices[0].identified = True  # logged in before the window began
    return Person(
        user_id=f"u_{rng.getrandbits(48):012x}",
        devices=devices,
        has_account=has_account,
        intent=min(3.0, max(0.2, rng.lognormvariate(0.0, 0.6))),
        favourite=FAVOURITES.pick(rng),
        first_visit_ms=random_moment(rng, start_ms, end_ms),
    )
