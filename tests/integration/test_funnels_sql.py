"""The funnel models against the reference, on the real PostgreSQL, with dbt run in-process.

Any difference between fct_funnel_entries / mart_funnel_conversion and what
retrolytics/semantics/funnels.py computes from the same events fails the test.
"""

from __future__ import annotations

import re
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ingestion import erasure
from ingestion.loader import store_events
from retrolytics.semantics.funnels import data_end_of, funnel_entries, units_between
from retrolytics.warehouse import runner
from tests.support.funnels import (
    assert_same,
    compile_declarations,
    custom_definitions,
    edge_case_events,
    iso,
    reference_events,
    reference_facts,
    reference_mart,
    reference_unit_steps,
    run,
    sql_facts,
    sql_mart,
    sql_unit_steps,
)
from tests.support.paths import REPO, copy_dbt_project

pytestmark = pytest.mark.integration

DEFINITIONS = REPO / "tests" / "funnel_definitions"
START = datetime(2026, 11, 20, tzinfo=UTC)


def day(n: int) -> str:
    return iso(START + timedelta(days=n))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the dbt project for the module (dbt's partial parsing then stays warm)."""
    return copy_dbt_project(tmp_path_factory.mktemp("funnels") / "dbt_project")


@pytest.fixture
def definitions(tmp_path: Path) -> Path:
    """The test definitions, in a folder a test may edit."""
    return Path(shutil.copytree(DEFINITIONS, tmp_path / "definitions"))


def twenty_steps(device: str, start: datetime) -> list[dict]:
    """A device that walks a, b, c, d five times: the 20-step funnel converts."""
    documents = []
    for i, name in enumerate("abcd" * 5):
        moment = start + timedelta(minutes=i)
        documents.append(
            {
                "event_id": str(uuid.uuid4()),
                "type": "custom",
                "name": name,
                "occurred_at": iso(moment),
                "anonymous_id": device,
                "properties": {"p": 1, "q": "red"},
            }
        )
    return documents


def custom(device: str, moment: datetime, name: str, **extra: object) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "custom" if name != "identify" else "identify",
        **({"name": name} if name != "identify" else {}),
        "occurred_at": iso(moment),
        "received_at": iso(moment + timedelta(seconds=1)),
        "anonymous_id": device,
        "properties": {"p": 1, "q": "red"},
        **extra,
    }


def identity_stories() -> tuple[list[dict], list[dict]]:
    """(on time, late) events whose late identifies move devices between persons.

    A phone browses on day 0 and logs in only on day 1 (late): its day-0 steps join its
    owner's laptop, and together they convert on day 0. A kiosk used by one person is taken
    over by another (the identify arrives late), so its day-1 steps change person.
    """
    t = START
    on_time = [
        custom("laptop-late", t + timedelta(hours=9), "identify", user_id="owner"),
        custom("phone-late", t + timedelta(hours=10), "a"),
        custom("phone-late", t + timedelta(hours=10, minutes=2), "b"),
        custom("laptop-late", t + timedelta(hours=10, minutes=5), "c"),
        custom("kiosk", t + timedelta(hours=8), "identify", user_id="first-user"),
        custom("kiosk", t + timedelta(days=1, hours=13), "a"),
        custom("kiosk", t + timedelta(days=1, hours=13, minutes=1), "b"),
        custom("kiosk", t + timedelta(days=1, hours=13, minutes=2), "c"),
    ]
    late = [
        custom("phone-late", t + timedelta(days=1, hours=12), "identify", user_id="owner"),
        custom("kiosk", t + timedelta(days=1, hours=12, minutes=59), "identify", user_id="next"),
    ]
    return on_time, late


def compare(
    conn: psycopg.Connection, declared, documents: list[dict], definitions_of=custom_definitions
) -> None:
    events = reference_events(documents, definitions_of)
    facts = reference_facts(declared, events)
    assert_same(sql_facts(conn), facts, "fct_funnel_entries")
    assert_same(sql_mart(conn), reference_mart(declared, events), "mart_funnel_conversion")
    assert sql_unit_steps(conn) == reference_unit_steps(facts), "mart_funnel_unit_steps"


