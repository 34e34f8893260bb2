"""Definitions: what a daily run of defined_events costs as history and definitions grow.

One scratch database holds 30 days of shop traffic plus one new day. Which history the warehouse
holds is set by detaching and attaching the daily partitions of raw.events (no reloading): for
1, 7 and 30 days of history, defined_events is built from scratch over that history, the new
day's partition is attached and the run Dagster makes for a daily partition is timed: the window
of the new day with its 24-hour lookback (so the day before is re-derived as well). That run
should cost the same whatever the history. Then, on 7 days of history, the same with 10, 100
and 500 definitions (the shipped ones and generated variants of them: selectors, paths, URLs,
texts and custom properties, as an analyst would write them). On each history, a new selective
definition (one product's add-to-cart clicks, well under 1 % of events) is derived by an hourly
run (the newest hour, no lookback), against the same run with nothing new and a full rebuild.
Last, on 30 days: one shipped definition is edited and the daily run re-derives it over all
history, against a full rebuild.

Times are dbt's own for the models (``execution_time``): a windowed run's is that of
defined_events plus the selector and signature matches, which such a run builds first for its
window; the
whole invocation, dbt's start-up and parsing included, is given next to it. Helpers here are
shared by the other dbt benchmarks.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from benchmarks.common import REPO, Section, Stopwatch, scratch, section_command
from demo.catalogue import CATEGORIES, PRODUCTS
from demo.traffic import generate_events
from ingestion import schema
from ingestion.loader import store_events
from retrolytics.language.seeds import CompiledSeed, compile_seed
from retrolytics.warehouse import runner

SHIPPED_DEFINITIONS = REPO / "definitions"
HISTORY_DAYS = (1, 7, 30)
DEFINITION_COUNTS = (10, 100, 500)
# What Dagster's daily partitions pass (orchestration/assets/dbt.py, WindowConfig).
LOOKBACK_HOURS = 24
RERUNS = 3
# The marts run with PostgreSQL's JIT off (dbt_project.yml); a copy without it measures JIT on.
JIT_HOOK = '+pre-hook: "set jit = off"'
# What a windowed run of defined_events builds (it refuses to run without its selector matches).
WINDOWED_MODELS = ("int_selector_matches", "int_signature_matches", "defined_events")
EDITED = "clicked_product_card"  # a selector definition: the costliest kind of condition
EDITED_SELECTOR = "div.product-grid div.product-card a.product-link"
QUERIES = ("running shoes", "boots", "tee", "backpack", "sun hat", "gift card")  # the shop's
NEW_SELECTIVE = {
    "name": "added_product_102_to_cart",
    "description": "A new, selective definition: one product's add-to-cart clicks.",
    "owner": "benchmarks",
    "match": [{"type": "click", "selector": 'button#add-to-cart[data-product-id="102"]'}],
}
PER_DAY_VARIABLE = "RETROLYTICS_BENCH_DEFINITIONS_PER_DAY"  # events per day, default 20000
# Set (e.g. 10000000, the issue's size): only the new definition over 30 days, at that size.
EVENTS_VARIABLE = "RETROLYTICS_BENCH_DEFINITIONS_EVENTS"


# -- shared by the dbt benchmarks -----------------------------------------------------------


def dbt_project_copy(work: Path, name: str = "dbt_project") -> Path:
    """A copy of the dbt project without its generated seeds, target and logs."""
    return Path(
        shutil.copytree(
            REPO / "dbt_project",
            work / name,
            ignore=shutil.ignore_patterns("target", "logs", "*.csv"),
        )
    )


# The measures both growth tables report, after the columns that say what grew.
GROWTH_COLUMNS = (
    "defined events",
    "build over history (s)",
    "daily run (s)",
    "rerun, median (s)",
    "rerun with JIT, median (s)",
    "daily run, whole invocation (s)",
)


def without_jit_hook(project: Path) -> Path:
    """Drop the models' ``set jit = off`` pre-hook from a project copy, to measure with JIT."""
    config = project / "dbt_project.yml"
    lines = config.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() != JIT_HOOK]
    if len(kept) != len(lines) - 1:
        raise RuntimeError(f"{config} should hold the line {JIT_HOOK!r} exactly once")
    config.write_text("".join(kept))
    return project


