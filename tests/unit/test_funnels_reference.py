"""The reference implementation against hand-worked cases of the funnel semantics.

Each expectation here is worked out by hand from the semantics in
``retrolytics/semantics/funnels.py`` (not by running anything), so the reference that the SQL is
compared with is itself checked.
"""

from __future__ import annotations

from datetime import datetime

from retrolytics.semantics.funnels import (
    funnel_entries,
    funnel_mart,
    identity_periods,
    jsonb_text,
    percentile_cont,
    person_of,
    units_between,
    window_end,
)
from tests.support.funnel_cases import at, ev, funnel_from_yaml

ABC = """
name: abc
description: a, b, c
owner: test
steps: [did_a, did_b, did_c]
conversion_window: 10m
"""


def funnel(extra: str = "", base: str = ABC):
    return funnel_from_yaml(base + extra)


def daily_mart(declared, entries):
    """The mart's daily rows (the tests below that use it have all their data in one day)."""
    return funnel_mart(declared, entries, periods=("day",))


def outcomes(entries):
    return [(e.unit_id, e.attempt_number, e.outcome, e.furthest_step) for e in entries]


def test_a_conversion_records_each_step_and_the_time_to_convert() -> None:
    entries = funnel_entries(funnel(), [ev("d", 0, "a"), ev("d", 1, "b"), ev("d", 2, "c")])
    (entry,) = entries
    assert entry.converted and entry.outcome == "converted"
    assert entry.step_reached_at == (at(0), at(1), at(2))
    assert entry.seconds_to_convert == 120.0
    assert entry.ended_at == at(2) and entry.deadline_at == at(10)


def test_the_conversion_window_is_inclusive() -> None:
    on_time = funnel_entries(funnel(), [ev("d", 0, "a"), ev("d", 5, "b"), ev("d", 10, "c")])
    assert outcomes(on_time) == [("d", 1, "converted", 3)]
    late = funnel_entries(funnel(), [ev("d", 0, "a"), ev("d", 5, "b"), ev("d", 10 + 1 / 60, "c")])
    assert outcomes(late) == [("d", 1, "dropped_off", 2)]
    assert late[0].ended_at == at(10) and late[0].step_reached_at[2] is None


def test_a_month_window_follows_the_utc_calendar() -> None:
    def plus_months(text: str, months: int) -> str:
        start = datetime.fromisoformat(text + "+00:00")
        return window_end(start, 0, months).isoformat()

    assert plus_months("2027-01-31T10:00", 1) == "2027-02-28T10:00:00+00:00"
    assert plus_months("2028-01-31T10:00", 1) == "2028-02-29T10:00:00+00:00"
    assert plus_months("2027-03-31T00:00", 1) == "2027-04-30T00:00:00+00:00"
    assert plus_months("2027-12-31T23:59", 2) == "2028-02-29T23:59:00+00:00"
    assert plus_months("2027-01-15T08:00", 12) == "2028-01-15T08:00:00+00:00"
    monthly = funnel(base=ABC.replace("10m", "1mo"))
    events = [ev("d", 0, "a"), ev("d", 1, "b"), ev("d", 31 * 24 * 60 - 1, "c")]
    assert outcomes(funnel_entries(monthly, events)) == [("d", 1, "dropped_off", 2)]
    events[2] = ev("d", 30 * 24 * 60, "c")  # T0 is Nov 20: the deadline is Dec 20, 30 days on
    assert outcomes(funnel_entries(monthly, events)) == [("d", 1, "converted", 3)]


def test_an_attempt_alive_when_the_data_ends_is_in_progress_and_left_out_of_rates() -> None:
    events = [ev("u1", 0, "a"), ev("u1", 1, "b"), ev("u2", 0, "a"), ev("u3", 5, "a")]
    end = at(9)  # u1 and u2's deadlines (minute 10) are after it; u3's too
    entries = funnel_entries(funnel(), events, end)
    assert [e.outcome for e in entries] == ["in_progress"] * 3
    assert entries[0].ended_at == entries[0].deadline_at == at(10)
    later = funnel_entries(funnel(), events, at(10))  # a deadline at the end is not after it
    assert [e.outcome for e in later] == ["dropped_off", "dropped_off", "in_progress"]
    step1, step2, _ = daily_mart(funnel(), later)
    assert (step1.units, step1.units_in_progress, step2.units_in_progress) == (3, 1, 0)
    # u3 is left out: settled are u1 and u2 at step 1, u1 at step 2
    assert step2.conversion_from_previous == 0.5 == step2.conversion_overall
    alive = daily_mart(funnel(), entries)
    assert alive[0].conversion_overall is None and alive[1].units_in_progress == 1


def test_no_reentry_while_alive_and_reentry_after_expiry() -> None:
    events = [ev("d", 0, "a"), ev("d", 5, "a"), ev("d", 11, "a"), ev("d", 12, "b")]
    entries = funnel_entries(funnel(), events)
    assert outcomes(entries) == [("d", 1, "dropped_off", 1), ("d", 2, "dropped_off", 2)]
    assert [e.entered_at for e in entries] == [at(0), at(11)]


def test_the_event_after_the_deadline_can_enter_again() -> None:
    entries = funnel_entries(funnel(), [ev("d", 0, "a"), ev("d", 10.5, "a"), ev("d", 11, "b")])
    assert [e.entered_at for e in entries] == [at(0), at(10.5)]
    assert entries[1].furthest_step == 2


def test_reentry_after_a_conversion() -> None:
    events = [ev("d", m, n) for m, n in [(0, "a"), (1, "b"), (2, "c"), (3, "a"), (4, "b")]]
    assert outcomes(funnel_entries(funnel(), events)) == [
        ("d", 1, "converted", 3),
        ("d", 2, "dropped_off", 2),
    ]


