"""The raw event contract: the one place that says what an event is.

A Kafka message is one JSON object. This module validates it (pydantic), normalises it and turns
it into a ``raw.events`` row, including the canonical element-hierarchy string that compiled CSS
selectors match (``retrolytics.language.selectors``). Unknown top-level fields are kept in the
``extra`` column, never dropped. The loader reads plain messages faster with msgspec
(``ingestion.fast_contract``), which leaves any other message to this module.

The canonical hierarchy string
------------------------------
Elements from the root to the target (the reverse of the order the browser reports), joined by
``;``. One element is written as::

    tag ["#" id] ("." class)* [":nth-child(" n ")"] ("[" name "=\\"" value "\\"]")*

- ``tag`` is lower-case (``[a-z][a-z0-9-]*``).
- classes are de-duplicated and sorted; attributes are sorted by name, names lower-case.
- In ids, classes and attribute names every character of ``\\ ; # . : [ ] " =`` and white space is
  escaped with a backslash; in attribute values ``\\``, ``"`` and ``;`` are. So an unescaped ``;``
  always separates elements and a selector regex can walk the string unit by unit.
- Example: ``html:nth-child(1);body:nth-child(2);form#cart.cart:nth-child(1);
  button.btn.checkout:nth-child(3)[type="submit"]``
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import msgspec
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

if TYPE_CHECKING:  # it reads the plain message fast, into look-alikes of the models below
    from ingestion import fast_contract

MAX_MESSAGE_BYTES = 64 * 1024
# Deeper JSON than this is refused: Python's json and json.dumps recurse per level, and no
# event needs more (properties and context are small objects).
MAX_JSON_DEPTH = 32
MAX_HIERARCHY_DEPTH = 100
# Every text a definition matches is cut to a bound on ingest, as the snippet cuts it, so a regex
# meets at most this much of one value. Cut, not refused: a long link is still a real event.
MAX_TEXT_LENGTH = 255
MAX_ATTRIBUTE_LENGTH = 1024  # ids and attribute values; href's column holds the same cut value
MAX_URL_LENGTH = 4096  # page.url and page.referrer
MAX_PATH_LENGTH = 2048
MAX_TITLE_LENGTH = 1024
CAPTURED_ATTRIBUTES = ("href", "name", "type")  # plus every data-* attribute
# How far occurred_at (client clock) may lie from received_at (collector clock). Measured against
# received_at, not the loader's clock, so replaying the topic later decides exactly the same way.
MAX_LATENESS = timedelta(days=400)
MAX_CLOCK_SKEW = timedelta(days=1)


class EventType(StrEnum):
    PAGEVIEW = "pageview"
    CLICK = "click"
    SUBMIT = "submit"
    CHANGE = "change"
    TOUCH = "touch"
    CUSTOM = "custom"
    IDENTIFY = "identify"


ELEMENT_EVENT_TYPES = frozenset(
    {EventType.CLICK, EventType.SUBMIT, EventType.CHANGE, EventType.TOUCH}
)


class ContractViolation(ValueError):
    """A message that cannot become a raw event; ``reason`` is meant for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _rfc3339_string(value: Any) -> Any:
    # pydantic would also take epoch numbers; the contract says RFC 3339 text.
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string with a time zone")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_string)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


def _cut_at(limit: int) -> AfterValidator:
    return AfterValidator(lambda text: text[:limit])


AttributeValue = Annotated[str, _cut_at(MAX_ATTRIBUTE_LENGTH)]
Url = Annotated[str, _cut_at(MAX_URL_LENGTH)]
UrlPath = Annotated[str, _cut_at(MAX_PATH_LENGTH)]
Title = Annotated[str, _cut_at(MAX_TITLE_LENGTH)]


class Element(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9-]*$", max_length=64)]
    id: AttributeValue | None = None
    classes: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=64
    )
    nth_child: Annotated[int, Field(ge=1, le=100_000)] | None = None
    attributes: dict[Annotated[str, Field(min_length=1, max_length=64)], AttributeValue] = Field(
        default_factory=dict, max_length=64
    )


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    elements: list[Element] = Field(min_length=1, max_length=MAX_HIERARCHY_DEPTH)
    text: str | None = None


