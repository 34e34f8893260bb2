"""The one place where a value from a definition becomes SQL text.

dbt never sees a definition's literals as SQL: they travel as data (the ``event_definitions``
seed). Only ``retrolytics definitions show`` and the pull-request check *render* a definition as
a SQL predicate for a reviewer to read or run, and every literal in that text comes from here.

Literals are written the way libpq's ``PQescapeLiteral`` writes them: single quotes doubled, and
when the value holds a backslash, an ``E'...'`` string with backslashes doubled, so the text
means the same whatever ``standard_conforming_strings`` is set to. PostgreSQL text cannot hold
U+0000, so a value containing it is refused rather than silently changed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping

_SIMPLE_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


class UnsafeLiteral(ValueError):
    """A value that cannot be written as a PostgreSQL literal (it holds a NUL character)."""


def _refuse_nul(value: str) -> None:
    if "\x00" in value:
        raise UnsafeLiteral(
            f"{value!r} holds a NUL character (U+0000), which PostgreSQL text cannot store"
        )


def quote_literal(value: str) -> str:
    """A SQL string literal for ``value``; safe to paste anywhere a literal goes."""
    if not isinstance(value, str):
        raise TypeError(f"quote_literal takes a str, not {type(value).__name__}")
    _refuse_nul(value)
    body = value.replace("'", "''")
    if "\\" in body:
        return "E'" + body.replace("\\", "\\\\") + "'"
    return "'" + body + "'"


def quote_identifier(name: str) -> str:
    """An identifier, double-quoted unless it is plainly lower-case (so output stays readable)."""
    _refuse_nul(name)
    if _SIMPLE_IDENTIFIER.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def text_array(values: Iterable[str]) -> str:
    """``ARRAY['a', 'b']::text[]`` with every element quoted as a literal."""
    items = ", ".join(quote_literal(v) for v in values)
    return f"ARRAY[{items}]::text[]"


def jsonb(value: Mapping[str, object]) -> str:
    """A ``'{...}'::jsonb`` literal; refuses values jsonb cannot carry (NaN, infinity, NUL)."""
    text = canonical_json(value)
    return f"{quote_literal(text)}::jsonb"


def canonical_json(value: object) -> str:
    """Compact JSON with sorted keys: the same value always gives the same text (for hashing)."""
    _refuse_unstorable(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _refuse_unstorable(value: object) -> None:
    """jsonb refuses NaN, infinity and ``\\u0000``; say so here, not in a failed dbt run."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UnsafeLiteral(f"{value!r} is not a finite number; JSON cannot carry it")
    if isinstance(value, str):
        _refuse_nul(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_unstorable(key)
            _refuse_unstorable(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_unstorable(item)
