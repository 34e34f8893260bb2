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
    check_json_depth,
    has_rare_escape,
    parse_message,
)

# Date, 'T', time, at most 6 digits of a second (pydantic truncates more, msgspec would round)
# and a zone: a spelling that datetime.fromisoformat and pydantic read to the same instant.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")


class ClientTime(datetime):
    """An event's time as the contract spells it (RFC 3339 with a zone); see ``_client_time``."""


def _client_time(kind: type, value: Any) -> Any:
    """msgspec's hook for ``ClientTime`` fields: the JSON string read as an aware datetime."""
    if kind is ClientTime and isinstance(value, str) and _RFC3339.fullmatch(value):
        return ClientTime.fromisoformat(value)  # ValueError (e.g. hour 25) refuses the message
    raise ValueError("not a plain RFC 3339 time")


def _text(min_length: int, max_length: int) -> Any:
    return Annotated[str, msgspec.Meta(min_length=min_length, max_length=max_length)]


# The same limits as the contract's fields; pydantic checks a tag with Rust's regex, where $ is
# the end of the text: \Z in Python's.
Tag = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9-]*\Z", max_length=64)]
AttributeValue = _text(0, MAX_ATTRIBUTE_LENGTH)
ClassName = _text(1, 256)
AttributeName = _text(1, 64)
NthChild = Annotated[int, msgspec.Meta(ge=1, le=100_000)]


class Element(msgspec.Struct, forbid_unknown_fields=True):
    tag: Tag
    id: AttributeValue | None = None
    # A tuple: canonical_element's cache key takes it as it is.
    classes: Annotated[tuple[ClassName, ...], msgspec.Meta(max_length=64)] = ()
    nth_child: NthChild | None = None
    attributes: Annotated[dict[AttributeName, AttributeValue], msgspec.Meta(max_length=64)] = {}


class Target(msgspec.Struct, forbid_unknown_fields=True):
    elements: Annotated[list[Element], msgspec.Meta(min_length=1, max_length=MAX_HIERARCHY_DEPTH)]
    text: str | None = None


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


_decoder = msgspec.json.Decoder(Event, dec_hook=_client_time)


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
    try:
        event = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None  # UnicodeDecodeError: invalid UTF-8 inside a string
    return event if _stripped(event) and _has_what_its_type_needs(event) else None


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