def test_events_at_the_same_instant_count_in_funnel_order() -> None:
    # b's id sorts before a's, yet at the same instant a comes first because it is step 1.
    events = [ev("d", 5, "b", event_id=1), ev("d", 5, "a", event_id=2), ev("d", 6, "c")]
    assert outcomes(funnel_entries(funnel(), events)) == [("d", 1, "converted", 3)]


def test_one_event_fills_one_step_of_a_funnel_that_repeats_a_step() -> None:
    repeat = funnel(base=ABC.replace("[did_a, did_b, did_c]", "[did_a, did_a, did_b]"))
    assert outcomes(funnel_entries(repeat, [ev("d", 0, "a"), ev("d", 1, "b")])) == [
        ("d", 1, "dropped_off", 1)
    ]
    events = [ev("d", 0, "a"), ev("d", 1, "a"), ev("d", 2, "b")]
    assert outcomes(funnel_entries(repeat, events)) == [("d", 1, "converted", 3)]


def test_an_event_matching_several_steps_fills_the_next_one() -> None:
    overlapping = funnel()
    both = ev("d", 1, "ab", definitions={"did_a", "did_b"})
    entries = funnel_entries(overlapping, [ev("d", 0, "a"), both, ev("d", 2, "c")])
    assert outcomes(entries) == [("d", 1, "converted", 3)]
    assert entries[0].step_reached_at == (at(0), at(1), at(2))


def test_strict_order_breaks_on_another_step_and_restarts_on_step_one() -> None:
    strict = funnel("order: strict\n")
    events = [ev("d", 0, "a"), ev("d", 1, "a"), ev("d", 2, "b"), ev("d", 3, "c")]
    entries = funnel_entries(strict, events)
    assert outcomes(entries) == [("d", 1, "broken_order", 1), ("d", 2, "converted", 3)]
    assert entries[0].ended_at == at(1) and entries[1].entered_at == at(1)
    other = [ev("d", 0, "a"), ev("d", 1, "b"), ev("d", 2, "zzz"), ev("d", 3, "c")]
    assert outcomes(funnel_entries(strict, other)) == [("d", 1, "converted", 3)]
    repeat = [ev("d", 0, "a"), ev("d", 1, "b"), ev("d", 2, "b"), ev("d", 3, "c")]
    assert outcomes(funnel_entries(strict, repeat)) == [("d", 1, "broken_order", 2)]
    # ordered ignores the same repeats
    assert outcomes(funnel_entries(funnel(), repeat)) == [("d", 1, "converted", 3)]


def test_unordered_fills_steps_in_any_order() -> None:
    unordered = funnel("order: unordered\n")
    entries = funnel_entries(
        unordered, [ev("d", 0, "c"), ev("d", 1, "a"), ev("d", 2, "c"), ev("d", 3, "b")]
    )
    (entry,) = entries
    assert entry.converted and entry.entry_step == 3
    assert entry.step_reached_at == (at(1), at(3), at(0))
    assert entry.seconds_to_convert == 180.0


def test_an_exclusion_between_its_steps_disqualifies_the_attempt() -> None:
    excluding = funnel("exclusions:\n  - event: did_x\n    between: [1, 3]\n")
    events = [ev("d", 0, "a"), ev("d", 1, "b"), ev("d", 2, "x"), ev("d", 3, "c")]
    entries = funnel_entries(excluding, events)
    assert outcomes(entries) == [("d", 1, "excluded", 2)]
    assert entries[0].ended_at == at(2)
    # at the same instant as step 1 it is not after it; after step 3 it is too late
    same_instant = [
        ev("d", 0, "a"),
        ev("d", 0, "x"),
        ev("d", 1, "b"),
        ev("d", 3, "c"),
        ev("d", 4, "x"),
    ]
    assert outcomes(funnel_entries(excluding, same_instant)) == [("d", 1, "converted", 3)]
    # before step 1 (between [2, 3]: before step 2) it does nothing
    later_range = funnel("exclusions:\n  - event: did_x\n    between: [did_b, did_c]\n")
    early = [ev("d", 0, "a"), ev("d", 0.5, "x"), ev("d", 1, "b"), ev("d", 3, "c")]
    assert outcomes(funnel_entries(later_range, early)) == [("d", 1, "converted", 3)]


def test_a_unit_enters_again_after_an_exclusion() -> None:
    excluding = funnel("exclusions:\n  - event: did_x\n")
    events = [ev("d", 0, "a"), ev("d", 1, "x"), ev("d", 2, "a"), ev("d", 3, "b"), ev("d", 4, "c")]
    assert outcomes(funnel_entries(excluding, events)) == [
        ("d", 1, "excluded", 1),
        ("d", 2, "converted", 3),
    ]


UNORDERED_EXCLUDING = """
name: signup_unordered
description: PostHog's test_advanced_funnel_multiple_exclusions_between_steps
owner: test
steps: [did_u, did_p, did_i, did_t, did_q]
conversion_window: 14d
order: unordered
exclusions:
  - event: did_x
  - event: did_y
"""


