"""Loader throughput against the ceiling of a plain COPY of the same rows into the same table.

The loader runs as its own process (``retrolytics load --drain``) so its CPU time and peak memory
come from the kernel's accounting of that process alone; PostgreSQL's CPU is the sum over its
processes during the run. Then the same rows are exported, the table emptied, and the rows
COPYed back from the file: the work no loader can beat. The indexes defined_events finds a
condition's events by (ingestion.schema.ROUTE_INDEXES) cost load time and disk: their sizes are
read, then the COPY and the drain are repeated without them. Last, the drain is repeated
in-process under pyinstrument to name where the loader's time goes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.common import Section, Stopwatch, scratch, section_command
from demo import traffic
from ingestion import schema
from ingestion.contract import EVENT_COLUMNS
from ingestion.loader import Loader
from ingestion.settings import Settings

_COLUMNS = ", ".join(EVENT_COLUMNS)


def postgres_cpu_seconds() -> float:
    """CPU seconds used so far by every process named postgres on this machine."""
    ticks = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name.startswith("postgres"):
            fields = stat[stat.rindex(")") + 2 :].split()
            # utime, stime, and the cutime, cstime of backends that exited and were reaped
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_loader_process(settings: Settings, workers: int = 1) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (the workers' included: wait4 counts reaped children), peak RSS
    in MiB of the biggest process and the summary line of one drain."""
    env = {
        **os.environ,
        "RETROLYTICS_DATABASE_URL": settings.database_url,
        # Else the loader takes the local stack's own loader login: another database.
        "RETROLYTICS_LOADER_DATABASE_URL": settings.loader_url,
        "RETROLYTICS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "RETROLYTICS_TOPIC": settings.topic,
        "RETROLYTICS_CONSUMER_GROUP": settings.consumer_group,
    }
    with Stopwatch() as watch:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "retrolytics.cli", "load", "--drain"),
                *("--batch-size", "10000", "--workers", str(workers)),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        summary = process.stdout.read().strip()
        _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"loader exited with status {status}")
    return watch.seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024, summary


def copy_ceiling(database_url: str) -> tuple[float, int]:
    """Export the loaded rows, empty the table, COPY them back; seconds of that COPY, rows."""
    with tempfile.TemporaryFile() as spool, psycopg.connect(database_url) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(f"copy (select {_COLUMNS} from raw.events) to stdout") as out,
        ):
            for block in out:
                spool.write(block)
        conn.execute("truncate raw.events")
        conn.commit()
        spool.seek(0)
        with Stopwatch() as watch:
            with conn.cursor() as cur, cur.copy(f"copy raw.events ({_COLUMNS}) from stdin") as copy:
                while block := spool.read(1 << 20):
                    copy.write(block)
            conn.commit()
        rows = conn.execute("select count(*) from raw.events").fetchone()[0]
    return watch.seconds, rows


# The index of raw.events a partition's index is the copy of: a partition's copy is named after it
# (events_20261130_pkey, events_20261130_type), so its name without the day.
INDEX_FAMILY = "regexp_replace(ic.relname, '^events_[0-9]{8}', 'events')"
# Every index of every partition of raw.events, as `ic`.
PARTITION_INDEXES = (
    "from pg_inherits p join pg_index i on i.indrelid = p.inhrelid "
    "join pg_class ic on ic.oid = i.indexrelid where p.inhparent = 'raw.events'::regclass"
)


def disk_use(database_url: str) -> list[tuple[str, str]]:
    """MiB of raw.events' rows, its primary key and each route index, over all partitions."""
    query = f"""
        select {INDEX_FAMILY}, sum(pg_relation_size(i.indexrelid))
        {PARTITION_INDEXES}
        group by 1
    """
    with psycopg.connect(database_url) as conn:
        table = conn.execute(
            "select sum(pg_table_size(inhrelid)) from pg_inherits "
            "where inhparent = 'raw.events'::regclass"
        ).fetchone()[0]
        indexes = dict(conn.execute(query).fetchall())
    mib = 1 << 20
    rows = [("raw.events rows (heap and TOAST)", f"{table / mib:.1f}")]
    rows += [(f"index {name}", f"{size / mib:.1f}") for name, size in sorted(indexes.items())]
    route = sum(size for name, size in indexes.items() if name in schema.ROUTE_INDEXES)
    rows.append(("**route indexes ÷ rows**", f"**{route / table:.2f}**"))
    return rows


def drop_route_indexes(database_url: str) -> None:
    """Drop every partition's route indexes (the days loaded already have their partitions)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        indexes = conn.execute(
            f"select ic.relname {PARTITION_INDEXES} and {INDEX_FAMILY} = any(%s)",
            (list(schema.ROUTE_INDEXES),),
        ).fetchall()
        for (name,) in indexes:
            conn.execute(sql.SQL("drop index raw.{}").format(sql.Identifier(name)))


def forget_the_load(database_url: str) -> None:
    """Empty what a drain wrote, its offsets included, so the next drain reads the topic again."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if conn.execute("select to_regclass('raw.events')").fetchone()[0] is None:
            return  # the first drain's loader bootstraps the schema
        conn.execute("truncate raw.events, raw.ingest_offsets, raw.dead_letters")


