"""Regular expressions that mean the same in Python ``re`` and PostgreSQL's ARE engine.

A definition's ``regex`` runs in PostgreSQL (``column ~ pattern``), but the validator runs
without a database. So a pattern must compile in Python *and* stay inside a conservative subset
both engines read alike; outside it we refuse with a reason instead of guessing. The main
differences this guards against:

- ``\\b`` is a word boundary in Python but a backspace in ARE; ``\\B``, ``\\x``, ``\\0``, ``\\u``
  differ or are Python-only; ARE's own ``\\m``, ``\\y`` … are unknown to Python.
- Named groups ``(?P<n>…)``, atomic groups ``(?>…)``, comments ``(?#…)``, scoped flags
  ``(?i:…)`` and possessive quantifiers (``a*+``) exist only in Python.
- Embedded flags: only ``(?i)`` at the very start, which both engines honour.
- ``{,n}`` and bounds above 255 are Python-only; POSIX classes ``[[:alpha:]]`` are ARE-only.

Where a pattern passes here, ``pr-check`` still compiles it in PostgreSQL before building.
"""

from __future__ import annotations

import re
import string
import warnings

MAX_PATTERN_LENGTH = 1000
MAX_BOUND = 255  # RE_DUP_MAX in PostgreSQL's regex engine

_ESCAPES_OUTSIDE = set("dDsSwWAZntrfv123456789")
_ESCAPES_INSIDE = set("dswntrfv")
_BOUND = re.compile(r"\{(\d+)(?:(,)(\d*))?\}")
_QUANTIFIERS = set("*+?")
_REGEX_SPECIALS = frozenset(string.punctuation) - {"_"}


class RegexProblem(ValueError):
    """Why a pattern is refused; ``position`` is an offset into the pattern when known."""

    def __init__(self, message: str, position: int | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{message}{where}")
        self.position = position


def check_regex(pattern: str) -> None:
    """Raise ``RegexProblem`` unless ``pattern`` compiles and means the same in both engines."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexProblem(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters")
    if "\x00" in pattern:
        raise RegexProblem("the pattern holds a NUL character", pattern.index("\x00"))
    try:
        with warnings.catch_warnings():
            # "possible nested set" and friends: _check_portable gives the clearer reason.
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(pattern)
    except re.error as exc:
        raise RegexProblem(f"not a valid regular expression: {exc.msg}", exc.pos) from None
    _check_portable(pattern)


def _check_portable(pattern: str) -> None:
    position = 0
    after_quantifier = False
    while position < len(pattern):
        char = pattern[position]
        if char == "\\":
            _check_escape(pattern, position, _ESCAPES_OUTSIDE)
            position += 2
            after_quantifier = False
        elif char == "[":
            position = _skip_bracket(pattern, position)
            after_quantifier = False
        elif char == "(" and pattern.startswith("(?", position):
            position = _check_group_opening(pattern, position)
            after_quantifier = False
        elif char == "{":
            position = _check_bound(pattern, position)
            after_quantifier = True
        elif char in _QUANTIFIERS:
            if after_quantifier and char == "+":
                raise RegexProblem(
                    "possessive quantifiers (like 'a*+') exist only in Python", position
                )
            # "*?" is a lazy quantifier in both engines; what follows it is a new atom.
            after_quantifier = not (after_quantifier and char == "?")
            position += 1
        else:
            after_quantifier = False
            position += 1


def _check_escape(pattern: str, position: int, allowed: set[str]) -> None:
    escaped = pattern[position + 1 : position + 2]
    if not escaped.isalnum():
        return  # an escaped punctuation mark or space is that character in both engines
    if escaped == "b":
        raise RegexProblem(
            "'\\b' is a word boundary in Python but a backspace in PostgreSQL; "
            "spell the boundary out, e.g. '(^|[^A-Za-z0-9_])'",
            position,
        )
    if escaped not in allowed:
        supported = " ".join("\\" + e for e in sorted(allowed) if not e.isdigit())
        if allowed is _ESCAPES_OUTSIDE:
            supported += ", \\1-\\9"
        where = "inside [...] " if allowed is _ESCAPES_INSIDE else ""
        raise RegexProblem(
            f"the escape '\\{escaped}' {where}does not mean the same in Python and PostgreSQL "
            f"(supported: {supported} and escaped punctuation)",
            position,
        )
    if escaped.isdigit() and pattern[position + 2 : position + 3].isdigit():
        raise RegexProblem("back-references above \\9 read differently in PostgreSQL", position)


def _skip_bracket(pattern: str, start: int) -> int:
    """Check a bracket expression; return the position after its closing ']'."""
    position = start + 1
    if pattern.startswith("^", position):
        position += 1
    if pattern.startswith("]", position):
        position += 1  # a leading ']' is literal in both engines
    while position < len(pattern) and pattern[position] != "]":
        char = pattern[position]
        if char == "\\":
            _check_escape(pattern, position, _ESCAPES_INSIDE)
            position += 2
            continue
        if char == "[" and pattern[position + 1 : position + 2] in (":", ".", "="):
            raise RegexProblem(
                "POSIX bracket classes like '[[:alpha:]]' exist only in PostgreSQL; "
                "write the characters out, e.g. '[A-Za-z]'",
                position,
            )
        position += 1
    return position + 1


def _check_group_opening(pattern: str, position: int) -> int:
    for opening in ("(?:", "(?=", "(?!", "(?<=", "(?<!"):
        if pattern.startswith(opening, position):
            return position + len(opening)
    if position == 0 and pattern.startswith("(?i)"):
        return 4
    what = pattern[position : position + 4]
    if pattern.startswith("(?i)", position):
        raise RegexProblem("the flag '(?i)' is only supported at the very start", position)
    raise RegexProblem(
        f"the group '{what}…' does not exist in PostgreSQL (supported: (?:…), lookahead "
        "(?=…) (?!…), lookbehind (?<=…) (?<!…), and '(?i)' at the start)",
        position,
    )


def _check_bound(pattern: str, position: int) -> int:
    bound = _BOUND.match(pattern, position)
    if bound is None:
        raise RegexProblem(
            "a '{' must start a bound like {2}, {2,} or {2,5}; write a literal brace as '\\{'",
            position,
        )
    numbers = [int(n) for n in (bound.group(1), bound.group(3)) if n]
    if any(n > MAX_BOUND for n in numbers):
        raise RegexProblem(f"PostgreSQL allows bounds up to {MAX_BOUND}", position)
    return bound.end()


def literal_pattern(text: str) -> str:
    """``text`` as a regex matching exactly itself, in both engines.

    Only ASCII punctuation is escaped: PostgreSQL reads a backslash before a letter or digit as
    an escape class, so letters, digits and other characters stay as they are.
    """
    return "".join("\\" + ch if ch in _REGEX_SPECIALS else ch for ch in text)


def like_pattern(pattern: str) -> str:
    """Compile a path ``like`` pattern: ``*`` is any run inside one path segment (no ``/``),
    ``**`` any run across segments; everything else is literal. The result is anchored."""
    pieces = []
    for index, part in enumerate(pattern.split("**")):
        if index:
            pieces.append(".*")
        pieces.append("[^/]*".join(literal_pattern(chunk) for chunk in part.split("*")))
    return "^" + "".join(pieces) + "$"