def load_events(database_url: str, events: Iterable[dict], chunk: int = 50_000) -> int:
    """Insert contract events straight into raw.events (no Kafka), a chunk per transaction."""
    stored = 0
    iterator = iter(events)
    with psycopg.connect(database_url, autocommit=True) as conn:
        schema.bootstrap(conn)
        while batch := list(islice(iterator, chunk)):
            stored += store_events(conn, batch)
    return stored


def dbt(
    project: Path,
    database_url: str,
    args: list[str],
    *,
    jit: bool | None = None,
    **window: Any,
) -> tuple[float, Any]:
    """Run one dbt command quietly; the invocation's wall seconds and dbt's result.

    ``jit`` True or False starts dbt's sessions with PostgreSQL's JIT compiler on or off
    (libpq's PGOPTIONS); a model's own hooks still have the last word.
    """
    options = os.environ.get("PGOPTIONS")
    if jit is not None:
        os.environ["PGOPTIONS"] = f"{options or ''} -c jit={'on' if jit else 'off'}".strip()
    try:
        with Stopwatch() as watch:
            result = runner.run_dbt(
                [*args, "--quiet"],
                database_url=database_url,
                project_dir=project,
                window=window,
            )
    finally:
        if options is None:
            os.environ.pop("PGOPTIONS", None)
        else:
            os.environ["PGOPTIONS"] = options
    return watch.seconds, result


def model_seconds(result: Any, model: str) -> float:
    """dbt's own execution time of one model in a run's result."""
    for node in result.result.results:
        if node.node.name == model:
            return node.execution_time
    raise RuntimeError(f"{model} did not run")


def windowed_seconds(result: Any) -> float:
    """dbt's own execution time of a windowed run of defined_events: its models together."""
    return sum(model_seconds(result, model) for model in WINDOWED_MODELS)


