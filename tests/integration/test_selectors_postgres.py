"""PostgreSQL's regex engine (ARE) must read the compiled selectors exactly as Python's ``re`` does.

About 600 (hierarchy, selector) pairs from the same generator as the cssselect property test,
plus hand-picked escape edge cases, are matched in Python and then in PostgreSQL in one query.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from ingestion.contract import Element, Target, canonical_hierarchy
from retrolytics.language.selectors import NEVER, compile_selector
from tests.support.selector_cases import Case, cases

pytestmark = pytest.mark.integration

GENERATED_PAIRS = 600


def generated_cases(count: int) -> list[Case]:
    """A fixed, reproducible sample (derandomized hypothesis run, generation only)."""
    collected: list[Case] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases())
    def collect(case: Case) -> None:
        collected.append(case)

    collect()
    return collected


def _hierarchy(*elements: Element) -> str:
    return canonical_hierarchy(Target(elements=list(elements)))


# (hierarchy, selector, cssselect's answer) where the two engines could plausibly differ:
# backslashes, brackets, quotes, newlines, non-ASCII, lookaheads and the never-matching regex.
EDGE_CASES = [
    (_hierarchy(Element(tag="a", attributes={"href": "x\\"})), r"[href$='\\']", True),
    (_hierarchy(Element(tag="a", attributes={"href": 'x"'})), r"[href*='\\']", False),
    (_hierarchy(Element(tag="a", attributes={"href": "a\nb"})), r"[href='a\a b']", True),
    (_hierarchy(Element(tag="a", attributes={"href": "a\nb"})), r"[href^='a\a b']", True),
    (_hierarchy(Element(tag="a", id="a\n")), "#a", False),
    (_hierarchy(Element(tag="a", id="a\n")), r"#a\a", True),
    (_hierarchy(Element(tag="a", id="x]y")), r"#x\]y", True),
    (_hierarchy(Element(tag="a", classes=["[:x:]"])), r".\[\:x\:\]", True),
    (_hierarchy(Element(tag="a", classes=["日本"])), ".日本", True),
    (_hierarchy(Element(tag="a", classes=["😀"])), ".😀", True),
    (
        _hierarchy(Element(tag="a", attributes={"data-x": "$^.*+?{1}|()"})),
        "[data-x*='{1}|(']",
        True,
    ),
    (_hierarchy(Element(tag="a", attributes={"data-x": "aXb"})), "[data-x='a.b']", False),
    (_hierarchy(Element(tag="a", attributes={"type": "submit"})), "[type^=su][type$=it]", True),
    (_hierarchy(Element(tag="a", attributes={"type": "submit"})), "[type^=su][type*=x]", False),
    (_hierarchy(Element(tag="a", id="submit")), "[id^=su][id$=it][id*=bm]", True),
    (_hierarchy(Element(tag="a", id="submit")), "[id^=su][id$=bm]", False),
    (_hierarchy(Element(tag="a")), '[href^=""]', False),
]


def test_postgres_reads_compiled_selectors_as_python_does(database_url: str) -> None:
    sample = [(c.hierarchy, c.selector, c.expected) for c in generated_cases(GENERATED_PAIRS)]
    sample += EDGE_CASES
    regexes = [compile_selector(selector) for _, selector, _ in sample]
    assert NEVER in regexes
    hierarchies = [hierarchy for hierarchy, _, _ in sample]
    in_python = [bool(re.fullmatch(r, h)) for r, h in zip(regexes, hierarchies, strict=True)]
    assert in_python == [expected for _, _, expected in sample]  # cssselect's answers

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select h ~ r from unnest(%s::text[], %s::text[]) with ordinality as t(h, r, i)"
            " order by i",
            [hierarchies, regexes],
        ).fetchall()
    in_postgres = [row[0] for row in rows]

    disagreements = [
        (sample[i][1], hierarchies[i], in_python[i])
        for i in range(len(sample))
        if in_postgres[i] is not in_python[i]
    ]
    assert not disagreements, disagreements[:10]
    # The sample must exercise both answers, or agreement would prove little.
    assert len(sample) >= GENERATED_PAIRS
    assert 0.2 < sum(in_python) / len(sample) < 0.8