def test_facts_and_mart_equal_the_reference_on_edge_cases(
    raw_db: psycopg.Connection, database_url: str, project: Path, definitions: Path
) -> None:
    documents = edge_case_events(seed=11, start=START) + twenty_steps("walker", START)
    store_events(raw_db, documents)
    declared = compile_declarations(definitions, project)

    run(project, database_url, tests=True)

    compare(raw_db, declared, documents)
    outcomes = {
        row[0] for row in raw_db.execute("select distinct outcome from marts.fct_funnel_entries")
    }
    assert outcomes == {"converted", "dropped_off", "in_progress", "broken_order", "excluded"}
    converted_twenty = raw_db.execute(
        "select count(*) from marts.fct_funnel_entries where funnel_name = 'f_twenty' and converted"
    ).fetchone()[0]
    assert converted_twenty >= 1
    assert_the_attributions_were_exercised(raw_db)
    assert_the_exclusions_were_exercised(raw_db)
    assert_ranges_count_each_unit_once(raw_db, declared, documents)


def assert_ranges_count_each_unit_once(
    conn: psycopg.Connection, declared, documents: list[dict]
) -> None:
    """mart_funnel_unit_steps answers any range of days as the reference does; the data has
    units that entered on several of those days (so summing days would differ)."""
    events = reference_events(documents, custom_definitions)
    data_end = data_end_of(declared, events)
    days = sorted(
        {row[0] for row in conn.execute("select distinct entry_day from marts.fct_funnel_entries")}
    )
    ranges = [(day, day) for day in days] + [(days[0], days[-1]), (days[1], days[-1])]
    came_back = False
    for funnel in declared:
        entries = funnel_entries(funnel, events, data_end)
        for first, last in ranges:
            counted = dict(
                conn.execute(
                    "select step_number, count(distinct unit_id) from marts.mart_funnel_unit_steps"
                    " where funnel_name = %s and entry_day between %s and %s group by 1",
                    (funnel.name, first, last),
                ).fetchall()
            )
            assert counted == units_between(funnel, entries, first, last), (funnel.name, first)
        whole = units_between(funnel, entries, days[0], days[-1]).get(1, 0)
        came_back |= whole < sum(units_between(funnel, entries, d, d).get(1, 0) for d in days)
    assert came_back, "no unit entered a funnel on two days: the ranges test nothing"


def assert_the_attributions_were_exercised(conn: psycopg.Connection) -> None:
    """The data holds the cases the attributions differ on (so the comparison tests them)."""

    def count(query: str) -> int:
        return conn.execute(query).fetchone()[0]

    # First touch skipped an empty entry value for a later step's.
    assert count(
        "select count(*) from marts.fct_funnel_entries as facts"
        " inner join intermediate.int_funnel_step_events as entry"
        " on entry.funnel_name = facts.funnel_name and entry.event_id = facts.entry_event_id"
        " where facts.funnel_name = 'f_ordered' and coalesce(entry.breakdown_value, '') = ''"
        " and facts.breakdown_value is not null"
    )
    # Attempts short of step 3 that f_windows leaves out of its values' rows.
    assert count(
        "select count(*) from marts.fct_funnel_entries"
        " where funnel_name = 'f_windows' and step_reached_at[3] is null"
    )
    # Units that reach further in the every_entry twin of f_ordered (a later step 1's window).
    assert count(
        "select count(*) from (select"
        " max(furthest_step) filter (where funnel_name = 'f_every_entry') as every,"
        " max(furthest_step) filter (where funnel_name = 'f_ordered') as sequential"
        " from marts.fct_funnel_entries group by unit_id) as units where every > sequential"
    )
    # Units with attempts under two values of an all_events funnel.
    assert count(
        "select count(*) from (select unit_id from marts.fct_funnel_entries"
        " where funnel_name = 'f_all_events' group by unit_id"
        " having count(distinct coalesce(breakdown_value, '(none)')) > 1) as units"
    )
    # Strict attempts that an event matching no step broke (broken_by: any_event).
    assert count(
        "select count(*) from marts.fct_funnel_entries as facts"
        " inner join intermediate.int_funnel_step_events as other"
        " on other.funnel_name = facts.funnel_name and other.occurred_at = facts.ended_at"
        " and other.step_mask = 0 and other.exclusion_mask = 0"
        " where facts.funnel_name = 'f_strict_any' and facts.outcome = 'broken_order'"
    )