def day_window(day: date) -> dict[str, Any]:
    """The dbt vars of a daily partition run for ``day``."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return {
        "start": start.isoformat(),
        "end": (start + timedelta(days=1)).isoformat(),
        "lookback_hours": LOOKBACK_HOURS,
    }


def last_hour_window(day: date) -> dict[str, Any]:
    """The dbt vars of an hourly run over the last hour of ``day``, without lookback."""
    end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()}


def shipped_items() -> list[dict]:
    """The shipped event definitions as plain YAML items, in file order."""
    items: list[dict] = []
    for path in sorted((SHIPPED_DEFINITIONS / "events").glob("*.yml")):
        items.extend(yaml.safe_load(path.read_text())["events"])
    return items


def _variant(index: int) -> dict:
    """The index-th generated definition: one of a dozen shapes analysts write, with its own
    product, category, page or word, so every variant matches something different."""
    product = PRODUCTS[index % len(PRODUCTS)]
    category = CATEGORIES[index % len(CATEGORIES)]
    word = product.name.split()[0]
    shapes: list[tuple[str, list[dict]]] = [
        (
            "clicked_card",
            [
                {
                    "type": "click",
                    "selector": f'div.product-card[data-product-id="{product.id}"] a.product-link',
                }
            ],
        ),
        (
            "added",
            [{"type": "click", "selector": f'button#add-to-cart[data-product-id="{product.id}"]'}],
        ),
        ("viewed", [{"type": "pageview", "path": f"/product/{product.id}"}]),
        ("viewed_any", [{"type": "pageview", "path": {"starts_with": f"/product/{product.id}"}}]),
        ("clicked_text", [{"type": "click", "text": {"contains": word}}]),
        (
            "filtered",
            [
                {
                    "type": "click",
                    "selector": f'ul.category-filter a.filter-link[data-category="{category}"]',
                }
            ],
        ),
        (
            "listed",
            [
                {
                    "type": "pageview",
                    "path": "/products",
                    "url": {"regex": f"[?&]category={category}(&|$)"},
                }
            ],
        ),
        (
            "removed",
            [
                {
                    "type": "click",
                    "selector": f'form#cart div.cart-item[data-category="{category}"] '
                    "button.remove-item",
                }
            ],
        ),
        (
            "bought",
            [
                {
                    "type": "custom",
                    "name": "purchase_completed",
                    "properties": {"category": category},
                },
                {"type": "click", "selector": "#place-order", "path": {"starts_with": "/checkout"}},
            ],
        ),
        (
            "nav",
            [
                {
                    "type": "click",
                    "selector": f"header nav.main-nav > a.nav-link:nth-child({index % 4 + 1})",
                }
            ],
        ),
        (
            "reviews",
            [
                {
                    "type": "click",
                    "selector": "div.reviews a.review-link",
                    "href": {"regex": f"^/product/{product.id}/reviews$"},
                }
            ],
        ),
        (
            "searched",
            [
                {
                    "type": "custom",
                    "name": "search_performed",
                    "properties": {"query": QUERIES[index % len(QUERIES)]},
                }
            ],
        ),
    ]
    shape, match = shapes[index % len(shapes)]
    return {
        "name": f"variant_{index:04d}_{shape}",
        "description": f"Generated for the benchmarks ({shape}).",
        "owner": "benchmarks",
        "match": match,
    }


def definition_items(count: int) -> list[dict]:
    """``count`` definitions: the shipped ones first, then generated variants."""
    shipped = shipped_items()
    variants = (_variant(i) for i in range(max(0, count - len(shipped))))
    return [*shipped, *variants][:count]


def _funnel(index: int, names: list[str]) -> dict:
    """A generated funnel of 2 to 5 steps over the given definitions."""
    steps = [names[(index * 7 + k * 3) % len(names)] for k in range(2 + index % 4)]
    unique_steps = list(dict.fromkeys(steps))
    if len(unique_steps) < 2:
        unique_steps = names[:2]
    funnel: dict[str, Any] = {
        "name": f"funnel_{index:03d}",
        "description": "Generated for the benchmarks.",
        "owner": "benchmarks",
        "steps": unique_steps,
        "conversion_window": ("1h", "1d", "7d")[index % 3],
        "unit": ("device", "user")[index % 2],
    }
    if index % 2:
        funnel["breakdown"] = {"field": "utm_source", "attribution": "first_touch"}
    return funnel


def write_definitions(root: Path, count: int, funnels: int = 0) -> Path:
    """A definitions folder with ``count`` event definitions and ``funnels`` generated funnels."""
    items = definition_items(count)
    (root / "events").mkdir(parents=True, exist_ok=True)
    (root / "events" / "all.yml").write_text(yaml.safe_dump({"events": items}, sort_keys=False))
    if funnels:
        names = [item["name"] for item in items]
        (root / "funnels").mkdir(exist_ok=True)
        declared = [_funnel(i, names) for i in range(funnels)]
        (root / "funnels" / "all.yml").write_text(
            yaml.safe_dump({"funnels": declared}, sort_keys=False)
        )
    return root


# -- this benchmark -------------------------------------------------------------------------


def _partition_bounds(day: date) -> tuple[str, str]:
    return f"{day.isoformat()} 00:00:00+00", f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00"


def set_partitions(database_url: str, all_days: list[date], keep: set[date]) -> None:
    """Attach exactly the daily partitions of ``keep`` to raw.events; detach the others."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        attached = {
            row[0]
            for row in conn.execute(
                "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
                "where i.inhparent = 'raw.events'::regclass"
            )
        }
        for day in all_days:
            name = schema.partition_name(day)
            table = sql.Identifier("raw", name)
            if day in keep and name not in attached:
                low, high = _partition_bounds(day)
                conn.execute(
                    sql.SQL(
                        "alter table raw.events attach partition {} for values from ({}) to ({})"
                    ).format(table, sql.Literal(low), sql.Literal(high))
                )
            elif day not in keep and name in attached:
                conn.execute(sql.SQL("alter table raw.events detach partition {}").format(table))
            if day in keep:
                conn.execute(sql.SQL("analyze {}").format(table))


def _count(database_url: str, query: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query).fetchone()[0]


