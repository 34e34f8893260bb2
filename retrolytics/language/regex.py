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

The subset is also one PostgreSQL runs in bounded time, since a definition's regex meets every
event and one hostile value must not hold a build:

- No back-references (``\\1`` … ``\\9``). With one, PostgreSQL backtracks:
  ``repeat('a', 60000) || 'b' ~ '^(a*)*\\1b$'`` took 16 s. Without one it runs a DFA, linear in
  the text (the same string against ``^(a*)*b$`` took 3 ms).
- No nested quantifiers: a group repeated by ``*``, ``+`` or a bound above 1 may not hold a
  quantifier itself (``(a*)*``, ``(?:/[a-z]+)+``, ``(?:a{1,50}){1,50}``). PostgreSQL expands
  bounded repeats when compiling and nested ones multiply: ``(?:a{1,255}){1,255}`` compiles in
  0.5 s per session, three levels are "too complex"; backtracking engines (Python's included)
  go exponential on them. Write the repetition once: ``a*``, ``/[/a-z]+``. ``?`` around a
  quantified group (``(?:/[a-z]+)?``) repeats nothing and is allowed.
- Lookarounds are allowed; each is tried at every position, so a quantifier inside one costs
  time quadratic in the value (``(?=.*c)`` over 4,096 characters: 37 ms). The contract bounds
  every matched value (``ingestion/contract.py``), and dbt runs carry a ``statement_timeout``.

Where a pattern passes here, ``pr-check`` still compiles it in PostgreSQL before building.
"""

from __future__ import annotations

import re
import string
import warnings
from dataclasses import dataclass

MAX_PATTERN_LENGTH = 1000
MAX_BOUND = 255  # RE_DUP_MAX in PostgreSQL's regex engine

_ESCAPES_OUTSIDE = set("dDsSwWAZntrfv")
_BACK_REFERENCES = set("123456789")
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


@dataclass
class _Group:
    start: int
    holds_quantifier: bool = False  # a quantifier anywhere inside, at any depth


def _check_portable(pattern: str) -> None:
    open_groups: list[_Group] = []  # outermost first
    position = 0
    after_quantifier = False
    closed_group: _Group | None = None  # the atom just scanned, when it is a group
    while position < len(pattern):
        char = pattern[position]
        if char == "{" or char in _QUANTIFIERS:
            if char == "{":
                end, repeats = _check_bound(pattern, position)
            elif after_quantifier and char == "+":
                raise RegexProblem(
                    "possessive quantifiers (like 'a*+') exist only in Python", position
                )
            elif after_quantifier and char == "?":
                # "*?" is a lazy quantifier in both engines; what follows it is a new atom.
                after_quantifier = False
                position += 1
                continue
            else:
                end, repeats = position + 1, char != "?"
            _check_quantified(pattern, open_groups, closed_group, repeats, position)
            position, after_quantifier, closed_group = end, True, None
            continue
        closed_group = None
        if char == "\\":
            _check_escape(pattern, position, _ESCAPES_OUTSIDE)
            position += 2
        elif char == "[":
            position = _skip_bracket(pattern, position)
        elif char == "(":
            start = position
            position = (
                _check_group_opening(pattern, position)
                if pattern.startswith("(?", position)
                else position + 1
            )
            if pattern[start:position] != "(?i)":  # a flag, not a group
                open_groups.append(_Group(start))
        elif char == ")":
            closed_group = open_groups.pop()  # re.compile has checked the parentheses balance
            if open_groups and closed_group.holds_quantifier:
                open_groups[-1].holds_quantifier = True
            position += 1
        else:
            position += 1
        after_quantifier = False


def _check_quantified(
    pattern: str,
    open_groups: list[_Group],
    quantified: _Group | None,
    repeats: bool,
    position: int,
) -> None:
    """Refuse a repeated group that holds a quantifier; note the quantifier in its group."""
    if repeats and quantified is not None and quantified.holds_quantifier:
        group = pattern[quantified.start : position]
        shown = group if len(group) <= 40 else group[:39] + "…"
        raise RegexProblem(
            f"nested quantifiers: the group '{shown}' is repeated and holds a quantifier "
            "itself; PostgreSQL compiles nested repeats into a blown-up automaton (and "
            "backtracking engines take exponential time), so repeat once instead, e.g. 'a*' "
            "for '(a*)*', '/[/a-z]+' for '(?:/[a-z]+)+'",
            position,
        )
    if open_groups:
        open_groups[-1].holds_quantifier = True


def _check_escape(pattern: str, position: int, allowed: set[str]) -> None:
    escaped = pattern[position + 1 : position + 2]
    if not escaped.isalnum():
        return  # an escaped punctuation mark or space is that character in both engines
    if allowed is _ESCAPES_OUTSIDE and escaped in _BACK_REFERENCES:
        raise RegexProblem(
            f"back-references like '\\{escaped}' are not supported: PostgreSQL backtracks to "
            "match them, and one long value can hold a build for many seconds; spell the "
            "repeated text out instead",
            position,
        )
    if escaped == "b":
        raise RegexProblem(
            "'\\b' is a word boundary in Python but a backspace in PostgreSQL; "
            "spell the boundary out, e.g. '(^|[^A-Za-z0-9_])'",
            position,
        )
    if escaped not in allowed:
        supported = " ".join("\\" + e for e in sorted(allowed))
        where = "inside [...] " if allowed is _ESCAPES_INSIDE else ""
        raise RegexProblem(
            f"the escape '\\{escaped}' {where}does not mean the same in Python and PostgreSQL "
            f"(supported: {supported} and escaped punctuation)",
            position,
        )


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


def _check_bound(pattern: str, position: int) -> tuple[int, bool]:
    """Check a bound like {2,5}; return the position after it and whether it repeats."""
    bound = _BOUND.match(pattern, position)
    if bound is None:
        raise RegexProblem(
            "a '{' must start a bound like {2}, {2,} or {2,5}; write a literal brace as '\\{'",
            position,
        )
    numbers = [int(n) for n in (bound.group(1), bound.group(3)) if n]
    if any(n > MAX_BOUND for n in numbers):
        raise RegexProblem(f"PostgreSQL allows bounds up to {MAX_BOUND}", position)
    unbounded = bound.group(2) is not None and not bound.group(3)
    return bound.end(), unbounded or numbers[-1] > 1


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
