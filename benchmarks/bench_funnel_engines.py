"""Funnels: our dbt facts and mart against chDB's windowFunnel and DuckDB, on the same data.

Shop traffic is loaded straight into raw.events and defined_events is built (timed, but not part
of the comparison). Then the shipped ``browse_to_purchase`` funnel (5 ordered steps, 7 days,
``unit: user``, broken down by utm_source) is built from scratch by dbt: its step events
(``int_funnel_step_events``, from defined_events and the raw `custom` events), then from those
the attempts (``fct_funnel_entries_user``, with the empty plan and device table) and
``mart_funnel_conversion``; "ours" is the build from the step events, the step events' own time
is reported beside it. The step events, with each event's person resolved (identity stitching
is done once, by us), are exported once to CSV and loaded into chDB (a MergeTree table) and
DuckDB (a native table). Each engine then computes, per person, the furthest step reached:

- chDB: ``windowFunnel(7 days)(ts, step = 1, ..., step = 5)``, ClickHouse's own funnel function:
  the longest chain of steps in order that fits in 7 days after ANY step-1 event.
- DuckDB: the same meaning in SQL: from every step-1 event, ASOF joins find the earliest next
  step at or after the previous one, within 7 days of the start; the best start per person.
- ours: attempts do not overlap. A person enters on a step-1 event and cannot enter again until
  that attempt converted or expired (the first step event after its deadline ends it); the
  per-person figure is the furthest step of their best attempt. So ours is never above the
  engines': a step-1 event inside a live attempt is not a new start for us, while the engines
  try it. Ours also writes one row per attempt and the per-day mart with breakdown, medians and
  p90s, which the engines' one number per person does not. The report counts the persons lower
  in ours that this explains: for them, DuckDB's chain started only at our attempts' entries
  reaches exactly our step, so only the choice of starts differs, not steps, ties or windows.

Then 10 and 20 steps: the five steps repeated, built by dbt as funnels, and asked of the engines
with 10 and 20 conditions over the same export. Each engine query runs three times; the median.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import yaml

from benchmarks.bench_definitions import (
    SHIPPED_DEFINITIONS,
    dbt,
    dbt_project_copy,
    model_seconds,
)
from benchmarks.bulk import event_count, load_scaled
from benchmarks.common import Section, Stopwatch, scratch, section_command
from demo import traffic
from retrolytics.language.seeds import compile_seed

FUNNEL = "browse_to_purchase"
STEP_COUNTS = (5, 10, 20)
WINDOW_SECONDS = 7 * 86_400
REPEATS = 3
STEP_EVENTS_MODEL = "int_funnel_step_events"
# The build from the step events on (a full build: the plan is empty).
ATTEMPTS_MODELS = (
    "int_funnel_recompute_plan",
    "fct_funnel_entries_device",
    "fct_funnel_entries_user",
    # No session funnel here: built (empty) because the view below reads it.
    "fct_funnel_entries_session",
    "fct_funnel_entries",
)
MART_MODELS = (
    "int_funnel_changed_attempts",
    "int_funnel_changed_days",
    "mart_funnel_conversion",
    "mart_funnel_unit_steps",
)
FUNNEL_MODELS = (STEP_EVENTS_MODEL, *ATTEMPTS_MODELS, *MART_MODELS)
QUICK_EVENTS = 300_000
ISSUE_EVENTS = 10_000_000  # full mode's size since the bulk path (benchmarks/bulk.py)
EVENTS_VARIABLE = "RETROLYTICS_BENCH_FUNNEL_EVENTS"  # e.g. 10000000, the issue's size


def funnel_definitions(work: Path, steps: int) -> Path:
    """The shipped definitions with one funnel: browse_to_purchase, its steps repeated to
    ``steps`` (5 is the shipped funnel itself)."""
    folder = work / f"definitions_{steps}"
    if folder.exists():
        return folder
    shutil.copytree(SHIPPED_DEFINITIONS / "events", folder / "events")
    shipped = next(
        funnel
        for path in sorted((SHIPPED_DEFINITIONS / "funnels").glob("*.yml"))
        for funnel in yaml.safe_load(path.read_text())["funnels"]
        if funnel["name"] == FUNNEL
    )
    cycle = shipped["steps"]
    funnel = {**shipped, "steps": [cycle[i % len(cycle)] for i in range(steps)]}
    (folder / "funnels").mkdir()
    (folder / "funnels" / "bench.yml").write_text(
        yaml.safe_dump({"funnels": [funnel]}, sort_keys=False)
    )
    return folder


def build_ours(project: Path, url: str, definitions: Path) -> tuple[float, float, float]:
    """Compile the funnel, rebuild its step events, attempts and mart from scratch; model
    seconds of (step events, attempts, mart)."""
    compile_seed(definitions, project)
    dbt(project, url, ["seed", "-s", "funnels", "funnel_steps"])
    _, result = dbt(project, url, ["run", "-s", *FUNNEL_MODELS, "--full-refresh"])
    return (
        model_seconds(result, STEP_EVENTS_MODEL),
        sum(model_seconds(result, model) for model in ATTEMPTS_MODELS),
        sum(model_seconds(result, model) for model in MART_MODELS),
    )


def our_levels(url: str) -> dict[str, int]:
    """Person -> the furthest step of their best attempt."""
    with psycopg.connect(url) as conn:
        return dict(
            conn.execute(
                "select unit_id, max(furthest_step) from marts.fct_funnel_entries "
                "where funnel_name = %s and outcome <> 'excluded' group by unit_id",
                (FUNNEL,),
            ).fetchall()
        )


def _copy_csv(url: str, query: str, path: Path) -> int:
    """Write ``query``'s rows to CSV with a header; returns the rows."""
    rows = 0
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cur,
        path.open("wb") as out,
        cur.copy(f"copy ({query}) to stdout with (format csv, header)") as copy,
    ):
        for block in copy:
            out.write(block)
            rows += bytes(block).count(b"\n")
    return rows - 1


