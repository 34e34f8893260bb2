"""Making test data: ``retrolytics generate`` to Kafka, the exact simulation against its fast path.

The exact path simulates every event (sessions, pages, clicks: ~30 µs an event). The fast path
(``--sample``) simulates a tenth and produces the rest as copies by other devices and persons
(``demo.traffic.copies_of``), the same copies the bulk path (``benchmarks/bulk.py``) makes in
PostgreSQL. Both are timed from the call to the last acknowledgement (acks=all, idempotent).
"""

from __future__ import annotations

from benchmarks.common import Section, Stopwatch, scratch, section_command
from demo import traffic


def run(quick: bool) -> Section:
    events = 200_000 if quick else 1_000_000
    section = Section(
        "11. Making test data: the generator to Kafka",
        section_command("generator", quick),
    )
    rows = []
    for label, sample in (
        ("exact (every event simulated)", None),
        ("--sample, a tenth", events // 10),
    ):
        with scratch("generator") as settings, Stopwatch() as watch:
            summary = traffic.produce(settings, events=events, days=30, seed=42, sample=sample)
        section.add(f"{label}: {summary}")
        rows.append((label, events, f"{watch.seconds:.1f}", f"{events / watch.seconds:.0f}"))
    section.table(("path", "events", "seconds", "events/s"), rows)
    return section
