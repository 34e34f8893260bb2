"""Redaction on the way in: what must never be stored is removed before anything stores it.

The rules are declared in ``definitions/privacy.yml`` (validated and compiled by
``retrolytics.language.privacy``) and applied by ``redact`` to each validated event, once by the
collector before Kafka sees it and again by the loader (for events that reached the topic
another way; applying the rules twice changes nothing):

- URL query parameters named in ``drop_query_parameters`` leave ``page.url`` and
  ``page.referrer`` (names compare case-insensitively); a default list covers common tokens,
  e-mail and password parameters;
- the element text of a click, submit or change leaves when the target or an ancestor matches
  one of ``drop_text_for_selectors`` (CSS, as in event definitions); the snippet already never
  sends field values nor text under ``[data-private]``;
- ``properties.drop`` keys leave custom properties, ``properties.hash`` keys are replaced by
  ``sha256:<hex>`` of their JSON value;
- the client IP is never stored unless ``ip: truncated`` (then the collector keeps
  ``context.ip`` cut to /24 for IPv4 and /48 for IPv6); with ``ip: none`` any ``context.ip`` a
  client sent is dropped.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ingestion.contract import RawEvent, canonical_hierarchy
from ingestion.fast_contract import Event

DEFAULT_QUERY_PARAMETERS = frozenset(
    {
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "auth",
        "code",
        "key",
        "api_key",
        "apikey",
        "secret",
        "password",
        "passwd",
        "pwd",
        "email",
        "e-mail",
        "mail",
        "session",
        "sessionid",
    }
)
DEFAULT_PRIVATE_SELECTORS = ("[data-private]", "input", "[type=password]")
IP_MODES = ("none", "truncated")


@dataclass(frozen=True)
class Redaction:
    """Compiled rules; ``private_text`` holds the selector regexes over the hierarchy string."""

    query_parameters: frozenset[str] = DEFAULT_QUERY_PARAMETERS
    private_text: tuple[str, ...] = ()
    drop_properties: frozenset[str] = frozenset()
    hash_properties: frozenset[str] = frozenset()
    ip: str = "none"
    _patterns: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_patterns", tuple(re.compile(p) for p in self.private_text))


def redact(event: RawEvent | Event, rules: Redaction) -> bool:
    """Apply the rules to the event in place; whether anything was removed or replaced."""
    changed = False
    page = event.page
    if page is not None:
        for name in ("url", "referrer"):
            value = getattr(page, name)
            if value and "?" in value:  # no query to clean: spare splitting the URL
                cleaned = _cleaned_query(value, rules.query_parameters)
                if cleaned != value:
                    setattr(page, name, cleaned)
                    changed = True
    target = event.target
    if (
        target is not None
        and target.text
        and rules._patterns
        and _is_private(canonical_hierarchy(target), rules._patterns)
    ):
        target.text = None
        changed = True
    properties = event.properties
    if properties and not rules.drop_properties.isdisjoint(properties):
        for name in rules.drop_properties & properties.keys():
            del properties[name]
            changed = True
    if properties and not rules.hash_properties.isdisjoint(properties):
        for name in rules.hash_properties & properties.keys():
            value = properties[name]
            if not (isinstance(value, str) and value.startswith("sha256:")):
                encoded = json.dumps(value, sort_keys=True).encode()
                properties[name] = "sha256:" + hashlib.sha256(encoded).hexdigest()
                changed = True
    if "ip" in event.context:
        address = event.context["ip"]
        kept = (
            truncated_ip(address) if rules.ip == "truncated" and isinstance(address, str) else None
        )
        if kept is None:
            del event.context["ip"]
            changed = True
        elif kept != address:
            event.context["ip"] = kept
            changed = True
    return changed


# A site's clicks repeat the same few thousand hierarchies, and a selector's regex cost ~16 µs an
# event in the loader (4 selectors, 100k events): decide each hierarchy once.
@lru_cache(maxsize=8192)
def _is_private(hierarchy: str, patterns: tuple[re.Pattern[str], ...]) -> bool:
    return any(pattern.search(hierarchy) for pattern in patterns)


# Landing pages, listings and referrers repeat their URLs many times over: parse each once.
# A URL is at most contract.MAX_URL_LENGTH characters, so the cache holds a few MB at most.
@lru_cache(maxsize=1024)
def _cleaned_query(url: str, names: frozenset[str]) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url  # the contract refuses it with a reason of its own
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k.lower() not in names]
    if len(kept) == len(pairs):
        return url
    return urlunsplit(parts._replace(query=urlencode(kept)))


def truncated_ip(address: str) -> str | None:
    """/24 of an IPv4, /48 of an IPv6 address; None for anything else."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