def export_steps(url: str, path: Path) -> int:
    """The funnel's step events (person, time in µs, step; an event matching two steps is two
    rows) to CSV; returns the rows."""
    return _copy_csv(
        url,
        "select coalesce(persons.person_id, 'device:' || events.anonymous_id) as unit_id, "
        "(extract(epoch from events.occurred_at) * 1000000)::bigint as ts_us, step "
        "from intermediate.int_funnel_step_events as events "
        "cross join generate_series(1, 20) as step "
        "left join intermediate.int_device_persons as persons "
        "on persons.anonymous_id = events.anonymous_id "
        "and events.occurred_at >= persons.valid_from and events.occurred_at < persons.valid_until "
        f"where events.funnel_name = '{FUNNEL}' and events.step_mask & (1 << (step - 1)) <> 0",
        path,
    )


def export_entries(url: str, path: Path) -> int:
    """Our attempts' entries (person, entry time in µs) to CSV; returns the rows."""
    return _copy_csv(
        url,
        "select unit_id, (extract(epoch from entered_at) * 1000000)::bigint as ts_us "
        f"from marts.fct_funnel_entries where funnel_name = '{FUNNEL}' "
        "and outcome <> 'excluded'",
        path,
    )


def step_event_count(url: str) -> int:
    """Rows of the funnel's step events (one per event, whatever steps it matches)."""
    with psycopg.connect(url) as conn:
        query = "select count(*) from intermediate.int_funnel_step_events where funnel_name = %s"
        return conn.execute(query, (FUNNEL,)).fetchone()[0]


def _condition_step(k: int) -> int:
    """Condition k of a repeated funnel asks for step ((k - 1) mod 5) + 1 of the export."""
    return (k - 1) % 5 + 1


class ChDB:
    name = "chDB windowFunnel"

    def __init__(self, folder: Path) -> None:
        from chdb import session

        self.session = session.Session(str(folder / "chdb"))

    def load(self, csv: Path) -> None:
        self.session.query(
            "create table steps (unit_id String, ts UInt64, step UInt8) "
            "engine = MergeTree order by (unit_id, ts)"
        )
        self.session.query(
            "insert into steps select unit_id, ts_us, step from file("
            f"'{csv}', 'CSVWithNames', 'unit_id String, ts_us UInt64, step UInt8')"
        )

    def levels(self, steps: int) -> dict[str, int]:
        conditions = ", ".join(f"step = {_condition_step(k)}" for k in range(1, steps + 1))
        window = WINDOW_SECONDS * 1_000_000
        result = self.session.query(
            f"select unit_id, windowFunnel({window})(ts, {conditions}) as level "
            "from steps group by unit_id having level > 0",
            "TabSeparated",
        )
        return {
            unit: int(level)
            for unit, level in (line.split("\t") for line in result.data().splitlines() if line)
        }

    def close(self) -> None:
        self.session.close()


