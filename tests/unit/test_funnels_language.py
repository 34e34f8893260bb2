"""The funnel language: what it accepts, what it refuses (with file:line), what it compiles to."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import pytest

from retrolytics.language import funnels
from retrolytics.language.sources import parse_yaml
from tests.support.funnel_cases import funnel_from_yaml
from tests.support.paths import REPO

PROJECT = REPO
SHIPPED = PROJECT / "definitions" / "funnels"

VALID = """\
funnels:
  - name: checkout
    description: Cart to order.
    owner: growth
    steps:
      - viewed_cart
      - event: viewed_checkout
        within: 1h
      - type: custom
        name: purchase_completed
    conversion_window: 1d
"""


def problems_of(text: str) -> list[str]:
    """Every problem of a one-file funnel list, as ``file:line: message``."""
    document = parse_yaml(text, "f.yml")
    found = [str(p) for p in document.problems]
    if document.data is None:
        return found
    for index, item in enumerate(document.data["funnels"]):
        _, problems = funnels.parse_funnel(
            item, "f.yml", document.data["funnels"].line_of(index), index
        )
        found += [str(p) for p in problems]
    return found


def replace(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new)


def test_options_label_names_each_declared_option_and_the_defaults_that_decide_numbers() -> None:
    plain = funnel_from_yaml(VALID.split("  - ", 1)[1].replace("\n    ", "\n"))
    assert plain.options_label == "ordered, per device, 1d window"
    declared = VALID.replace(
        "    conversion_window: 1d\n",
        "    conversion_window: 2mo\n    order: strict\n    unit: user\n"
        "    entries: every_entry\n    hold_constant: [category, brand]\n"
        "    exclusions:\n      - event: logged_in\n"
        "    breakdown:\n      field: utm_source\n      attribution: step_2\n"
        "      unreached: leave_out\n",
    )
    assert problems_of(declared) == []
    funnel = funnel_from_yaml(declared.split("  - ", 1)[1].replace("\n    ", "\n"))
    assert funnel.options_label == (
        "strict, per user, 2mo window, entries: every_entry, hold_constant: category, brand, "
        "1 exclusion (exclusion_scope: window), breakdown utm_source (step_2, unreached: "
        "leave_out)"
    )


def test_a_valid_funnel_parses_with_defaults() -> None:
    assert problems_of(VALID) == []
    funnel = funnel_from_yaml(VALID.split("  - ", 1)[1].replace("\n    ", "\n"))
    assert funnel.order == "ordered" and funnel.unit == "device"
    assert funnel.conversion_window_seconds == 86_400
    assert [s.event.label for s in funnel.steps] == [
        "viewed_cart",
        "viewed_checkout",
        "custom:purchase_completed",
    ]
    assert funnel.steps[1].within_seconds == 3600
    assert funnel.definitions_used() == {"viewed_cart", "viewed_checkout"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            replace("    owner: growth\n", ""),
            "f.yml:2: funnel 'checkout': missing required key 'owner'",
        ),
        (
            replace("conversion_window: 1d", "conversion_window: 1d\n    colour: red"),
            "f.yml:12: funnel 'checkout': unknown key 'colour' in a funnel",
        ),
        (
            replace("conversion_window: 1d", "conversion_window: 7 days"),
            "f.yml:11: funnel 'checkout': conversion_window: '7 days' is not a duration",
        ),
        (
            replace("conversion_window: 1d", "conversion_window: 0m"),
            "f.yml:11: funnel 'checkout': conversion_window: '0m' is zero",
        ),
        (
            replace("conversion_window: 1d", "conversion_window: 400d"),
            "f.yml:11: funnel 'checkout': conversion_window: '400d' is longer than",
        ),
        (
            replace("conversion_window: 1d", "conversion_window: 0mo"),
            "f.yml:11: funnel 'checkout': conversion_window: '0mo': a calendar window is 1mo to",
        ),
        (
            replace("conversion_window: 1d", "conversion_window: 13mo"),
            "f.yml:11: funnel 'checkout': conversion_window: '13mo': a calendar window is 1mo to",
        ),
        (
            replace("conversion_window: 1d", "conversion_window: 1.5mo"),
            "f.yml:11: funnel 'checkout': conversion_window: '1.5mo' is not a number of months",
        ),
        (
            replace("conversion_window: 1d", "conversion_window: 1mo2d"),
            "f.yml:11: funnel 'checkout': conversion_window: '1mo2d' is not a duration",
        ),
        (replace("conversion_window: 1d", "conversion_window: 2mo"), None),
        (
            replace("conversion_window: 1d", "conversion_window: 1mo").replace("1h", "29d"),
            "f.yml:8: funnel 'checkout': step 2.within (29d) is longer than the conversion_window "
            "(1mo) in a short month (4w)",
        ),
        (
            replace("within: 1h", "within: 1mo"),
            "f.yml:8: funnel 'checkout': step 2.within: months are for conversion_window only",
        ),
        (
            replace("within: 1h", "within: 2d"),
            "f.yml:8: funnel 'checkout': step 2.within (2d) is longer than the conversion_window",
        ),
        (
            replace("      - viewed_cart\n", "      - event: viewed_cart\n        within: 5m\n"),
            "f.yml:7: funnel 'checkout': step 1.within: the first step has no previous step",
        ),
        (
            replace("conversion_window: 1d", "conversion_window: 1d\n    order: unordered"),
            "f.yml:8: funnel 'checkout': step 2.within: an unordered funnel has no previous step",
        ),
        (
            replace("conversion_window: 1d", "conversion_window: 1d\n    order: sorted"),
            "f.yml:12: funnel 'checkout': 'order' must be one of ordered, strict, unordered",
        ),
        (
            replace("conversion_window: 1d", "conversion_window: 1d\n    unit: account"),
            "f.yml:12: funnel 'checkout': 'unit' must be one of device, user, session",
        ),
        (
            replace("      - type: custom\n        name: purchase_completed\n", ""),
            None,  # still 2 steps: valid
        ),
        (
            replace(
                "      - viewed_cart\n      - event: viewed_checkout\n        within: 1h\n", ""
            ),
            "f.yml:5: funnel 'checkout': a funnel has 2 to 20 steps; this one has 1",
        ),
        (
            replace(
                "        name: purchase_completed",
                "        name: purchase_completed\n        event: x",
            ),
            "f.yml:9: funnel 'checkout': step 3 needs exactly one of 'event'",
        ),
        (
            replace("type: custom", "type: clicked"),
            "f.yml:9: funnel 'checkout': step 3.type: unknown event type 'clicked'",
        ),
        (
            replace("type: custom", "type: click"),
            "f.yml:10: funnel 'checkout': step 3.name must be a non-empty string, and only",
        ),
        (
            replace("      - viewed_cart", "      - Viewed Cart"),
            "f.yml:6: funnel 'checkout': step 1 must name an event definition (snake_case)",
        ),
        (
            replace("      - viewed_cart", "      - viewed_cart\n        within: 5m"),
            "f.yml:7: YAML syntax error",
        ),
    ],
)
def test_problems_name_the_file_and_line(text: str, expected: str | None) -> None:
    found = problems_of(text)
    if expected is None:
        assert found == []
    else:
        assert any(p.startswith(expected) for p in found), found


def test_too_many_steps() -> None:
    steps = "".join(f"      - step_{i}\n" for i in range(21))
    text = replace("      - viewed_cart\n", steps)
    assert any("a funnel has 2 to 20 steps; this one has 23" in p for p in problems_of(text))


EXCLUSION = """\
    exclusions:
      - event: removed_from_cart
        between: {between}