class Warehouse:
    """The scratch database, the dbt project copy and the days of traffic loaded."""

    def __init__(self, database_url: str, work: Path, days: list[date]) -> None:
        self.url = database_url
        self.project = dbt_project_copy(work)
        self.project_with_jit = without_jit_hook(dbt_project_copy(work, "dbt_project_with_jit"))
        self.days = days  # oldest first; the last one is the new day
        self.new_day = days[-1]

    def use(self, definitions_dir: Path) -> CompiledSeed:
        """Compile ``definitions_dir`` into the seeds and load them."""
        compiled = compile_seed(definitions_dir, self.project)
        compile_seed(definitions_dir, self.project_with_jit)
        dbt(self.project, self.url, ["seed", "--full-refresh"])
        # Reloading a seed drops the views on it (cascade): build them again.
        dbt(self.project, self.url, ["run", "-s", "+defined_events", "--exclude", "defined_events"])
        return compiled

    def build_history(self, history: int) -> tuple[float, float]:
        """defined_events from scratch over the last ``history`` days before the new day."""
        set_partitions(self.url, self.days, set(self.days[-1 - history : -1]))
        wall, result = dbt(
            self.project, self.url, ["run", "-s", "defined_events", "--full-refresh"]
        )
        set_partitions(self.url, self.days, set(self.days[-1 - history :]))
        return model_seconds(result, "defined_events"), wall

    def daily_run(self, jit: bool = False) -> tuple[float, float]:
        """The new day's partition run: (model seconds, invocation seconds). The project as
        shipped runs it without JIT; ``jit`` runs the copy without that hook, JIT on."""
        wall, result = dbt(
            self.project_with_jit if jit else self.project,
            self.url,
            ["run", "-s", *WINDOWED_MODELS],
            jit=jit,
            **day_window(self.new_day),
        )
        return windowed_seconds(result), wall

    def hourly_run(self) -> float:
        """The newest hour's run, no lookback: model seconds. Its window is small, so a new
        definition's derivation over all history is most of what it does."""
        _, result = dbt(
            self.project,
            self.url,
            ["run", "-s", *WINDOWED_MODELS],
            **last_hour_window(self.new_day),
        )
        return windowed_seconds(result)

    def daily_runs(self) -> tuple[str, ...]:
        """The new day's first run, then reruns, as columns: first run, median rerun, median
        rerun with JIT, first run's whole invocation."""
        model, wall = self.daily_run()
        reruns = statistics.median(self.daily_run()[0] for _ in range(RERUNS))
        with_jit = statistics.median(self.daily_run(jit=True)[0] for _ in range(RERUNS))
        return f"{model:.2f}", f"{reruns:.2f}", f"{with_jit:.2f}", f"{wall:.1f}"

    def defined_rows(self) -> int:
        return _count(self.url, "select count(*) from marts.defined_events")


def history_growth(warehouse: Warehouse, work: Path) -> tuple[list[tuple], list[tuple]]:
    """Per history: the daily runs, and the runs that derive NEW_SELECTIVE."""
    rows, new_rows = [], []
    with_new = with_new_definition(work)
    for history in HISTORY_DAYS:
        build, _ = warehouse.build_history(history)
        runs = warehouse.daily_runs()
        raw = _count(warehouse.url, "select count(*) from raw.events")
        rows.append((history, raw, warehouse.defined_rows(), f"{build:.2f}", *runs))
        new_rows.append((history, raw, *new_definition(warehouse, with_new, raw), f"{build:.2f}"))
    return rows, new_rows