def assert_the_exclusions_were_exercised(conn: psycopg.Connection) -> None:
    """The data holds unordered attempts excluded while alive and attempts that an exclusion
    after their deadline excluded (exclusion_scope until_step: ended at the deadline)."""
    [(unordered, watched)] = conn.execute(
        "select count(*) filter (where funnel_name = 'f_unordered_excluded'),"
        " count(*) filter (where funnel_name = 'f_until_step' and ended_at = deadline_at)"
        " from marts.fct_funnel_entries where outcome = 'excluded'"
    ).fetchall()
    assert unordered > 0 and watched > 0


def test_windowed_runs_late_events_and_reruns(
    raw_db: psycopg.Connection, database_url: str, project: Path, definitions: Path
) -> None:
    documents = edge_case_events(seed=23, start=START, days=3, devices=20)
    # Late: some events of days 1 and 2 (identifies among them) arrive after their day ran.
    late = [d for i, d in enumerate(documents) if d["occurred_at"] >= day(1) and i % 6 == 0]
    on_time = [d for d in documents if d not in late]
    stories_on_time, stories_late = identity_stories()
    # A device that starts f_ordered 5 minutes before day 2 ends, the last events of all, and is
    # never seen again: in progress after day 2's run. An event of another device on day 3 moves
    # the end of the data past its deadline; day 3's run (a window without the device's events)
    # must end it dropped_off all the same.
    pending = [custom("pending", START + timedelta(days=2, hours=23, minutes=55), "a")]
    pending.append(custom("pending", START + timedelta(days=2, hours=23, minutes=56), "b"))
    next_day = [custom("next-day", START + timedelta(days=3, minutes=30), "c")]
    # f_until_step (3m window, x excluded until c): a device drops off on day 0; b and c come on
    # day 1, an x between them arrives late. The day-1 rerun must turn the day-0 attempt, ended
    # before its window, `excluded`.
    watched = [
        custom("watched", START + timedelta(hours=23, minutes=50), "a"),
        custom("watched", START + timedelta(days=1, minutes=40), "b"),
        custom("watched", START + timedelta(days=1, minutes=45), "c"),
    ]
    late_exclusion = [custom("watched", START + timedelta(days=1, minutes=30), "x")]
    # f_strict_any (3d window, broken by any event): a device enters on day 0 and converts on day
    # 3; a pageview of day 1, between a and b, arrives late. The rerun of days 1 and 2 holds none
    # of the device's step events, only the pageview: its plan must recompute the unit all the
    # same, and the conversion becomes broken_order.
    interrupted = custom("interrupted", START + timedelta(hours=23), "a")
    next_day += [
        custom("interrupted", START + timedelta(days=3, hours=h), name)
        for h, name in ((1, "b"), (2, "c"))
    ]
    late_pageview = custom("interrupted", START + timedelta(days=1, hours=12), "a")
    del late_pageview["name"]
    late_pageview.update(type="pageview", page={"url": "https://shop.test/p/1", "path": "/p/1"})
    on_time += [*stories_on_time, *pending, *watched, interrupted]
    late += [*stories_late, *late_exclusion, late_pageview]
    documents = on_time + next_day + late
    declared = compile_declarations(definitions, project)

    def pending_outcomes() -> list[str]:
        return [
            outcome
            for (outcome,) in raw_db.execute(
                "select outcome from marts.fct_funnel_entries"
                " where funnel_name = 'f_ordered' and unit_id = 'pending'"
            )
        ]

    def interrupted_outcomes() -> list[str]:
        return [
            outcome
            for (outcome,) in raw_db.execute(
                "select outcome from marts.fct_funnel_entries"
                " where funnel_name = 'f_strict_any' and unit_id = 'device:interrupted'"
            )
        ]

    def watched_outcomes() -> list[str]:
        return [
            outcome
            for (outcome,) in raw_db.execute(
                "select outcome from marts.fct_funnel_entries"
                " where funnel_name = 'f_until_step' and unit_id = 'device:watched'"
            )
        ]

    store_events(raw_db, on_time)
    for n in range(3):  # the daily partitions, in order
        run(project, database_url, start=day(n), end=day(n + 1))
    compare(raw_db, declared, on_time)
    assert pending_outcomes() == ["in_progress"]
    assert watched_outcomes() == ["dropped_off"]
    assert interrupted_outcomes() == ["in_progress"]

    store_events(raw_db, next_day)
    run(project, database_url, start=day(3), end=day(4))
    assert pending_outcomes() == ["dropped_off"]
    assert interrupted_outcomes() == ["converted"]
    compare(raw_db, declared, on_time + next_day)

    store_events(raw_db, late)
    run(project, database_url, start=day(2), end=day(3), lookback_hours=24)
    compare(raw_db, declared, documents)
    assert watched_outcomes() == ["excluded"]
    assert interrupted_outcomes() == ["broken_order"]

    before = sql_facts(raw_db), sql_mart(raw_db)
    run(project, database_url, start=day(2), end=day(3), lookback_hours=24)
    after = sql_facts(raw_db), sql_mart(raw_db)
    for old, new in zip(before, after, strict=True):
        assert old.keys() == new.keys()
        for key in old:
            old[key].pop("derived_at", None), new[key].pop("derived_at", None)
        assert old == new