class DuckDB:
    name = "DuckDB (ASOF joins)"

    def __init__(self, folder: Path) -> None:
        import duckdb

        self.connection = duckdb.connect(str(folder / "duck.db"))

    def load(self, csv: Path) -> None:
        self.connection.execute(
            f"create table steps as select * from read_csv('{csv}', header = true, "
            "columns = {'unit_id': 'VARCHAR', 'ts_us': 'BIGINT', 'step': 'UTINYINT'})"
        )

    def levels(self, steps: int, starts: Path | None = None) -> dict[str, int]:
        """Per person, the furthest step of the best chain from a step-1 event; with ``starts``
        (a CSV of unit_id, ts_us), only from those instants (our attempts' entries)."""
        window = WINDOW_SECONDS * 1_000_000
        first = (
            f"read_csv('{starts}', header = true, "
            "columns = {'unit_id': 'VARCHAR', 'ts_us': 'BIGINT'})"
            if starts
            else "steps where step = 1"
        )
        chain = [f"c1 as (select unit_id, ts_us as t1 from {first})"]
        for k in range(2, steps + 1):
            chain.append(
                f"c{k} as (select c.*, case when n.ts_us <= c.t1 + {window} then n.ts_us end "
                f"as t{k} from c{k - 1} as c asof left join "
                f"(select unit_id, ts_us from steps where step = {_condition_step(k)}) as n "
                f"on c.unit_id = n.unit_id and n.ts_us >= c.t{k - 1})"
            )
        reached = " + ".join(["1", *(f"(t{k} is not null)::int" for k in range(2, steps + 1))])
        query = (
            f"with {', '.join(chain)} select unit_id, max({reached}) from c{steps} group by unit_id"
        )
        return dict(self.connection.execute(query).fetchall())

    def close(self) -> None:
        self.connection.close()


def _median_seconds(function: Callable[[], dict[str, int]]) -> tuple[float, dict[str, int]]:
    seconds, result = [], {}
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def at_least(levels: dict[str, int], steps: int) -> list[int]:
    """Persons who reached at least step k, for k = 1..steps."""
    counts = Counter(levels.values())
    return [sum(n for level, n in counts.items() if level >= k) for k in range(1, steps + 1)]


def differences(ours: dict[str, int], theirs: dict[str, int]) -> tuple[int, int, int]:
    """Persons where ours is lower, equal and higher than the engine's furthest step."""
    lower = equal = higher = 0
    for unit in ours.keys() | theirs.keys():
        mine, other = ours.get(unit, 0), theirs.get(unit, 0)
        lower += mine < other
        equal += mine == other
        higher += mine > other
    return lower, equal, higher


def explained_by_reentry(
    ours: dict[str, int], theirs: dict[str, int], from_our_entries: dict[str, int]
) -> int:
    """Persons lower in ours for whom the engine's chain, started only at our attempts' entries,
    reaches exactly our step: its better window starts at a step-1 event inside one of our
    attempts, which our non-overlapping attempts do not take as a new start."""
    return sum(
        unit in ours and ours[unit] < level and from_our_entries.get(unit) == ours[unit]
        for unit, level in theirs.items()
    )


