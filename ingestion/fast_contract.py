"""The plain message read fast: a strict msgspec reading of the raw event contract.

``ingestion.contract`` (pydantic) is the contract's judge: it decides every message and says why
one is refused, at about 25 µs a message. Nearly every message is plain, though: no unknown
field, no value to cut or strip, its times in the usual RFC 3339 spelling. ``decode`` reads such
a message with msgspec in a few µs into Structs with the attribute names of the contract's
models, which ``contract.to_row`` and ``redaction.redact`` read alike.

``decode`` accepts only messages ``contract.RawEvent`` accepts, with the same values; for
anything else it returns None and the caller asks pydantic. So the types below are the
contract's, narrowed: a limit the contract cuts to is a limit here (a longer value goes to
pydantic, which cuts it); strings pydantic strips must have nothing to strip. Any change to the
contract's models must be made here too: tests/unit/test_fast_contract.py compares the two.
"""

import re
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, ClassVar

import msgspec

from ingestion.contract import (
    ELEMENT_EVENT_TYPES,
    MAX_ATTRIBUTE_LENGTH,
    MAX_HIERARCHY_DEPTH,
    MAX_MESSAGE_BYTES,
    MAX_PATH_LENGTH,
    MAX_TITLE_LENGTH,
    MAX_URL_LENGTH,
    EventType,
    RawEvent,
    canonical_hierarchy_of,
    check_json_depth,
    has_rare_escape,
    parse_message,
)

# Times: msgspec's own RFC 3339 reading (aware times only) accepts no spelling pydantic refuses
# and reads the instant pydantic reads, but for a fraction of more than 6 digits, which msgspec
# rounds and pydantic truncates: a message with such a number anywhere goes to pydantic, and so
# does one with a digit or a dot spelled as an escape (\u0037), which would hide one from this
# check of the bytes. (A hook that read the text with datetime.fromisoformat cost 3.4 µs a
# message more.)
ClientTime = Annotated[datetime, msgspec.Meta(tz=True)]
_SEVEN_DIGIT_FRACTION = re.compile(rb"\.\d{7}")  # a literal first: searched fast
_ESCAPED_DIGIT_OR_DOT = re.compile(rb"\\u00(?:3\d|2[eE])")  # one regex of both scanned every byte

# An element's tag as the contract's pattern has it (pydantic checks it with Rust's regex, where $
# is the end of the text). Checked after decoding, through a cache: a site has a few dozen tags,
# and msgspec's pattern check ran Python's re for every element (1.2 µs a message).
_TAG = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


@lru_cache(maxsize=1024)
def _is_tag(text: str) -> bool:
    return _TAG.fullmatch(text) is not None


def _text(min_length: int, max_length: int) -> Any:
    return Annotated[str, msgspec.Meta(min_length=min_length, max_length=max_length)]


# The same limits as the contract's fields.
Tag = Annotated[str, msgspec.Meta(max_length=64)]  # and _is_tag
AttributeValue = _text(0, MAX_ATTRIBUTE_LENGTH)
ClassName = _text(1, 256)
AttributeName = _text(1, 64)
NthChild = Annotated[int, msgspec.Meta(ge=1, le=100_000)]