def test_an_unordered_exclusion_drops_the_attempt_and_the_unit_counts_by_its_others() -> None:
    """PostHog's ``test_advanced_funnel_multiple_exclusions_between_steps`` (unordered, x and y
    excluded over the whole funnel; u signed up, p pageview, i insight viewed, t invite
    teammate, q pageview2, hours after midnight): 5 persons at step 1, 2 at step 2, 1 at steps
    3 to 5 (persons 1 and 4; then 4 alone)."""
    journeys = {
        "p1": "u1 x2 p3 i4 y4.5 t5 q6",
        "p2": "u1 y1.5 p2 i4 y4.5 t5 x5.5 q6",
        "p3": "u1 x1.5 p2 i4 t5 x5.5 q6",
        "p4": "u1 p2 i4 t5 q6",
        "p5": "u1 x1.5 p2 x2.5 i4 y4.5 t5 x5.5 q6",
    }
    events = [
        ev(person, float(step[1:]) * 60, step[0])
        for person, journey in journeys.items()
        for step in journey.split()
    ]
    declared = funnel_from_yaml(UNORDERED_EXCLUDING)
    entries = funnel_entries(declared, events)
    day = at(0).date()
    assert units_between(declared, entries, day, day) == {1: 5, 2: 2, 3: 1, 4: 1, 5: 1}
    # Person 1: signed up, excluded by x; entered again at the pageview (two steps), excluded
    # by y; entered again at the invite and reached two steps by pageview2.
    assert [(e.outcome, e.furthest_step, e.entry_step) for e in entries if e.unit_id == "p1"] == [
        ("excluded", 1, 1),
        ("excluded", 2, 2),
        ("dropped_off", 2, 4),
    ]


def test_an_unordered_exclusion_counts_after_the_entry_while_the_attempt_is_alive() -> None:
    excluding = funnel("order: unordered\nexclusions:\n  - event: did_x\n")
    # Entered at step 3 (c): an exclusion at the same instant is not after it; one later is.
    events = [ev("d", 0, "c"), ev("d", 0, "x"), ev("d", 1, "a"), ev("d", 2, "x"), ev("d", 3, "b")]
    entries = funnel_entries(excluding, events)
    assert outcomes(entries) == [("d", 1, "excluded", 2), ("d", 2, "dropped_off", 1)]
    assert entries[0].ended_at == at(2)
    # After the deadline (10m) or after converting it does nothing.
    late = [ev("d", 0, "c"), ev("d", 11, "x"), ev("d", 12, "a"), ev("d", 13, "b"), ev("d", 14, "c")]
    assert outcomes(funnel_entries(excluding, late)) == [
        ("d", 1, "dropped_off", 1),
        ("d", 2, "converted", 3),
    ]


TWO_STEPS = """
name: ab
description: PostHog's test_excluded_after_time_expires (10 s window)
owner: test
steps: [did_a, did_b]
conversion_window: 10s
exclusions:
  - event: did_x
"""


def test_an_exclusion_after_the_deadline_counts_with_until_step_only() -> None:
    """PostHog's ``test_excluded_after_time_expires``: step one at 0 s, the exclusion at 11 s,
    step two at 12 s, a 10 s window. Its funnels today (the UDF) count the person at step 1,
    as ``window`` does; its funnels before the UDF excluded them, as ``until_step`` does."""
    events = [ev("d", 0, "a"), ev("d", 11 / 60, "x"), ev("d", 12 / 60, "b")]
    today = funnel_from_yaml(TWO_STEPS)
    (entry,) = funnel_entries(today, events)
    assert (entry.outcome, entry.furthest_step) == ("dropped_off", 1)
    before_the_udf = funnel_from_yaml(TWO_STEPS + "exclusion_scope: until_step\n")
    (entry,) = funnel_entries(before_the_udf, events)
    assert (entry.outcome, entry.furthest_step) == ("excluded", 1)
    assert entry.ended_at == entry.deadline_at == at(10 / 60)  # it ended at its deadline
    # Without a step two after it, the exclusion after the deadline does not count.
    (entry,) = funnel_entries(before_the_udf, events[:2])
    assert entry.outcome == "dropped_off"


def test_until_step_places_later_steps_without_deadline() -> None:
    watched = funnel(
        "exclusion_scope: until_step\nexclusions:\n  - event: did_x\n    between: [2, 3]\n"
    )
    # Reached a only; b at 20 and c at 40 are placed after the deadline (10m): x at 30 lies
    # between them, and c follows, so the attempt is excluded.
    events = [ev("d", 0, "a"), ev("d", 20, "b"), ev("d", 30, "x"), ev("d", 40, "c")]
    assert outcomes(funnel_entries(watched, events)) == [("d", 1, "excluded", 1)]
    # x at 25 comes within the window of the placed b (20 + 10m): it counts at once.
    assert outcomes(funnel_entries(watched, [*events[:2], ev("d", 25, "x")])) == [
        ("d", 1, "excluded", 1)
    ]
    # x before the placed b, or after c, is outside [2, 3]; after b's window, without c, too.
    for x_at in (15, 45):
        shifted = [ev("d", 0, "a"), ev("d", 20, "b"), ev("d", 40, "c"), ev("d", x_at, "x")]
        assert outcomes(funnel_entries(watched, shifted)) == [("d", 1, "dropped_off", 1)]
    assert outcomes(funnel_entries(watched, events[:3])) == [("d", 1, "dropped_off", 1)]


def test_until_step_watches_an_attempt_beside_the_next_one() -> None:
    watched = funnel("exclusion_scope: until_step\nexclusions:\n  - event: did_x\n")
    # The first attempt drops off at 10m; a enters again at 11; x at 12 excludes both (the
    # second while alive, the first once c is placed at 13 after b at 12.5).
    events = [ev("d", 0, "a"), ev("d", 11, "a"), ev("d", 12, "x"), ev("d", 12.5, "b")]
    events.append(ev("d", 13, "c"))
    assert outcomes(funnel_entries(watched, events)) == [
        ("d", 1, "excluded", 1),
        ("d", 2, "excluded", 1),
    ]
    # A step held constant with another value is not placed: c never follows, x stays harmless.
    held = funnel("hold_constant: p\nexclusion_scope: until_step\nexclusions:\n  - event: did_x\n")
    other = [ev("d", 0, "a", props={"p": 1}), ev("d", 12, "x"), ev("d", 13, "b", props={"p": 2})]
    assert outcomes(funnel_entries(held, other)) == [("d", 1, "dropped_off", 1)]
    same = [ev("d", 0, "a", props={"p": 1}), ev("d", 12, "x"), ev("d", 13, "b", props={"p": 1})]
    same.append(ev("d", 14, "c", props={"p": 1}))
    assert outcomes(funnel_entries(held, same)) == [("d", 1, "excluded", 1)]