def run(quick: bool) -> Section:
    events = QUICK_EVENTS if quick else event_count(EVENTS_VARIABLE, ISSUE_EVENTS)
    days = 30
    size = f"{EVENTS_VARIABLE}={events} " if not quick and events != ISSUE_EVENTS else ""
    section = Section(
        "4. Funnels: the funnel models against chDB windowFunnel and DuckDB",
        section_command("funnel_engines", quick, size),
    )
    with scratch("engines") as settings, tempfile.TemporaryDirectory() as tmp:
        work, url = Path(tmp), settings.database_url
        stored, how = load_scaled(url, events, lambda n: traffic.generate_events(n, days, seed=23))
        project = dbt_project_copy(work)
        compile_seed(funnel_definitions(work, 5), project)
        dbt(project, url, ["seed"])
        # What the funnel models read, and nothing else (not paths or retention over 10M).
        ancestors = [f"+{model}" for model in FUNNEL_MODELS]
        _, upstream = dbt(project, url, ["run", "-s", *ancestors, "--exclude", *FUNNEL_MODELS])
        defined = model_seconds(upstream, "defined_events")
        identities = model_seconds(upstream, "int_identify_events")

        ours_seconds: dict[int, tuple[float, float, float]] = {}
        ours_levels: dict[int, dict[str, int]] = {}
        exported_of: dict[int, int] = {}
        for steps in STEP_COUNTS:
            ours_seconds[steps] = build_ours(project, url, funnel_definitions(work, steps))
            ours_levels[steps] = our_levels(url)
            export_entries(url, work / f"entries_{steps}.csv")
            exported_of[steps] = step_event_count(url)
            if steps == 5:
                with Stopwatch() as exporting:
                    exported = export_steps(url, work / "steps.csv")

        duck = DuckDB(work)
        engines = [ChDB(work), duck]
        load_seconds, engine_seconds, engine_levels = {}, {}, {}
        try:
            for engine in engines:
                with Stopwatch() as watch:
                    engine.load(work / "steps.csv")
                load_seconds[engine.name] = watch.seconds
                for steps in STEP_COUNTS:
                    seconds, levels = _median_seconds(lambda e=engine, s=steps: e.levels(s))
                    engine_seconds[engine.name, steps] = seconds
                    engine_levels[engine.name, steps] = levels
            # Not timed: the engines' chain from our entries only, to classify the differences.
            from_entries = {s: duck.levels(s, work / f"entries_{s}.csv") for s in STEP_COUNTS}
        finally:
            for engine in engines:
                engine.close()

        section.add(
            f"{stored} shop events over {days} days: {how}. Upstream, not compared: "
            f"defined_events {defined:.1f} s, int_identify_events {identities:.1f} s. The "
            f"{exported} step events of the 5-step funnel, with the person resolved, were "
            f"exported to CSV in {exporting.seconds:.1f} s."
        )
        section.lines += ["", "Build time (median of three for the engines):", ""]
        rows = [
            (
                "ours from the step events: attempts + mart (dbt, PostgreSQL)",
                "—",
                *(
                    f"{ours_seconds[s][1] + ours_seconds[s][2]:.2f} ({ours_seconds[s][1]:.2f} + "
                    f"{ours_seconds[s][2]:.2f})"
                    for s in STEP_COUNTS
                ),
            ),
            (
                "ours: the step events themselves (int_funnel_step_events, not compared)",
                "—",
                *(f"{ours_seconds[s][0]:.2f}" for s in STEP_COUNTS),
            ),
        ]
        for engine in engines:
            rows.append(
                (
                    engine.name,
                    f"{load_seconds[engine.name]:.2f}",
                    *(f"{engine_seconds[engine.name, s]:.2f}" for s in STEP_COUNTS),
                )
            )
        section.table(
            ("engine", "load the CSV (s)", *(f"{s} steps (s)" for s in STEP_COUNTS)), rows
        )
        five = ours_seconds[5][1] + ours_seconds[5][2]
        section.lines.append("")
        section.add(
            "ours (from the step events) ÷ engine at 5 steps: "
            + ", ".join(f"{e.name} {five / engine_seconds[e.name, 5]:.1f} times" for e in engines)
            + " (ours writes per-attempt facts and the per-day mart as well)"
        )
        section.add(
            "µs per step event (rows of int_funnel_step_events), ours from the step events: "
            + ", ".join(
                f"{s} steps {(ours_seconds[s][1] + ours_seconds[s][2]) / exported_of[s] * 1e6:.2f}"
                for s in STEP_COUNTS
            )
        )
        section.lines += ["", "Persons who reached at least step k (5 steps):", ""]
        shapes = [("ours", *at_least(ours_levels[5], 5))]
        shapes += [(e.name, *at_least(engine_levels[e.name, 5], 5)) for e in engines]
        section.table(("", *(f"step {k}" for k in range(1, 6))), shapes)
        section.lines += [""]
        section.add(
            "Re-entry: persons lower in ours for whom DuckDB's chain, started only at our "
            "attempts' entries, reaches exactly our step; the engines' better window starts at a "
            "step-1 event inside one of our attempts, which does not start another for us."
        )
        section.lines += [""]
        for engine in engines:
            for steps in STEP_COUNTS:
                ours, theirs = ours_levels[steps], engine_levels[engine.name, steps]
                lower, equal, higher = differences(ours, theirs)
                reentry = explained_by_reentry(ours, theirs, from_entries[steps])
                section.add(
                    f"- {steps} steps, ours vs {engine.name}: {equal} persons agree, {lower} "
                    f"lower in ours ({reentry} re-entry), {higher} higher in ours"
                )
        lower, equal, higher = differences(
            engine_levels[engines[1].name, 5], engine_levels[engines[0].name, 5]
        )
        section.add(f"- 5 steps, DuckDB vs chDB: {equal} persons agree, {lower + higher} differ")
    return section