class Element(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    tag: Tag
    id: AttributeValue | None = None
    # A tuple: canonical_element's cache key takes it as it is.
    classes: Annotated[tuple[ClassName, ...], msgspec.Meta(max_length=64)] = ()
    nth_child: NthChild | None = None
    attributes: Annotated[dict[AttributeName, AttributeValue], msgspec.Meta(max_length=64)] = {}


# A tuple of frozen Structs: a list read once is shared by every event that spells it.
Elements = Annotated[
    tuple[Element, ...], msgspec.Meta(min_length=1, max_length=MAX_HIERARCHY_DEPTH)
]


class Target(msgspec.Struct, forbid_unknown_fields=True):
    """As decoded, ``elements`` is the list's JSON text: ``_read_target`` reads it, and a site's
    clicks repeat a few thousand lists, so each distinct one is read and canonicalised once."""

    elements: msgspec.Raw  # then Elements, set by _read_target
    text: str | None = None
    # Set by _read_target. The contract has no such field: a message that spells one, even as
    # null (which is not a str), goes to pydantic, which refuses it.
    hierarchy: str | msgspec.UnsetType = msgspec.UNSET


class _ReadElements(msgspec.Struct, frozen=True):
    elements: Elements
    hierarchy: str  # contract.canonical_hierarchy of them


class Page(msgspec.Struct, forbid_unknown_fields=True):
    url: _text(0, MAX_URL_LENGTH) | None = None
    path: _text(0, MAX_PATH_LENGTH) | None = None
    title: _text(0, MAX_TITLE_LENGTH) | None = None
    referrer: _text(0, MAX_URL_LENGTH) | None = None
    model_extra: ClassVar[None] = None  # pydantic's name: unknown fields go to pydantic


class Event(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``contract.RawEvent`` without unknown fields."""

    event_id: uuid.UUID
    type: EventType
    name: _text(1, 200) | None = None
    occurred_at: ClientTime
    received_at: ClientTime | None = None
    anonymous_id: _text(1, 128)
    user_id: _text(1, 256) | None = None
    session_id: _text(1, 128) | None = None
    page: Page | None = None
    context: dict[str, Any] = {}
    target: Target | None = None
    properties: dict[str, Any] = {}
    model_extra: ClassVar[None] = None


_decoder = msgspec.json.Decoder(Event)


def read_message(payload: bytes | None) -> Event | RawEvent:
    """The loader's reading of a message: a plain one by ``decode``, any other by
    ``contract.parse_message``, which raises ContractViolation naming what is wrong."""
    # No search for NaN and Infinity here: msgspec refuses them, and decode's None hands such a
    # message to pydantic (2.6 µs a message saved).
    if payload is not None and len(payload) <= MAX_MESSAGE_BYTES and not has_rare_escape(payload):
        check_json_depth(payload)  # before any decoder recurses into it
        event = decode(payload)
        if event is not None:
            return event
    return parse_message(payload)


def decode(payload: bytes) -> Event | None:
    """The event, if the message is plain and valid; None sends it to pydantic."""
    if _SEVEN_DIGIT_FRACTION.search(payload) is not None or (
        b"\\u00" in payload and _ESCAPED_DIGIT_OR_DOT.search(payload) is not None
    ):
        return None
    try:
        event = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None  # UnicodeDecodeError: invalid UTF-8 inside a string
    if event.target is not None and not _read_target(event.target):
        return None
    plain = _stripped(event) and _has_what_its_type_needs(event)
    return event if plain else None


def _read_target(target: Target) -> bool:
    """Replace the target's element list by the elements it spells; False if pydantic must judge
    them."""
    if target.hierarchy is not msgspec.UNSET:
        return False
    text = bytes(target.elements)
    read = _read_elements(text) if len(text) <= _CACHED_ELEMENTS_BYTES else _elements_of(text)
    if read is None:
        return False
    target.elements = read.elements  # shared by every event with this list: read, never changed
    target.hierarchy = read.hierarchy
    return True


_elements_decoder = msgspec.json.Decoder(Elements)
# A click's list is a few hundred bytes (at most 502 in 100k generated events, 633 distinct
# lists); a longer one is read but not kept. Read, a list takes about ten times its text, so
# the cache holds at most some 2048 * 1 KiB * 10 = 20 MiB whatever is sent.
_CACHED_ELEMENTS_BYTES = 1024


def _elements_of(text: bytes) -> _ReadElements | None:
    try:
        elements = _elements_decoder.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None
    if not all(_is_tag(element.tag) for element in elements):
        return None
    return _ReadElements(elements, canonical_hierarchy_of(elements))


_read_elements = lru_cache(maxsize=2048)(_elements_of)


def _stripped(event: Event) -> bool:
    """Whether pydantic's str_strip_whitespace (RawEvent's strings and the keys of its dicts)
    would leave the event as it is."""
    for text in (event.name, event.anonymous_id, event.user_id, event.session_id):
        if text is not None and text != text.strip():
            return False
    for keys in (event.context, event.properties):
        for key in keys:
            if key != key.strip():
                return False
    return True


def _has_what_its_type_needs(event: Event) -> bool:
    """RawEvent's model validator, as a question: pydantic words the refusal."""
    kind = event.type
    if kind is EventType.CUSTOM:
        return bool(event.name)
    if kind is EventType.IDENTIFY:
        return bool(event.user_id)
    if kind in ELEMENT_EVENT_TYPES:
        return event.target is not None
    if kind is EventType.PAGEVIEW:
        return event.page is not None and bool(event.page.url)
    return True