"""


@pytest.mark.parametrize(
    ("between", "message"),
    [
        ("[viewed_cart, 3]", None),
        ("[1, 3]", None),
        ("[3, 1]", "exclusions[0].between: step 3 must come before step 1"),
        ("[1, 4]", "exclusions[0].between: there is no step 4 (steps are 1 to 3)"),
        ("[1, nowhere]", "exclusions[0].between: 'nowhere' is not one of the funnel's steps"),
        ("[1]", "exclusions[0].between must be two steps"),
    ],
)
def test_exclusions_must_lie_between_two_steps(between: str, message: str | None) -> None:
    text = VALID + EXCLUSION.format(between=between)
    found = problems_of(text)
    if message is None:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0].startswith(f"f.yml:14: funnel 'checkout': {message}")


UNORDERED = VALID.replace("        within: 1h\n", "") + "    order: unordered\n"


@pytest.mark.parametrize(
    ("exclusion", "message"),
    [
        ("      - event: removed_from_cart\n", None),
        ("      - event: removed_from_cart\n        between: [1, 3]\n", None),
        (
            "      - event: removed_from_cart\n        between: [1, 2]\n",
            "f.yml:14: funnel 'checkout': exclusions[0].between: an unordered funnel's exclusions "
            "span the whole funnel ([1, 3], the default)",
        ),
        (
            "      - event: removed_from_cart\n        between: [viewed_checkout, 3]\n",
            "f.yml:14: funnel 'checkout': exclusions[0].between: an unordered funnel's",
        ),
        # Any step may come first: step 1 is inside the range too.
        (
            "      - event: viewed_cart\n",
            "f.yml:13: funnel 'checkout': exclusions[0]: viewed_cart is step 1, inside the range",
        ),
    ],
)
def test_unordered_exclusions_span_the_whole_funnel(exclusion: str, message: str | None) -> None:
    found = problems_of(UNORDERED + "    exclusions:\n" + exclusion)
    if message is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(message), found


SCOPE = EXCLUSION.format(between="[1, 3]") + "    exclusion_scope: {scope}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (VALID + SCOPE.format(scope="until_step"), None),
        (VALID + SCOPE.format(scope="window"), None),
        (UNORDERED + SCOPE.format(scope="until_step"), None),
        (
            VALID + SCOPE.format(scope="forever"),
            "f.yml:15: funnel 'checkout': 'exclusion_scope' must be one of window, until_step; "
            "got a string ('forever')",
        ),
        (
            VALID + "    exclusion_scope: until_step\n",
            "f.yml:12: funnel 'checkout': 'exclusion_scope' goes with 'exclusions'; this funnel "
            "has none",
        ),
        (
            VALID + "    entries: every_entry\n" + SCOPE.format(scope="until_step"),
            "f.yml:16: funnel 'checkout': 'exclusion_scope: until_step' goes with "
            "'entries: sequential'",
        ),
        (
            VALID + "    order: strict\n" + SCOPE.format(scope="until_step"),
            "f.yml:16: funnel 'checkout': 'exclusion_scope: until_step' needs an ordered or "
            "unordered funnel",
        ),
    ],
)
def test_exclusion_scope(text: str, message: str | None) -> None:
    found = problems_of(text)
    if message is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(message), found


def test_exclusion_problems() -> None:
    inside = VALID + "    exclusions:\n      - event: viewed_checkout\n"
    assert problems_of(inside) == [
        "f.yml:13: funnel 'checkout': exclusions[0]: viewed_checkout is step 2, inside the range "
        "it excludes (after step 1, before step 3); every attempt reaching step 2 would be excluded"
    ]
    twice = VALID.replace("- viewed_cart\n", "- viewed_checkout\n") + EXCLUSION.format(
        between="[viewed_checkout, 3]"
    )
    assert any(
        "'viewed_checkout' is steps [1, 2]; give the step number" in p for p in problems_of(twice)
    )


@pytest.mark.parametrize(
    ("breakdown", "message"),
    [
        ("{field: utm_source}", None),
        ("{property: category, attribution: step_3}", None),
        ("{field: colour}", "breakdown.field: unknown field 'colour'"),
        ("{field: utm_source, property: x}", "breakdown needs exactly one of 'field'"),
        ("{property: x, attribution: middle}", "breakdown.attribution must be first_touch"),
        ("{property: x, attribution: step_4}", "breakdown.attribution: there is no step 4"),
        ("utm_source", "'breakdown' must be a mapping"),
        ("{session: landing_page}", None),
        ("{session: referrer_host, attribution: last_touch}", None),
        ("{person: plan}", None),
        ("{session: landing_pg}", "breakdown.session: unknown session column 'landing_pg'"),
        ("{session: person_id}", "breakdown.session: unknown session column 'person_id'"),
        ("{person: [plan]}", "breakdown.person must be a trait name"),
        ("{session: landing_page, person: plan}", "breakdown needs exactly one of 'field'"),
        ("{field: utm_source, session: utm_source}", "breakdown needs exactly one of"),
        ("{attribution: last_touch}", "breakdown needs exactly one of"),
        ("{property: category, attribution: all_events}", None),
        ("{person: plan, attribution: all_events}", None),
        ("{property: x, attribution: all_events, unreached: keep}", "breakdown.unreached goes"),
        ("{property: x, attribution: all_event}", "breakdown.attribution must be first_touch"),
        ("{property: category, attribution: step_2, unreached: leave_out}", None),
        ("{property: category, attribution: step_2, unreached: keep}", None),
        ("{property: x, attribution: step_2, unreached: drop}", "breakdown.unreached must be one"),
        ("{property: x, unreached: leave_out}", "breakdown.unreached goes with attribution step_N"),
        (
            "{property: x, attribution: last_touch, unreached: keep}",
            "breakdown.unreached goes with attribution step_N",
        ),
    ],
)
def test_breakdown(breakdown: str, message: str | None) -> None:
    found = problems_of(VALID + f"    breakdown: {breakdown}\n")
    if message is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(f"f.yml:12: funnel 'checkout': {message}")


@pytest.mark.parametrize(
    ("hold", "ok"),
    [
        ("category", True),
        ("[category, size]", True),
        ("[a, a]", False),
        ("[]", False),
        ("3", False),
    ],
)
def test_hold_constant(hold: str, ok: bool) -> None:
    found = problems_of(VALID + f"    hold_constant: {hold}\n")
    assert (found == []) is ok, found
    if not ok:
        assert found[0].startswith("f.yml:12: funnel 'checkout': 'hold_constant'")


def test_unknown_definitions_are_reported_at_their_step_with_a_suggestion() -> None:
    text = VALID.replace("- viewed_cart", "- viewed_crat") + EXCLUSION.format(between="[1, 3]")
    document = parse_yaml(text, "f.yml")
    funnel, problems = funnels.parse_funnel(document.data["funnels"][0], "f.yml", 2, 0)
    assert problems == [] and funnel is not None
    known = [SimpleNamespace(name=n) for n in ("viewed_cart", "viewed_checkout")]
    catalog = SimpleNamespace(declarations={"events": known, "funnels": [funnel]})
    assert [str(p) for p in funnels.check_references(catalog)] == [
        "f.yml:6: funnel 'checkout': step 1: unknown event definition 'viewed_crat'; "
        "did you mean 'viewed_cart'?",
        "f.yml:13: funnel 'checkout': exclusions[0]: unknown event definition 'removed_from_cart'",
    ]


def test_the_content_hash_follows_what_the_funnel_computes() -> None:
    base = funnel_from_yaml(VALID.split("  - ", 1)[1].replace("\n    ", "\n"))
    same = funnels.Funnel(**{**base.__dict__, "description": "other", "owner": "other", "line": 9})
    assert funnels.content_hash(same) == funnels.content_hash(base)
    for change in (
        {"conversion_window_seconds": 3600},
        {"order": "strict"},
        {"unit": "user"},
        {"hold_constant": ("p",)},
        {"steps": base.steps[:2]},
        {"breakdown": funnels.Breakdown(field="utm_source")},
        {"breakdown": funnels.Breakdown(session_column="utm_source")},
        {"breakdown": funnels.Breakdown(person_trait="utm_source")},
        {"unit": "session"},
        {"conversion_window_seconds": 0, "conversion_window_months": 1},
        {"entries": "every_entry"},
        {"exclusion_scope": "until_step"},
    ):
        changed = funnels.Funnel(**{**base.__dict__, **change})
        assert funnels.content_hash(changed) != funnels.content_hash(base), change
    step_2 = funnels.Breakdown(property_name="q", attribution="step", attribution_step=2)
    left_out = funnels.Breakdown(**{**step_2.__dict__, "unreached": "leave_out"})
    hashes = {
        funnels.content_hash(funnels.Funnel(**{**base.__dict__, "breakdown": breakdown}))
        for breakdown in (step_2, left_out)
    }
    assert len(hashes) == 2


def test_seeds_hold_every_funnel_as_data() -> None:
    funnel = funnel_from_yaml(
        VALID.split("  - ", 1)[1].replace("\n    ", "\n")
        + "exclusions:\n  - type: custom\n    name: 'a,\"b\"'\n    between: [1, 2]\n"
        + "breakdown: {property: 'NULL', attribution: step_2}\nhold_constant: [p, q]\n"
    )
    files = funnels.seed_files([funnel])
    funnel_rows = list(csv.DictReader(io.StringIO(files[funnels.FUNNELS_SEED])))
    step_rows = list(csv.DictReader(io.StringIO(files[funnels.FUNNEL_STEPS_SEED])))
    assert funnel_rows == [
        {
            "funnel_name": "checkout",
            "content_hash": funnels.content_hash(funnel),
            "description": '"Cart to order."',
            "owner": '"growth"',
            "step_count": "3",
            "conversion_window_seconds": "86400",
            "conversion_window_months": "0",
            "order_mode": "ordered",
            "unit": "device",
            "breakdown_field": "",
            "breakdown_property": '"NULL"',
            "breakdown_session": "",
            "breakdown_person": "",
            "attribution": "step",
            "attribution_step": "2",
            "attribution_unreached": "keep",
            "hold_constant": '["p","q"]',
            "entries": "sequential",
            "exclusion_scope": "window",
            "broken_by": "step_events",
        }
    ]
    assert [
        (r["role"], r["position"], r["definition_name"], r["event_type"]) for r in step_rows
    ] == [
        ("step", "1", "viewed_cart", ""),
        ("step", "2", "viewed_checkout", ""),
        ("step", "3", "", "custom"),
        ("exclusion", "1", "", "custom"),
    ]
    assert step_rows[1]["within_seconds"] == "3600"
    assert step_rows[3]["event_name"] == '"a,\\"b\\""'
    assert (step_rows[3]["from_step"], step_rows[3]["to_step"]) == ("1", "2")
    empty = funnels.seed_files([])
    assert empty[funnels.FUNNELS_SEED] == ",".join(funnels.FUNNEL_COLUMNS) + "\n"


def test_durations() -> None:
    assert funnels.parse_duration("30m") == 1800
    assert funnels.parse_duration("2h") == 7200
    assert funnels.parse_duration("1w") == 604_800
    assert funnels.format_duration(7200) == "2h"
    with pytest.raises(ValueError, match="not a duration"):
        funnels.parse_duration("1.5h")
    with pytest.raises(ValueError, match="must be a duration"):
        funnels.parse_duration(30)
    assert funnels.parse_months("3mo") == 3
    assert funnels.parse_months("3m") is None  # minutes, for parse_duration
    with pytest.raises(ValueError, match="not a number of months"):
        funnels.parse_months("1.5mo")
    month = funnel_from_yaml(VALID.split("  - ", 1)[1].replace("\n    ", "\n").replace("1d", "1mo"))
    assert (month.conversion_window_seconds, month.conversion_window_months) == (0, 1)
    assert month.window_label == "1mo"


def test_the_shipped_funnels_are_valid_and_cover_the_shop() -> None:
    parsed = []
    for path in sorted(SHIPPED.glob("*.yml")):
        document = parse_yaml(path.read_text(), path.name)
        assert not document.problems
        for index, item in enumerate(document.data["funnels"]):
            funnel, problems = funnels.parse_funnel(item, path.name, item.line, index)
            assert problems == []
            parsed.append(funnel)
    names = {f.name for f in parsed}
    assert {"browse_to_purchase", "signup", "search_to_cart"} <= names
    assert {f.order for f in parsed} == {"ordered", "strict", "unordered"}
    assert {f.unit for f in parsed} == {"device", "user", "session"}


def test_every_entry_needs_a_step_one_to_open_each_window_at() -> None:
    for order in ("ordered", "strict"):
        text = replace("conversion_window: 1d", f"conversion_window: 1d\n    order: {order}")
        assert problems_of(text + "    entries: every_entry\n") == []
    every = funnel_from_yaml(
        VALID.split("  - ", 1)[1].replace("\n    ", "\n") + "entries: every_entry\n"
    )
    assert every.entries == "every_entry"
    assert funnels.funnel_row(every)["entries"] == "every_entry"
    unordered = VALID.replace("        within: 1h\n", "") + (
        "    order: unordered\n    entries: every_entry\n"
    )
    assert problems_of(unordered) == [
        "f.yml:12: funnel 'checkout': entries: every_entry needs an ordered or strict funnel: an "
        "unordered attempt enters at any step, so there is no step-1 event to open each window at"
    ]
    assert problems_of(VALID + "    entries: each\n") == [
        "f.yml:12: funnel 'checkout': 'entries' must be one of sequential, every_entry; "
        "got a string ('each')"
    ]


STRICT = replace("conversion_window: 1d", "conversion_window: 1d\n    order: strict")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (STRICT + "    broken_by: any_event\n", None),
        (STRICT + "    broken_by: step_events\n", None),
        (STRICT + "    entries: every_entry\n    broken_by: any_event\n", None),
        (
            STRICT + "    broken_by: anything\n",
            "f.yml:13: funnel 'checkout': 'broken_by' must be one of step_events, any_event; "
            "got a string ('anything')",
        ),
        (
            VALID + "    broken_by: any_event\n",
            "f.yml:12: funnel 'checkout': 'broken_by' needs 'order: strict'; this funnel is "
            "ordered: only a strict attempt is broken by an event in between",
        ),
        (
            VALID.replace("        within: 1h\n", "")
            + "    order: unordered\n    broken_by: any_event\n",
            "f.yml:12: funnel 'checkout': 'broken_by' needs 'order: strict'; this funnel is "
            "unordered",
        ),
    ],
)
def test_broken_by(text: str, message: str | None) -> None:
    found = problems_of(text)
    if message is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(message), found


def test_broken_by_any_event_compiles_and_changes_the_hash() -> None:
    strict = funnel_from_yaml(STRICT.split("  - ", 1)[1].replace("\n    ", "\n"))
    any_event = funnel_from_yaml(
        STRICT.split("  - ", 1)[1].replace("\n    ", "\n") + "broken_by: any_event\n"
    )
    assert strict.broken_by == "step_events"
    assert any_event.broken_by == "any_event"
    assert funnels.funnel_row(any_event)["broken_by"] == "any_event"
    assert funnels.content_hash(any_event) != funnels.content_hash(strict)
    assert any_event.options_label == "strict, per device, 1d window, broken_by: any_event"
    assert strict.options_label == "strict, per device, 1d window"


def test_a_shipped_funnel_is_broken_by_any_event_and_its_label_says_so() -> None:
    document = parse_yaml((SHIPPED / "search_to_click.yml").read_text(), "search_to_click.yml")
    item = document.data["funnels"][0]
    funnel, problems = funnels.parse_funnel(item, "search_to_click.yml", item.line, 0)
    assert problems == [] and funnel is not None
    assert funnel.broken_by == "any_event"
    assert "broken_by: any_event" in funnel.options_label