def test_changing_a_funnel_or_a_definition_rederives_only_what_uses_it(
    raw_db: psycopg.Connection, database_url: str, project: Path, definitions: Path
) -> None:
    documents = edge_case_events(seed=5, start=START, days=2)
    store_events(raw_db, documents)
    compile_declarations(definitions, project)
    run(project, database_url, start=day(0), end=day(2))
    # Attempts that ended before the second run's window: only a changed declaration may
    # rewrite them (ones still open at the window's start are the window's to recompute).
    before_the_window = (
        "select funnel_name, unit_id, attempt_number, invocation_id "
        "from marts.fct_funnel_entries where ended_at < %s"
    )
    written = attempts_by_funnel(raw_db.execute(before_the_window, (day(1),)).fetchall())

    funnel_file = definitions / "funnels" / "edge_cases.yml"
    text = funnel_file.read_text()
    ordered = "conversion_window: 10m\n    breakdown: {field: utm_source}"
    assert ordered in text
    text = text.replace(ordered, ordered.replace("10m", "3m"))
    overlap = text[text.index("  - name: f_overlap") : text.index("  - name: f_raw")]
    funnel_file.write_text(text.replace(overlap, ""))  # a removed funnel loses facts and mart
    events_file = definitions / "events" / "letters.yml"
    events_file.write_text(
        events_file.read_text().replace("        name: d\n", "        name: x\n")
    )
    declared = compile_declarations(definitions, project)
    run(project, database_url, start=day(1), end=day(2))

    def d_now_means_x(document: dict) -> set[str]:
        matched = custom_definitions(document) - {"did_d"}
        return matched | {"did_d"} if "did_x" in matched else matched

    compare(raw_db, declared, documents, d_now_means_x)
    now = attempts_by_funnel(
        raw_db.execute(
            "select funnel_name, unit_id, attempt_number, invocation_id "
            "from marts.fct_funnel_entries"
        ).fetchall()
    )
    using_d = {"f_windows", "f_strict_excluded", "f_unordered_user", "f_twenty", "f_until_step"}
    # all_events and every_entry funnels recompute a unit with events in the window whole (its
    # attempts overlap, so they have no tail to resume at): the reference comparison above
    # covers them.
    whole_units = {"f_all_events", "f_all_events_user"}
    whole_units |= {"f_every_entry", "f_every_entry_strict", "f_every_entry_excluded"}
    assert "f_overlap" in written and "f_overlap" not in now
    del written["f_overlap"]
    for name, attempts in written.items():
        if name in whole_units:
            continue
        kept = {key for key, invocation in attempts.items() if now[name].get(key) == invocation}
        if name == "f_ordered" or name in using_d:
            assert not kept, name
        else:
            assert kept == attempts.keys(), name


def attempts_by_funnel(rows: list[tuple]) -> dict[str, dict[tuple, str]]:
    """{funnel: {(unit, attempt number): invocation that wrote it}}."""
    found: dict[str, dict[tuple, str]] = {}
    for funnel, unit_id, attempt_number, invocation in rows:
        found.setdefault(funnel, {})[unit_id, attempt_number] = invocation
    return found


# The statements of a funnel build after the step events: none may read an event table.
AFTER_THE_STEP_EVENTS = (
    "int_funnel_recompute_plan",
    "fct_funnel_entries_device",
    "fct_funnel_entries_user",
    "int_funnel_changed_attempts",
    "mart_funnel_conversion",
)
RAW_PARTITION_SCAN = re.compile(r" on (events_\d{8})(?: \w+)? \((actual rows|never executed)")


