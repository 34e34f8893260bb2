"""Benchmark data at the issues' sizes: a sample through the loader's row path, then copies.

Generating, validating and inserting events from Python runs at 2k to 13k events/s on this
machine, so 10M events took 13 to 90 minutes before a benchmark could start. The bulk path
loads a sample the way every benchmark does (``load_events``: the contract's validation and the
rows the loader writes), then multiplies it inside PostgreSQL. Each copy is the same traffic by
other people: device, user and session ids get the copy's suffix (``~1``, ``~2``, ...) and
event ids the copy's own (``copy_event_id``, as the generator's copies), so devices, sessions,
persons and funnel attempts scale with the copies, and every row is one the loader could have
written. What does not scale: the calendar (the same days and hours) and
the variety of pages and campaigns (the sample's).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import psycopg

from benchmarks.bench_definitions import load_events
from benchmarks.common import Stopwatch

SAMPLE_EVENTS = 1_000_000

# demo.traffic.to_kafka.copy_event_id in SQL: the id's first 8 hex digits xor the copy number.
COPY_EVENT_ID_SQL = """overlay(
        event_id::text
        placing lpad(
            to_hex(
                (('x' || left(event_id::text, 8))::bit(32) # %(copy)s::bigint::bit(32))::integer
            ),
            8,
            '0'
        )
        from 1 for 8
    )::uuid"""

# Every column of raw.events but loaded_at (the copy's own insert time).
_COPY_SQL = f"""
insert into raw.events (
    event_id, anonymous_id, occurred_at, received_at, type, name, user_id, session_id,
    page_url, page_path, page_title, referrer, target_tag, target_id, target_classes,
    target_text, target_href, hierarchy, properties, context, extra, source_partition,
    source_offset
)
select
    {COPY_EVENT_ID_SQL}, anonymous_id || %(suffix)s, occurred_at,
    received_at, type, name, user_id || %(suffix)s, session_id || %(suffix)s, page_url,
    page_path, page_title, referrer, target_tag, target_id, target_classes, target_text,
    target_href, hierarchy, properties, context, extra, source_partition, source_offset
from bulk_sample
"""


def event_count(variable: str, default: int) -> int:
    """The number of events a benchmark loads: ``variable`` from the environment, or default."""
    value = os.environ.get(variable, str(default))
    if not value.isdigit() or int(value) < 10_000:
        raise ValueError(f"{variable} must be a whole number of events >= 10000; got {value!r}")
    return int(value)


def load_scaled(
    database_url: str,
    events: int,
    generate: Callable[[int], Iterable[dict]],
    sample: int = SAMPLE_EVENTS,
) -> tuple[int, str]:
    """Load about ``events`` events: ``generate(n)`` of them, n = min(events, sample), through
    ``load_events``, then as many copies as make up the rest. Returns (rows stored, how)."""
    with Stopwatch() as loading:
        stored = load_events(database_url, generate(min(events, sample)))
    copies = max(1, round(events / stored))
    how = f"{stored} generated events inserted directly in {loading.seconds:.0f} s"
    if copies == 1:
        return stored, how
    with Stopwatch() as copying, psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create temporary table bulk_sample as select * from raw.events")
        for copy in range(1, copies):
            conn.execute(_COPY_SQL, {"suffix": f"~{copy}", "copy": copy})
            print(f"  bulk copy {copy} of {copies - 1} done", flush=True)
        conn.execute("analyze raw.events")
        total = conn.execute("select count(*) from raw.events").fetchone()[0]
    how += (
        f", then {copies - 1} copies by other devices and persons made in PostgreSQL in "
        f"{copying.seconds:.0f} s (benchmarks/bulk.py)"
    )
    return total, how