def with_new_definition(work: Path) -> Path:
    """The shipped definitions plus NEW_SELECTIVE."""
    folder = Path(shutil.copytree(SHIPPED_DEFINITIONS, work / "definitions_new"))
    document = {"events": [NEW_SELECTIVE]}
    (folder / "events" / "zz_new.yml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def new_definition(warehouse: Warehouse, with_new: Path, raw: int) -> tuple[str, ...]:
    """Derive NEW_SELECTIVE with an hourly run; then the same run with nothing new. Columns:
    its rows (share of events), both runs' seconds and their difference. Leaves the shipped
    definitions derived."""
    warehouse.use(with_new)
    first = warehouse.hourly_run()
    matched = _count(
        warehouse.url,
        "select count(*) from marts.defined_events "
        f"where definition_name = '{NEW_SELECTIVE['name']}'",
    )
    again = statistics.median(warehouse.hourly_run() for _ in range(RERUNS))
    warehouse.use(SHIPPED_DEFINITIONS)
    warehouse.hourly_run()  # its rows go again
    return (
        f"{matched} ({100 * matched / raw:.2f} %)",
        f"{first:.2f}",
        f"{again:.2f}",
        f"{first - again:.2f}",
    )


def _new_definition_table(rows: list[tuple]) -> list[tuple]:
    """Add the ratios to the full rebuild (the last column of ``rows``)."""
    table = []
    for *values, rebuild in rows:
        first, difference = float(values[3]), float(values[5])
        ratio = f"{first / float(rebuild):.3f} / {difference / float(rebuild):.3f}"
        table.append((*values, rebuild, ratio))
    return table


def definitions_growth(warehouse: Warehouse, work: Path) -> list[tuple]:
    rows = []
    for count in DEFINITION_COUNTS:
        folder = write_definitions(work / f"definitions_{count}", count)
        conditions = warehouse.use(folder).conditions
        build, _ = warehouse.build_history(7)
        runs = warehouse.daily_runs()
        rows.append((count, conditions, warehouse.defined_rows(), f"{build:.2f}", *runs))
    return rows


def edited_copy(work: Path) -> Path:
    """The shipped definitions with EDITED's selector changed."""
    folder = Path(shutil.copytree(SHIPPED_DEFINITIONS, work / "definitions_edited"))
    for path in (folder / "events").glob("*.yml"):
        document = yaml.safe_load(path.read_text())
        for item in document["events"]:
            if item["name"] == EDITED:
                item["match"][0]["selector"] = EDITED_SELECTOR
                path.write_text(yaml.safe_dump(document, sort_keys=False))
                return folder
    raise RuntimeError(f"the shipped definitions no longer have {EDITED}")


def rederivation(warehouse: Warehouse, work: Path) -> list[tuple]:
    """On the 30-day warehouse: the daily run unchanged, with EDITED changed (as shipped; then
    changed back, with JIT: again one definition re-derived) and a full rebuild."""
    unchanged = [
        statistics.median(warehouse.daily_run(jit)[0] for _ in range(RERUNS))
        for jit in (False, True)
    ]
    edited = []
    for jit, folder in ((False, edited_copy(work)), (True, SHIPPED_DEFINITIONS)):
        warehouse.use(folder)
        edited.append(warehouse.daily_run(jit)[0])
    rows_of_edited = _count(
        warehouse.url,
        f"select count(*) from marts.defined_events where definition_name = '{EDITED}'",
    )
    rebuilt = [
        model_seconds(
            dbt(project, warehouse.url, ["run", "-s", "defined_events", "--full-refresh"], jit=jit)[
                1
            ],
            "defined_events",
        )
        for project, jit in ((warehouse.project, False), (warehouse.project_with_jit, True))
    ]
    return [
        ("daily run, nothing changed (median)", *_pair(unchanged), _ratio(unchanged, rebuilt)),
        (
            f"daily run with `{EDITED}` edited: re-derived over all history ({rows_of_edited} "
            "rows), the other definitions over the window",
            *_pair(edited),
            _ratio(edited, rebuilt),
        ),
        ("full rebuild (`--full-refresh`), every definition", *_pair(rebuilt), "1.00 / 1.00"),
    ]


def _pair(seconds: list[float]) -> tuple[str, str]:
    return f"{seconds[0]:.2f}", f"{seconds[1]:.2f}"


def _ratio(seconds: list[float], rebuilt: list[float]) -> str:
    return f"{seconds[0] / rebuilt[0]:.2f} / {seconds[1] / rebuilt[1]:.2f}"


def traffic(per_day: int, days: int) -> tuple[list[date], Iterator[dict]]:
    until = datetime.now(UTC).date()
    all_days = [until - timedelta(days=days - 1 - i) for i in range(days)]
    return all_days, generate_events(per_day * days, days, seed=11, until=until)


NEW_DEFINITION_COLUMNS = (
    "history days",
    "raw events",
    "rows of the new definition (share of events)",
    "hourly run with it (s)",
    "same run, nothing new, median (s)",
    "the new definition alone: difference (s)",
    "full rebuild (s)",
    "÷ full rebuild (run / difference)",
)


def run_new_definition_at_scale(events: int) -> Section:
    """Only the new-definition table, on 30 days of history at ``events`` events (the bulk
    path): the other tables rebuild and rerun per history and per definition count, hours at
    this size."""
    from benchmarks.bulk import load_scaled  # bulk imports load_events from this module

    history = max(HISTORY_DAYS)
    section = Section(
        "3b. Definitions: a new definition over all history at the issue's size",
        f"{EVENTS_VARIABLE}={events} python -m benchmarks --only definitions",
    )
    with scratch("definitions") as settings, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        days, _ = traffic(1, history + 1)
        stored, how = load_scaled(
            settings.database_url, events, lambda n: traffic(n // (history + 1), history + 1)[1]
        )
        warehouse = Warehouse(settings.database_url, work, days)
        shipped = warehouse.use(SHIPPED_DEFINITIONS).definitions
        build, _ = warehouse.build_history(history)
        raw = _count(warehouse.url, "select count(*) from raw.events")
        row = (history, raw, *new_definition(warehouse, with_new_definition(work), raw))
        section.add(
            f"{stored} shop events over {history + 1} days: {how}. A new selective definition "
            f"(`{NEW_SELECTIVE['name']}`) derived over all history by an hourly run (the newest "
            "hour, no lookback), beside the same run with nothing new and a full rebuild of the "
            f"{shipped} shipped definitions over the {history} days before the newest."
        )
        section.lines.append("")
        section.table(NEW_DEFINITION_COLUMNS, _new_definition_table([(*row, f"{build:.2f}")]))
    return section


def run(quick: bool) -> Section:
    if os.environ.get(EVENTS_VARIABLE) and not quick:
        from benchmarks.bulk import event_count

        return run_new_definition_at_scale(event_count(EVENTS_VARIABLE, 10_000_000))
    per_day = int(os.environ.get(PER_DAY_VARIABLE) or (3_000 if quick else 20_000))
    section = Section(
        "3. Definitions: the daily defined_events run as history and definitions grow",
        section_command("definitions", quick),
    )
    total_days = max(HISTORY_DAYS) + 1
    with scratch("definitions") as settings, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        days, events = traffic(per_day, total_days)
        with Stopwatch() as loading:
            stored = load_events(settings.database_url, events)
        section.add(
            f"{stored} shop events over {total_days} days (~{per_day}/day), inserted directly in "
            f"{loading.seconds:.0f} s; the daily run is the window of the newest day with a "
            f"{LOOKBACK_HOURS} h lookback, as Dagster's daily partition runs it; model seconds "
            "are dbt's execution time of defined_events (and, in a windowed run, of "
            "int_selector_matches and int_signature_matches, which it needs built first), the "
            "invocation includes dbt's start-up. "
            "The project runs its marts with PostgreSQL's JIT off (a pre-hook in "
            "dbt_project.yml); the JIT columns run a copy of the project without that hook."
        )
        warehouse = Warehouse(settings.database_url, work, days)
        shipped = warehouse.use(SHIPPED_DEFINITIONS).definitions
        started = time.perf_counter()
        history, new_rows = history_growth(warehouse, work)
        section.lines += ["", f"History ({shipped} shipped definitions):", ""]
        section.table(("history days", "raw events", *GROWTH_COLUMNS), history)
        section.lines += [
            "",
            f"A new selective definition (`{NEW_SELECTIVE['name']}`: "
            f"`{NEW_SELECTIVE['match'][0]['selector']}`) derived over all history by an hourly "
            "run (the newest hour, no lookback), beside the same run with nothing new and a full "
            f"rebuild of the {shipped} shipped definitions:",
            "",
        ]
        section.table(NEW_DEFINITION_COLUMNS, _new_definition_table(new_rows))
        rederive = rederivation(warehouse, work)
        section.lines += ["", "Definitions (7 days of history):", ""]
        section.table(
            ("definitions", "conditions", *GROWTH_COLUMNS), definitions_growth(warehouse, work)
        )
        section.lines += ["", "Re-deriving one edited definition (30 days of history):", ""]
        section.table(
            ("run", "as shipped (s)", "with JIT (s)", "÷ full rebuild (shipped / JIT)"), rederive
        )
        section.lines.append("")
        section.add(f"Measurements took {time.perf_counter() - started:.0f} s.")
    return section