def raw_partition_scans(conn: psycopg.Connection, statement: str) -> tuple[set[str], set[str]]:
    """(raw.events partitions read, raw.events partitions in the plan) of one statement."""
    plan = "\n".join(
        line
        for (line,) in conn.execute(
            f"explain (analyze, costs off, timing off, summary off) {statement}"
        )
    )
    found = RAW_PARTITION_SCAN.findall(plan)
    return {name for name, how in found if how == "actual rows"}, {name for name, _ in found}


def test_a_windowed_funnel_build_reads_step_events_not_raw_events(
    raw_db: psycopg.Connection, database_url: str, project: Path, definitions: Path
) -> None:
    documents = edge_case_events(seed=3, start=START, days=3)
    store_events(raw_db, documents)
    compile_declarations(definitions, project)
    run(project, database_url)
    window = {"start": day(2), "end": day(3), "lookback_hours": 24}
    run(project, database_url, **window)
    compiled_dir = project / "target" / "compiled"
    runner.run_dbt(
        ["compile", "--select", "int_funnel_step_events", *AFTER_THE_STEP_EVENTS, "--quiet"],
        database_url=database_url,
        project_dir=project,
        window=window,
    )

    def statement(model: str) -> str:
        [compiled] = compiled_dir.rglob(f"{model}.sql")
        return compiled.read_text()

    every_day = {f"events_{(START + timedelta(days=n)):%Y%m%d}" for n in range(3)}
    read, planned = raw_partition_scans(raw_db, statement("int_funnel_step_events"))
    # Only the raw-type steps (funnel f_raw: `type: pageview`) read events: the window's days.
    assert read == every_day - {f"events_{START:%Y%m%d}"}
    assert planned == every_day
    for model in AFTER_THE_STEP_EVENTS:
        assert raw_partition_scans(raw_db, statement(model)) == (set(), set()), model
    # The plan was not empty: the run recomputed units from their resume points.
    planned_units = raw_db.execute(
        "select count(*) from intermediate.int_funnel_recompute_plan"
    ).fetchone()[0]
    assert planned_units > 0


def test_after_an_erasure_the_other_units_still_equal_the_reference(
    raw_db: psycopg.Connection, database_url: str, project: Path, definitions: Path
) -> None:
    documents = edge_case_events(seed=5, start=START) + twenty_steps("walker", START)
    store_events(raw_db, documents)
    declared = compile_declarations(definitions, project)
    run(project, database_url)
    victim = documents[0]["anonymous_id"]

    erasure.erase(raw_db, b"a key", device=victim)
    run(project, database_url)

    remaining = [d for d in documents if d["anonymous_id"] != victim]
    assert len(remaining) < len(documents)
    compare(raw_db, declared, remaining)


def test_the_step_events_are_analyzed_when_they_grew_by_a_tenth_not_after_every_run(
    raw_db: psycopg.Connection, database_url: str, project: Path, definitions: Path
) -> None:
    """analyze_when_grown (macros/statistics.sql): a full build analyzes the step events; a
    windowed run that adds a few rows leaves their statistics as they were; one that grows the
    table by more than a tenth refreshes them."""
    compile_declarations(definitions, project)

    def rows_and_statistics() -> tuple[int, float, int]:
        return raw_db.execute(
            "select (select count(*) from intermediate.int_funnel_step_events), reltuples,"
            " relpages from pg_class where oid = 'intermediate.int_funnel_step_events'::regclass"
        ).fetchone()

    store_events(raw_db, edge_case_events(seed=5, start=START, devices=120))
    run(project, database_url)
    rows, counted, pages = rows_and_statistics()
    # Enough pages that one more row cannot grow the table by a tenth.
    assert counted == rows and pages >= 20, (rows, counted, pages)

    store_events(raw_db, [custom("newcomer", START + timedelta(days=4), "a")])
    run(project, database_url, start=day(4), end=day(5))
    rows_after_one, counted_after_one, _ = rows_and_statistics()
    assert rows_after_one > rows
    assert counted_after_one == counted, "analyzed again for a few rows"

    store_events(raw_db, edge_case_events(seed=6, start=START + timedelta(days=5), devices=120))
    run(project, database_url, start=day(5), end=day(8))
    rows_now, counted_now, _ = rows_and_statistics()
    assert rows_now > 1.1 * rows_after_one
    assert counted_now == rows_now, "not analyzed after growing by more than a tenth"