def test_hold_constant_skips_steps_with_other_values() -> None:
    holding = funnel("hold_constant: p\n")
    events = [
        ev("d", 0, "a", props={"p": 1}),
        ev("d", 1, "b", props={"p": "1"}),
        ev("d", 2, "b", props={"p": 1.0}),
        ev("d", 3, "c", props={"p": 1}),
    ]
    (entry,) = funnel_entries(holding, events)
    assert entry.converted and entry.step_reached_at == (at(0), at(2), at(3))
    missing_is_null = [ev("d", 0, "a"), ev("d", 1, "b", props={"p": None}), ev("d", 2, "c")]
    assert funnel_entries(holding, missing_is_null)[0].converted


def test_a_step_window_bounds_the_time_since_the_previous_step() -> None:
    bounded = funnel_from_yaml(
        ABC.replace(
            "steps: [did_a, did_b, did_c]",
            "steps:\n  - did_a\n  - event: did_b\n    within: 3m\n  - did_c",
        )
    )
    assert outcomes(
        funnel_entries(bounded, [ev("d", 0, "a"), ev("d", 3, "b"), ev("d", 9, "c")])
    ) == [("d", 1, "converted", 3)]
    late = funnel_entries(bounded, [ev("d", 0, "a"), ev("d", 3.5, "b"), ev("d", 4, "c")])
    assert outcomes(late) == [("d", 1, "dropped_off", 1)]
    assert late[0].ended_at == at(3) and late[0].deadline_at == at(3)


def test_identity_periods_and_persons() -> None:
    events = [
        ev("phone", 0, "a"),
        ev("phone", 1, type="identify", user="ann"),
        ev("laptop", 5, type="identify", user="ann"),
        ev("laptop", 6, "b"),
        ev("laptop", 7, "c"),
        ev("shared", 0, type="identify", user="bob"),
        ev("shared", 1, "a"),
        ev("shared", 2, type="identify", user="cat"),
        ev("shared", 3, "b"),
        ev("shared", 4, type="identify", user="cat"),
        ev("lonely", 0, "a"),
    ]
    periods = identity_periods(events)
    assert periods["shared"] == [(at(0), "bob"), (at(2), "cat")]
    assert person_of(ev("phone", -60, "z"), periods) == ("user:ann", "ann")
    assert person_of(ev("shared", 2, "z"), periods) == ("user:cat", "cat")
    assert person_of(ev("lonely", 9, "z"), periods) == ("device:lonely", None)
    by_user = funnel_entries(funnel("unit: user\n"), events)
    assert sorted(outcomes(by_user)) == [
        ("device:lonely", 1, "dropped_off", 1),
        ("user:ann", 1, "converted", 3),
        ("user:bob", 1, "dropped_off", 1),
    ]
    assert {e.unit_id: e.user_id for e in by_user}["user:ann"] == "ann"
    by_device = funnel_entries(funnel(), events)
    assert sorted(outcomes(by_device)) == [
        ("lonely", 1, "dropped_off", 1),
        ("phone", 1, "dropped_off", 1),
        ("shared", 1, "dropped_off", 2),
    ]


def test_breakdown_attribution() -> None:
    events = [
        ev("d", 0, "a", fields={"utm_source": "ads"}, props={"q": 1}),
        ev("d", 1, "b", fields={"utm_source": "mail"}, props={"q": True}),
    ]
    first = funnel("breakdown:\n  field: utm_source\n")
    assert funnel_entries(first, events)[0].breakdown_value == "ads"
    last = funnel("breakdown:\n  field: utm_source\n  attribution: last_touch\n")
    assert funnel_entries(last, events)[0].breakdown_value == "mail"
    step2 = funnel("breakdown:\n  property: q\n  attribution: step_2\n")
    assert funnel_entries(step2, events)[0].breakdown_value == "true"
    step3 = funnel("breakdown:\n  property: q\n  attribution: step_3\n")
    assert funnel_entries(step3, events)[0].breakdown_value is None


def test_first_and_last_touch_skip_empty_values() -> None:
    # Step a has no utm_source and step c an empty one: first and last touch both read b's.
    events = [
        ev("d", 0, "a"),
        ev("d", 1, "b", fields={"utm_source": "mail"}),
        ev("d", 2, "c", fields={"utm_source": ""}),
        ev("e", 0, "a", fields={"utm_source": ""}),
        ev("e", 1, "b"),
    ]
    for attribution in ("first_touch", "last_touch"):
        by_source = funnel(f"breakdown: {{field: utm_source, attribution: {attribution}}}\n")
        values = {e.unit_id: e.breakdown_value for e in funnel_entries(by_source, events)}
        assert values == {"d": "mail", "e": None}, attribution
    # Step N's own value, empty or not.
    step3 = funnel("breakdown: {field: utm_source, attribution: step_3}\n")
    assert funnel_entries(step3, events)[0].breakdown_value == ""