class Page(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: Url | None = None
    path: UrlPath | None = None
    title: Title | None = None
    referrer: Url | None = None


class RawEvent(BaseModel):
    """One autocaptured or tracked event as it arrives on the topic."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    event_id: uuid.UUID
    type: EventType
    name: ShortText | None = None
    occurred_at: Timestamp
    received_at: Timestamp | None = None
    anonymous_id: Annotated[str, Field(min_length=1, max_length=128)]
    user_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    session_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    page: Page | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    target: Target | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fields_the_type_needs(self) -> RawEvent:
        if self.type is EventType.CUSTOM and not self.name:
            raise ValueError("a custom event needs a name")
        if self.type is EventType.IDENTIFY and not self.user_id:
            raise ValueError("an identify event needs a user_id")
        if self.type in ELEMENT_EVENT_TYPES and self.target is None:
            raise ValueError(f"a {self.type.value} event needs a target")
        if self.type is EventType.PAGEVIEW and (self.page is None or not self.page.url):
            raise ValueError("a pageview event needs page.url")
        return self


# -- the canonical hierarchy ----------------------------------------------------------------

_IDENT_SPECIALS = re.compile(r'([\\;#.:\[\]"=\s])')
_VALUE_SPECIALS = re.compile(r'([\\";])')


def escape_ident(text: str) -> str:
    """Escape an id, class or attribute name for the hierarchy string."""
    return _IDENT_SPECIALS.sub(r"\\\1", text)


def escape_value(text: str) -> str:
    """Escape an attribute value for the hierarchy string."""
    return _VALUE_SPECIALS.sub(r"\\\1", text)


def is_captured_attribute(name: str) -> bool:
    return name in CAPTURED_ATTRIBUTES or name.startswith("data-")


def canonical_element(element: Element) -> str:
    attributes = element.attributes
    return _canonical_element(
        element.tag,
        element.id,
        tuple(element.classes),
        element.nth_child,
        tuple(attributes.items()) if attributes else (),
    )


# A site's pages repeat the same few hundred elements (html, body, the header's links) in nearly
# every event: canonicalising each distinct element once pays for the cache many times over.
@lru_cache(maxsize=8192)
def _canonical_element(
    tag: str,
    id: str | None,
    classes: tuple[str, ...],
    nth_child: int | None,
    attributes: tuple[tuple[str, str], ...],
) -> str:
    parts = [tag.lower()]
    if id:
        parts.append("#" + escape_ident(id))
    parts.extend("." + escape_ident(c) for c in sorted(set(classes)))
    if nth_child is not None:
        parts.append(f":nth-child({nth_child})")
    for name, value in sorted(attributes, key=lambda pair: pair[0].lower()):
        parts.append(f'[{escape_ident(name.lower())}="{escape_value(value)}"]')
    return "".join(parts)


def canonical_hierarchy(target: Target) -> str:
    """Root first, target last; see the module docstring for the grammar."""
    # fast_contract's targets carry theirs, worked out once per distinct element list.
    return getattr(target, "hierarchy", None) or canonical_hierarchy_of(target.elements)


def canonical_hierarchy_of(elements: Sequence[Element]) -> str:
    return ";".join(canonical_element(e) for e in reversed(elements))


def normalise_text(text: str | None) -> str | None:
    if text is None:
        return None
    collapsed = " ".join(text.split())
    return collapsed[:MAX_TEXT_LENGTH] or None


# -- rows -----------------------------------------------------------------------------------

EVENT_COLUMNS = (
    "event_id",
    "anonymous_id",
    "occurred_at",
    "received_at",
    "type",
    "name",
    "user_id",
    "session_id",
    "page_url",
    "page_path",
    "page_title",
    "referrer",
    "target_tag",
    "target_id",
    "target_classes",
    "target_text",
    "target_href",
    "hierarchy",
    "properties",
    "context",
    "extra",
    "source_partition",
    "source_offset",
)


def _storable(value: Any) -> Any:
    """Make strings storable: PostgreSQL cannot hold U+0000 and UTF-8 cannot hold a lone
    surrogate (JSON can spell both). Replace them with U+FFFD rather than lose the event."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def check_json_depth(payload: bytes) -> None:
    """Raise ContractViolation when arrays and objects nest deeper than ``MAX_JSON_DEPTH``.

    Scans the bytes without recursion, so a hostile depth cannot exhaust the stack. Cheap for
    ordinary messages: fewer brackets than the limit cannot nest too deep, so they are not scanned.
    """
    if payload.count(b"{") + payload.count(b"[") <= MAX_JSON_DEPTH:
        return
    depth = deepest = 0
    for byte in _JSON_STRING.sub(b'""', payload):
        if byte in b"{[":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"}]":
            depth -= 1
    if deepest > MAX_JSON_DEPTH:
        raise ContractViolation(
            f"message nests arrays/objects {deepest} levels deep, more than the "
            f"{MAX_JSON_DEPTH}-level limit"
        )


def _refuse_constant(name: str) -> Any:
    raise ContractViolation(f"message is not JSON: {name} is not a JSON value")


_RARE_ESCAPE = re.compile(rb"\\u0000|\\u[dD]")


def needs_slow_path(payload: bytes) -> bool:
    """Whether the message spells something only json.loads and ``_storable`` make storable:
    NUL and surrogate escapes, NaN and Infinity. Substring searches first: cheaper than one
    regex with alternatives, which tries each at every byte of the message."""
    return b"NaN" in payload or b"Infinity" in payload or has_rare_escape(payload)


def has_rare_escape(payload: bytes) -> bool:
    """A NUL or surrogate escape: text PostgreSQL cannot store as it is."""
    return b"\\u" in payload and _RARE_ESCAPE.search(payload) is not None


def parse_message(payload: bytes | None) -> RawEvent:
    """Validate one Kafka message value; raise ContractViolation naming what is wrong."""
    if payload is None:
        raise ContractViolation("empty message (no value)")
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ContractViolation(
            f"message is {len(payload)} bytes, larger than the {MAX_MESSAGE_BYTES}-byte limit"
        )
    check_json_depth(payload)
    if not needs_slow_path(payload):
        # Fast path: pydantic parses and validates the bytes in one go. Anything it refuses
        # takes the slow path below, which names the problem precisely.
        try:
            return RawEvent.model_validate_json(payload)
        except ValidationError:
            pass
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractViolation(
            f"message is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ContractViolation(f"message is not JSON: {exc.msg} at character {exc.pos}") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts (4300 digits)
        raise ContractViolation(f"message is not storable JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ContractViolation(f"message is JSON {type(document).__name__}, not an object")
    try:
        return RawEvent.model_validate(_storable(document))
    except ValidationError as exc:
        raise ContractViolation(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "event"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def page_path(page: Page | None) -> str | None:
    if page is None:
        return None
    if page.path:
        return page.path
    if not page.url:
        return None
    try:
        path = urlsplit(page.url).path
    except ValueError as exc:  # e.g. "http://[abc/x": an unclosed IPv6 host
        raise ContractViolation(f"page.url: not a URL ({exc})") from None
    return (path or "/")[:MAX_PATH_LENGTH]


def href_of(element: Element) -> str | None:
    """The ``href`` the hierarchy shows for the element (names compare lower-cased there)."""
    return next((v for name, v in element.attributes.items() if name.lower() == "href"), None)


def check_time_bounds(occurred_at: datetime, received_at: datetime) -> None:
    if occurred_at < received_at - MAX_LATENESS:
        raise ContractViolation(
            f"occurred_at {occurred_at.isoformat()} is more than {MAX_LATENESS.days} days "
            f"before received_at {received_at.isoformat()}"
        )
    if occurred_at > received_at + MAX_CLOCK_SKEW:
        raise ContractViolation(
            f"occurred_at {occurred_at.isoformat()} is more than {MAX_CLOCK_SKEW.days} day "
            f"after received_at {received_at.isoformat()} (client clock ahead)"
        )


_encode_json = msgspec.json.Encoder().encode


def _json_column(value: Any, field: str) -> str:
    """JSON text for a jsonb column. A number JSON can spell but jsonb cannot hold (1e999 parses
    to infinity) or Python cannot print (an integer of thousands of digits) refuses the event
    here, naming the field, instead of failing the whole batch's COPY.

    msgspec encodes; its text differs from json.dumps' only where jsonb stores the same value
    (spacing, escapes, "1e16" for "1e+16"). It writes NaN and infinity as null, though, so text
    with a null in it, and what msgspec cannot encode, take json.dumps, which refuses them."""
    if not value:  # most events' unknown fields, many events' properties: no encoder needed
        return "{}"
    try:
        encoded = _encode_json(value)
    except (msgspec.EncodeError, OverflowError, TypeError, ValueError):
        encoded = None
    if encoded is not None and b"null" not in encoded:
        return encoded.decode()
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError as exc:
        raise ContractViolation(f"{field}: holds a number that cannot be stored ({exc})") from None


def _unknown_fields(event: RawEvent | fast_contract.Event) -> dict[str, Any]:
    extra = dict(event.model_extra or {})
    if event.page is not None and event.page.model_extra:
        extra["page"] = event.page.model_extra
    return extra


def to_row(
    event: RawEvent | fast_contract.Event,
    *,
    received_at: datetime,
    partition: int | None,
    offset: int | None,
) -> tuple:
    """The ``raw.events`` row for an event, in ``EVENT_COLUMNS`` order. ``received_at`` is the
    fallback (the broker's or the caller's time): the collector's stamp, if the event has one,
    wins."""
    received_at = event.received_at or received_at
    check_time_bounds(event.occurred_at, received_at)
    target = event.target
    element = target.elements[0] if target else None
    page = event.page
    return (
        event.event_id,
        event.anonymous_id,
        event.occurred_at,
        received_at,
        event.type.value,
        event.name,
        event.user_id,
        event.session_id,
        page.url if page else None,
        page_path(page),
        page.title if page else None,
        page.referrer if page else None,
        element.tag.lower() if element else None,
        element.id if element else None,
        sorted(set(element.classes)) if element else None,
        normalise_text(target.text) if target else None,
        href_of(element) if element else None,
        canonical_hierarchy(target) if target else None,
        _json_column(event.properties, "properties"),
        _json_column(event.context, "context"),
        _json_column(_unknown_fields(event), "unknown fields"),
        partition,
        offset,
    )