def timed_drain(settings: Settings, workers: int) -> tuple[float, float, float, int, str]:
    """Wall, loader CPU, PostgreSQL CPU seconds, peak MiB and summary of one fresh drain."""
    forget_the_load(settings.database_url)
    cpu_before = postgres_cpu_seconds()
    wall, cpu, peak_mib, summary = run_loader_process(settings, workers)
    return wall, cpu, postgres_cpu_seconds() - cpu_before, peak_mib, summary


def top_costs(settings: Settings, limit: int = 8) -> list[tuple[str, str]]:
    """Drain the topic again in-process under pyinstrument; the functions with most self time."""
    from pyinstrument import Profiler

    forget_the_load(settings.database_url)
    profiler = Profiler(interval=0.005)
    loader = Loader(settings, batch_size=10_000)
    profiler.start()
    try:
        loader.drain()
    finally:
        profiler.stop()
        loader.close()
    session = profiler.last_session
    totals: Counter[str] = Counter()

    def walk(frame, owner: str) -> None:
        # pyinstrument books a function's own time on a synthetic "[self]" child frame.
        if not frame.function.startswith("["):
            owner = f"{frame.function} ({Path(frame.file_path_short or '?').name}:{frame.line_no})"
        totals[owner] += frame.total_self_time
        for child in frame.children:
            walk(child, owner)

    walk(session.root_frame(), "?")
    whole = sum(totals.values()) or 1.0
    return [(name, f"{100 * seconds / whole:.0f}%") for name, seconds in totals.most_common(limit)]


def run(quick: bool) -> Section:
    events = 100_000 if quick else 1_000_000
    section = Section(
        "1. Loader throughput against plain COPY",
        section_command("loader", quick),
    )
    with scratch("loader") as settings:
        section.add(traffic.produce(settings, events=events, days=30, seed=42))
        drains = {workers: timed_drain(settings, workers) for workers in (1, 2)}
        for workers, (*_, summary) in drains.items():
            section.add(f"loader, {workers} worker(s): {summary}")
        # Last, so the table it empties and refills holds exactly the rows a drain stored.
        copy_seconds, rows = copy_ceiling(settings.database_url)
        per_100k = 100_000 / rows
        rows_of_table: list[tuple] = [
            ("messages on the topic", events),
            ("rows in raw.events", rows),
            ("plain COPY of the same rows (s)", f"{copy_seconds:.1f}"),
            ("plain COPY rows/s", f"{rows / copy_seconds:.0f}"),
        ]
        for workers, (wall, cpu, postgres_cpu, peak_mib, _) in drains.items():
            label = f"{workers} worker{'s' if workers > 1 else ''}"
            rows_of_table += [
                (f"{label}: loader wall time (s)", f"{wall:.1f}"),
                (f"{label}: loader events/s", f"{rows / wall:.0f}"),
                (f"**{label}: loader time / COPY time**", f"**{wall / copy_seconds:.2f}**"),
                (f"{label}: loader CPU per 100k events (s)", f"{cpu * per_100k:.2f}"),
                (f"{label}: PostgreSQL CPU per 100k events (s)", f"{postgres_cpu * per_100k:.2f}"),
                (f"{label}: peak RSS of one process (MiB)", peak_mib),
            ]
        rows_of_table.append(
            ("speed-up of 2 workers over 1", f"{drains[1][0] / drains[2][0]:.2f}x")
        )
        section.table(("measure", "value"), rows_of_table)
        section.lines += ["", "Disk used after the load (MiB, all daily partitions):", ""]
        section.table(("relation", "MiB"), disk_use(settings.database_url))
        drop_route_indexes(settings.database_url)
        bare_copy, _ = copy_ceiling(settings.database_url)
        bare_wall, *_ = timed_drain(settings, 1)
        wall = drains[1][0]
        section.lines += [
            "",
            "The index cost: the same COPY and 1-worker load without the route indexes "
            "(ingestion.schema.ROUTE_INDEXES), one after the other:",
            "",
        ]
        section.table(
            ("", "with the route indexes", "without", "with ÷ without"),
            [
                (
                    "loader wall time (s)",
                    f"{wall:.1f}",
                    f"{bare_wall:.1f}",
                    f"{wall / bare_wall:.2f}",
                ),
                (
                    "loader µs per event",
                    f"{1e6 * wall / rows:.0f}",
                    f"{1e6 * bare_wall / rows:.0f}",
                    "",
                ),
                (
                    "plain COPY (s)",
                    f"{copy_seconds:.1f}",
                    f"{bare_copy:.1f}",
                    f"{copy_seconds / bare_copy:.2f}",
                ),
                (
                    "loader time ÷ COPY time",
                    f"{wall / copy_seconds:.2f}",
                    f"{bare_wall / bare_copy:.2f}",
                    "",
                ),
            ],
        )
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            schema.bootstrap(conn)  # the indexes back, for the profile below
        section.lines.append("")
        section.lines.append(
            "Where the loader's own time goes (pyinstrument, self time, 1 worker, in-process):"
        )
        section.lines.append("")
        section.table(("function", "share of samples"), top_costs(settings))
    return section