def test_all_events_walks_each_breakdown_value_apart() -> None:
    # PostHog's test_funnel_step_breakdown_event_single_person_events_with_multiple_properties:
    # a Chrome sign-up, then a Safari play, a Safari sign-up and a Safari play an hour later.
    two = ABC.replace("[did_a, did_b, did_c]", "[did_a, did_b]").replace("10m", "1d")
    per_value = funnel("breakdown: {property: browser, attribution: all_events}\n", two)
    events = [
        ev("p", 0, "a", props={"browser": "Chrome"}),
        ev("p", 30, "b", props={"browser": "Safari"}),
        ev("p", 60, "a", props={"browser": "Safari"}),
        ev("p", 120, "b", props={"browser": "Safari"}),
    ]
    entries = funnel_entries(per_value, events)
    assert [(e.attempt_number, e.breakdown_value, e.furthest_step) for e in entries] == [
        (1, "Chrome", 1),
        (2, "Safari", 2),
    ]
    assert entries[1].seconds_to_convert == 3600.0
    rows = daily_mart(per_value, entries)
    units = {(r.breakdown_value, r.step_number): (r.units, r.entries) for r in rows}
    assert units == {
        ("(all)", 1): (1, 2), ("(all)", 2): (1, 1),
        ("Chrome", 1): (1, 1), ("Chrome", 2): (0, 0),
        ("Safari", 1): (1, 1), ("Safari", 2): (1, 1),
    }  # fmt: skip
    # An exclusion of another value does not touch the attempt; of the same value it does.
    excluding = funnel(
        "breakdown: {property: browser, attribution: all_events}\nexclusions:\n  - event: did_x\n",
        two,
    )
    chrome_x = ev("p", 90, "x", props={"browser": "Chrome"})
    assert [e.outcome for e in funnel_entries(excluding, [*events, chrome_x])][1] == "converted"
    safari_x = ev("p", 90, "x", props={"browser": "Safari"})
    assert [e.outcome for e in funnel_entries(excluding, [*events, safari_x])][1] == "excluded"


def test_step_attribution_can_leave_out_units_short_of_the_step() -> None:
    # PostHog's test_funnel_step_breakdown_with_step_one_attribution_incomplete_funnel, by
    # browser at step 2: p2 and p3 never buy, p1 buys without a browser, p4 buys with one.
    two = ABC.replace("[did_a, did_b, did_c]", "[did_a, did_b]")
    events = [
        ev("p1", 0, "a", props={"browser": "Chrome"}), ev("p1", 1, "b"),
        ev("p2", 0, "a"),
        ev("p3", 0, "a", props={"browser": "Mac"}),
        ev("p4", 0, "a", props={"browser": 0}), ev("p4", 1, "b", props={"browser": "alakazam"}),
    ]  # fmt: skip

    def units(extra: str) -> dict[tuple[str, int], int]:
        declared = funnel(f"breakdown: {{property: browser, attribution: step_2{extra}}}\n", two)
        rows = daily_mart(declared, funnel_entries(declared, events))
        return {(r.breakdown_value, r.step_number): r.units for r in rows}

    left_out = units(", unreached: leave_out")
    assert left_out == {
        ("(all)", 1): 4, ("(all)", 2): 2,
        ("(none)", 1): 1, ("(none)", 2): 1,
        ("alakazam", 1): 1, ("alakazam", 2): 1,
    }  # fmt: skip
    kept = units("")
    assert (kept["(none)", 1], kept["(none)", 2]) == (3, 1)
    assert kept["(all)", 1] == left_out["(all)", 1]


def test_weeks_and_months_count_a_returning_unit_once() -> None:
    day = 24 * 60  # minutes; T0 is Friday 2026-11-20
    events = [
        ev("u1", 0, "a"), ev("u1", 2 * day, "a"), ev("u2", 2 * day + 5, "a"),  # Fri, Sun
        ev("u1", 3 * day, "a"),  # Monday: the next ISO week
        ev("u1", 11 * day, "a"),  # Tuesday, December 1st: the next month
    ]  # fmt: skip
    rows = funnel_mart(funnel(), funnel_entries(funnel(), events))
    step1 = {(r.period, r.period_start.isoformat()): (r.units, r.entries) for r in rows
             if r.step_number == 1}  # fmt: skip
    assert step1 == {
        ("day", "2026-11-20"): (1, 1), ("day", "2026-11-22"): (2, 2),
        ("day", "2026-11-23"): (1, 1), ("day", "2026-12-01"): (1, 1),
        ("week", "2026-11-16"): (2, 3), ("week", "2026-11-23"): (1, 1),
        ("week", "2026-11-30"): (1, 1),
        ("month", "2026-11-01"): (2, 4), ("month", "2026-12-01"): (1, 1),
    }  # fmt: skip
    # Summing the week's days counts u1 twice; the range function counts it once.
    entries = funnel_entries(funnel(), events)
    assert units_between(funnel(), entries, at(0).date(), at(2 * day).date()) == {1: 2}


def test_jsonb_text_is_what_postgres_prints() -> None:
    assert jsonb_text(89.0) == "89.0"
    assert jsonb_text(False) == "false"
    assert jsonb_text({"bb": [1, None], "a": "x"}) == '{"a": "x", "bb": [1, null]}'
    assert jsonb_text(None) is None


def test_percentile_cont_interpolates_like_postgres() -> None:
    assert percentile_cont([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert abs(percentile_cont([float(v) for v in range(1, 11)], 0.9) - 9.1) < 1e-9
    assert abs(percentile_cont([0.0, 10.0], 0.9) - 9.0) < 1e-12
    assert percentile_cont([], 0.5) is None


def test_the_mart_counts_units_per_step_and_skips_excluded_attempts() -> None:
    excluding = funnel("exclusions:\n  - event: did_x\n")
    events = [
        # u1 converts on its second attempt the same day; u2 reaches step 2; u3 is excluded
        ev("u1", 0, "a"), ev("u1", 11, "a"), ev("u1", 12, "b"), ev("u1", 14, "c"),
        ev("u2", 0, "a"), ev("u2", 4, "b"),
        ev("u3", 0, "a"), ev("u3", 1, "x"),
    ]  # fmt: skip
    rows = daily_mart(excluding, funnel_entries(excluding, events))
    assert [(r.step_number, r.units, r.entries) for r in rows] == [(1, 2, 3), (2, 2, 2), (3, 1, 1)]
    assert {r.breakdown_value for r in rows} == {"(all)"}
    step2, step3 = rows[1], rows[2]
    assert step2.conversion_from_previous == 1.0 and step3.conversion_overall == 0.5
    # time to step 2: u1's first attempt reaching it took 1 min, u2's took 4 min
    assert step2.median_seconds_to_step == 150.0
    assert step3.median_seconds_to_step == 180.0 == rows[0].median_seconds_to_convert
    assert rows[0].conversion_from_previous is None


def test_the_mart_times_each_step_from_entry_and_from_the_previous_step() -> None:
    events = [
        ev("u1", 0, "a"), ev("u1", 1, "b"), ev("u1", 4, "c"),
        ev("u2", 0, "a"), ev("u2", 5, "b"), ev("u2", 6, "c"),
        ev("u3", 0, "a"), ev("u3", 6, "b"),
    ]  # fmt: skip
    step1, step2, step3 = daily_mart(funnel(), funnel_entries(funnel(), events))
    # to step 2: 1, 5 and 6 min; to step 3 (convert): 4 and 6 min; step 2 -> 3: 3 and 1 min
    assert step2.avg_seconds_to_step == 240.0 and step2.median_seconds_to_step == 300.0
    assert step2.avg_seconds_from_previous == step2.avg_seconds_to_step  # step 1 is the entry
    assert step3.avg_seconds_to_step == 300.0 == step1.avg_seconds_to_convert
    assert (step3.avg_seconds_from_previous, step3.median_seconds_from_previous) == (120.0, 120.0)
    assert step3.p90_seconds_from_previous == 60.0 + 0.9 * 120.0
    assert step1.avg_seconds_to_step == 0.0 and step1.avg_seconds_from_previous is None


def test_a_breakdown_also_yields_the_overall_rows() -> None:
    by_source = funnel("breakdown: {property: source}\n")
    events = [
        ev("u1", 0, "a", props={"source": "ads"}), ev("u1", 1, "b"),
        ev("u2", 0, "a", props={"source": "mail"}), ev("u2", 1, "b"), ev("u2", 2, "c"),
        ev("u3", 0, "a"),
        ev("u4", 0, "a", props={"source": "(all)"}), ev("u4", 3, "b"),
    ]  # fmt: skip
    rows = daily_mart(by_source, funnel_entries(by_source, events))
    units = {(r.breakdown_value, r.step_number): r.units for r in rows}
    assert {v for v, _ in units} == {"(all)", "ads", "mail", "(none)"}
    assert [units["(all)", k] for k in (1, 2, 3)] == [4, 3, 1]  # u4's "(all)" counts once
    assert [units["ads", k] + units["mail", k] + units["(none)", k] for k in (1, 2, 3)] == [3, 2, 1]
    overall = [r for r in rows if r.breakdown_value == "(all)"]
    assert overall[1].median_seconds_to_step == 60.0 and overall[1].entries == 3


def test_a_session_attempt_never_leaves_its_session() -> None:
    # A session ends after 30 minutes without any event, also one that is no step: the pageview
    # at minute 25 keeps the first session alive until step b at minute 50.
    per_session = funnel("unit: session\n", base=ABC.replace("10m", "2h"))
    kept_alive = [ev("d", 0, "a"), ev("d", 25, type="pageview"), ev("d", 50, "b")]
    split = [ev("e", 0, "a"), ev("e", 30, "b"), ev("e", 31, "c")]
    entries = funnel_entries(per_session, [*kept_alive, *split])
    by_device = {e.anonymous_id: e for e in entries}
    assert len(entries) == 2
    assert by_device["d"].unit_id == f"session:{kept_alive[0].event_id}"
    assert by_device["d"].furthest_step == 2
    # Device e: step b comes exactly 30 minutes later, in a new session that has no step 1.
    assert by_device["e"].unit_id == f"session:{split[0].event_id}"
    assert (by_device["e"].furthest_step, by_device["e"].outcome) == (1, "dropped_off")
    assert by_device["e"].ended_at == at(120)


def test_breakdowns_by_a_session_column_and_a_person_trait_as_of_the_event() -> None:
    landing = {"page_path": "/landing"}
    events = [
        ev("d", 0, type="pageview", fields=landing),
        ev("d", 1, "a", fields={"page_path": "/p"}),
        ev("d", 2, "identify", type="identify", user="u", props={"plan": "free"}),
        ev("d", 3, "b"),
        ev("d", 4, "identify", type="identify", user="u", props={"plan": "pro"}),
        ev("d", 5, "c"),
    ]
    by_session = funnel_entries(funnel("breakdown: {session: landing_page}\n"), events)
    assert [e.breakdown_value for e in by_session] == ["/landing"]
    for attribution, value in (("first_touch", "free"), ("step_2", "free"), ("last_touch", "pro")):
        extra = f"breakdown: {{person: plan, attribution: {attribution}}}\n"
        (entry,) = funnel_entries(funnel(extra), events)
        # The identify reaches back to the device's first event (identity), but the trait
        # only holds from the identify on: at step 1 (minute 1) plan was not set yet, so first
        # touch takes step 2's value, the first that is not empty.
        assert entry.breakdown_value == value, attribution


# -- entries: every_entry (ClickHouse's windowFunnel, PostHog's funnel UDF) ------------------

EVERY_ENTRY = "entries: every_entry\n"


def reported(entries):
    return [(e.attempt_number, e.outcome, e.furthest_step, e.step_reached_at) for e in entries]


def test_every_entry_counts_the_best_window_from_any_step_one_event() -> None:
    events = [ev("d", 0, "a"), ev("d", 8, "a"), ev("d", 12, "b"), ev("d", 15, "c")]
    # Sequential: the a at 8 starts nothing; b comes after the first attempt's deadline.
    assert outcomes(funnel_entries(funnel(), events)) == [("d", 1, "dropped_off", 1)]
    (entry,) = funnel_entries(funnel(EVERY_ENTRY), events)
    # windowFunnel: the window from the a at 8 holds b and c. The row is that window's.
    assert (entry.outcome, entry.furthest_step) == ("converted", 3)
    assert entry.entered_at == at(8) and entry.entry_event_id == events[1].event_id
    assert entry.step_reached_at == (at(8), at(12), at(15))
    assert entry.seconds_to_convert == 7 * 60.0  # from the window's own step 1, as PostHog


def test_every_entry_opens_a_window_also_at_an_event_that_fills_a_step() -> None:
    aab = ABC.replace("[did_a, did_b, did_c]", "[did_a, did_a, did_b]")
    repeated = funnel(EVERY_ENTRY, base=aab)
    events = [ev("d", 0, "a"), ev("d", 5, "a"), ev("d", 11, "a"), ev("d", 12, "b")]
    sequential = funnel(base=aab)
    assert outcomes(funnel_entries(sequential, events)) == [
        ("d", 1, "dropped_off", 2),
        ("d", 2, "dropped_off", 1),
    ]
    # The a at 5 fills step 2 of the first window and opens a window that the a at 11 and the b
    # at 12 complete; the a at 11 comes after the first attempt's span (10m) and enters a second
    # attempt, whose window does not take the b: a conversion uses its event up.
    assert reported(funnel_entries(repeated, events)) == [
        (1, "converted", 3, (at(5), at(11), at(12))),
        (2, "dropped_off", 1, (at(11), None, None)),
    ]


def test_every_entry_reports_the_first_window_to_reach_the_furthest_step() -> None:
    bounded = funnel(
        EVERY_ENTRY,
        base=ABC.replace("[did_a, did_b, did_c]", "[did_a, did_b, {event: did_c, within: 2m}]"),
    )
    events = [ev("d", 0, "a"), ev("d", 1, "b"), ev("d", 2, "a"), ev("d", 4, "b")]
    (entry,) = funnel_entries(bounded, events)
    # Both windows reach b; the first one got there first (PostHog reports that chain). Its
    # deadline is 2m after its b.
    assert (entry.outcome, entry.entered_at, entry.step_reached_at) == (
        "dropped_off",
        at(0),
        (at(0), at(1), None),
    )
    assert entry.ended_at == at(3) == entry.deadline_at


def test_every_entry_drops_a_window_a_later_one_caught_up_with() -> None:
    events = [ev("d", 0, "a"), ev("d", 2, "b"), ev("d", 5, "a"), ev("d", 7, "b")]
    (entry,) = funnel_entries(funnel(EVERY_ENTRY), events)
    # The window from 5 reaches b: from there it does all the window from 0 would, later.
    assert (entry.outcome, entry.furthest_step, entry.entered_at) == ("dropped_off", 2, at(5))
    assert entry.ended_at == at(15)


def test_every_entry_is_in_progress_while_any_window_may_go_further() -> None:
    events = [ev("d", 0, "a"), ev("d", 1, "b"), ev("d", 8, "a")]
    (entry,) = funnel_entries(funnel(EVERY_ENTRY), events, data_end=at(9))
    assert (entry.outcome, entry.furthest_step, entry.entered_at) == ("in_progress", 2, at(0))
    assert entry.ended_at == at(18) == entry.deadline_at  # the window from 8 is still open


def test_every_entry_keeps_windows_with_other_hold_values() -> None:
    held = funnel(EVERY_ENTRY + "hold_constant: p\n")
    events = [
        ev("d", 0, "a", props={"p": 1}),
        ev("d", 1, "a", props={"p": 2}),
        ev("d", 2, "b", props={"p": 1}),
        ev("d", 3, "c", props={"p": 1}),
    ]
    (entry,) = funnel_entries(held, events)
    assert (entry.outcome, entry.entered_at) == ("converted", at(0))


def test_every_entry_matches_posthogs_multiple_incomplete_tries() -> None:
    """PostHog's ``test_funnel_with_multiple_incomplete_tries`` (conversion_time_cases.py):
    signed up, pageview, something else within a day; the later tries stop at step 2."""
    day = 24 * 60
    posthog = funnel(EVERY_ENTRY, base=ABC.replace("10m", "1d"))
    events = [
        ev("p", 60, "a"),
        ev("p", 120, "b"),
        ev("p", 180, "c"),
        ev("p", 2 * day + 240, "a"),
        ev("p", 2 * day + 300, "b"),
        ev("p", 3 * day + 420, "a"),
        ev("p", 3 * day + 600, "b"),
    ]
    entries = funnel_entries(posthog, events)
    assert [(e.outcome, e.furthest_step) for e in entries] == [
        ("converted", 3),
        ("dropped_off", 2),
        ("dropped_off", 2),
    ]
    (converted,) = [e for e in entries if e.converted]
    assert converted.step_reached_at[1] - converted.entered_at == at(60) - at(0)


# -- broken_by: any_event (PostHog's strict funnels) ------------------------------------------

ANY_EVENT = "order: strict\nbroken_by: any_event\n"


def test_any_event_of_the_unit_breaks_a_strict_attempt() -> None:
    any_event = funnel(ANY_EVENT)
    for other in (
        ev("d", 2, "zzz"),
        ev("d", 2, type="pageview"),
        ev("d", 2, type="click"),
        ev("d", 2, type="identify", user="u1"),
    ):
        events = [ev("d", 0, "a"), ev("d", 1, "b"), other, ev("d", 3, "c")]
        # step_events: only step events break, so the event in between is not seen.
        assert outcomes(funnel_entries(funnel("order: strict\n"), events)) == [
            ("d", 1, "converted", 3)
        ]
        entries = funnel_entries(any_event, events)
        assert outcomes(entries) == [("d", 1, "broken_order", 2)], other.type
        assert entries[0].ended_at == at(2)
    # An event before the entry or after the deadline breaks nothing; a new attempt enters later.
    events = [ev("d", 0, "zzz"), ev("d", 1, "a"), ev("d", 12, "zzz"), ev("d", 13, "a")]
    events += [ev("d", 14, "b"), ev("d", 15, "c")]
    assert outcomes(funnel_entries(any_event, events)) == [
        ("d", 1, "dropped_off", 1),
        ("d", 2, "converted", 3),
    ]
    # At the instant of a step it sorts after it (PostHog skips the break among events sharing
    # a timestamp): here it breaks the attempt the step entered.
    tied = [ev("d", 0, "a"), ev("d", 0, "zzz"), ev("d", 1, "b"), ev("d", 2, "c")]
    assert outcomes(funnel_entries(any_event, tied)) == [("d", 1, "broken_order", 1)]


def test_any_event_checks_exclusions_before_breaking() -> None:
    excluding = funnel(ANY_EVENT + "exclusions:\n  - event: did_x\n    between: [2, 3]\n")
    events = [ev("d", 0, "a"), ev("d", 1, "b"), ev("d", 2, "x"), ev("d", 3, "c")]
    entries = funnel_entries(excluding, events)
    assert outcomes(entries) == [("d", 1, "excluded", 2)] and entries[0].ended_at == at(2)
    # Out of its range (before step 2) the exclusion event is just another event: it breaks.
    early = [ev("d", 0, "a"), ev("d", 0.5, "x"), ev("d", 1, "b"), ev("d", 3, "c")]
    assert outcomes(funnel_entries(excluding, early)) == [("d", 1, "broken_order", 1)]


def test_any_event_breaks_every_window_of_every_entry() -> None:
    aab = ABC.replace("[did_a, did_b, did_c]", "[did_a, did_a, did_b]")
    events = [ev("d", 0, "a"), ev("d", 1, "a"), ev("d", 2, "zzz"), ev("d", 3, "b")]
    # The a at 1 fills step 2 of the window from 0 and opens a window of its own.
    assert reported(funnel_entries(funnel("order: strict\n" + EVERY_ENTRY, base=aab), events)) == [
        (1, "converted", 3, (at(0), at(1), at(3)))
    ]
    # zzz breaks both windows; the attempt reports the one that got further.
    (entry,) = funnel_entries(funnel(ANY_EVENT + EVERY_ENTRY, base=aab), events)
    assert (entry.outcome, entry.furthest_step, entry.entered_at) == ("broken_order", 2, at(0))
    assert entry.ended_at == at(2)


POSTHOG_STRICT = """
name: posthog_strict
description: PostHog's test_basic_strict_funnel
owner: test
steps: [did_signup, did_pageview, did_insight]
conversion_window: 14d
order: strict
broken_by: any_event
"""


def test_any_event_matches_posthogs_basic_strict_funnel() -> None:
    """PostHog's ``test_basic_strict_funnel`` (``test_funnel_strict.py``), each person's events
    a minute apart in the order created: 7 persons at step 1, 2 at step 2, 1 at step 3."""
    journeys = {
        "stopped_after_signup1": ["signup"],
        "stopped_after_pageview1": ["pageview", "signup"],
        "stopped_after_insightview": ["signup", "pageview", "blaah", "insight"],
        "stopped_after_insightview2": ["insight", "blaah", "pageview", "signup"],
        "stopped_after_insightview3": ["pageview", "signup", "blaah", "pageview", "insight"],
        "person6": ["blaah", "signup", "blaah", "pageview"],
        "person7": ["blaah", "signup", "pageview", "insight", "blaah"],
        "stopped_after_insightview6": ["insight", "pageview"],
    }
    events = [
        ev(person, minute, name)
        for person, names in journeys.items()
        for minute, name in enumerate(names)
    ]
    strict = funnel_from_yaml(POSTHOG_STRICT)
    entries = funnel_entries(strict, events)
    reached = {k: {e.unit_id for e in entries if e.furthest_step >= k} for k in (1, 2, 3)}
    assert len(reached[1]) == 7
    assert reached[2] == {"stopped_after_insightview", "person7"}
    assert reached[3] == {"person7"}
    # With the default (step events only), the blaah events break nothing: more go further.
    step_events = funnel_from_yaml(POSTHOG_STRICT.replace("broken_by: any_event\n", ""))
    loose = funnel_entries(step_events, events)
    assert {e.unit_id for e in loose if e.furthest_step == 3} == {
        "stopped_after_insightview",
        "stopped_after_insightview3",
        "person7",
    }


def test_any_event_matches_posthogs_strict_breakdown_case() -> None:
    """PostHog's ``test_strict_breakdown_events_with_multiple_properties``: sign up, blah, play
    movie (Chrome) stops at step 1; sign up, play movie (Safari) converts."""
    strict = funnel_from_yaml(
        POSTHOG_STRICT.replace("[did_signup, did_pageview, did_insight]", "[did_signup, did_play]")
        + "breakdown:\n  property: browser\n"
    )
    chrome, safari = {"browser": "Chrome"}, {"browser": "Safari"}
    events = [
        ev("person1", 0, "signup", props=chrome),
        ev("person1", 60, "blah", props=chrome),
        ev("person1", 120, "play", props=chrome),
        ev("person2", 24 * 60 + 60, "signup", props=safari),
        ev("person2", 24 * 60 + 120, "play", props=safari),
    ]
    rows = {
        (r.breakdown_value, r.step_number): r.units
        for r in funnel_mart(strict, funnel_entries(strict, events), periods=("week",))
    }
    assert rows[("Chrome", 1)] == 1 and rows[("Chrome", 2)] == 0
    assert rows[("Safari", 1)] == 1 and rows[("Safari", 2)] == 1
