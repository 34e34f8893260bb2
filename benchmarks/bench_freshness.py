"""Freshness: how long from produce to the row being visible in raw.events, at a steady rate.

Rates of 5k events/s (the first test) and 20k (issue 17's bar: p99 under 1 s), the loader with
one worker and with two; at 20k also with the trigram index on the days being loaded, as before
it waited for a day to cool (ingestion.schema.GIN_AFTER).

A stream loader (``retrolytics load``) runs as its own process. One thread produces at a fixed
rate and remembers, for every acknowledged message, when it was handed to the producer; another
polls ``raw.ingest_offsets`` every few milliseconds. The offsets are committed in the same
transaction as the rows, so the first poll that sees a message's offset covered is the moment
its row became visible.
"""

from __future__ import annotations

import bisect
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
from confluent_kafka import Producer

from benchmarks.common import Section, scratch, section_command
from demo import traffic
from demo.traffic.to_kafka import copies_of
from ingestion import schema
from ingestion.settings import Settings
from ingestion.topics import RELIABLE_PRODUCER_CONFIG

TICK = 0.01  # seconds between produce bursts
POLL = 0.005  # seconds between visibility polls


def produce_steadily(
    settings: Settings, payloads: list[tuple[bytes, bytes]], sent: dict, rate: int
) -> float:
    """Produce at ``rate``; fills sent[(partition, offset)] = monotonic send time. Returns the
    rate reached."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, **RELIABLE_PRODUCER_CONFIG})
    per_tick = int(rate * TICK)
    began = time.monotonic()
    for start in range(0, len(payloads), per_tick):
        due = began + (start // per_tick) * TICK
        while (pause := due - time.monotonic()) > 0:
            time.sleep(pause)
        for key, value in payloads[start : start + per_tick]:
            stamp = time.monotonic()

            def on_delivery(error, message, stamp=stamp) -> None:
                if error is None:
                    sent[(message.partition(), message.offset())] = stamp

            producer.produce(settings.topic, value=value, key=key, on_delivery=on_delivery)
        producer.poll(0)
    producer.flush(60)
    return len(payloads) / (time.monotonic() - began)


def watch_offsets(database_url: str, seen: list, stop: threading.Event) -> None:
    """Append (monotonic time, {partition: next_offset}) whenever the stored offsets move."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        last: dict[int, int] = {}
        while not stop.is_set():
            current = dict(
                conn.execute("select partition, next_offset from raw.ingest_offsets").fetchall()
            )
            if current != last:
                seen.append((time.monotonic(), current))
                last = current
            time.sleep(POLL)


def delays(sent: dict, seen: list) -> list[float]:
    """For each acknowledged message, the first moment its partition's stored offset passed it."""
    moments: dict[int, list[float]] = {}
    reached: dict[int, list[int]] = {}
    for moment, offsets in seen:  # in time order; a partition's stored offset only grows
        for partition, next_offset in offsets.items():
            if not reached.get(partition) or reached[partition][-1] < next_offset:
                reached.setdefault(partition, []).append(next_offset)
                moments.setdefault(partition, []).append(moment)
    result = []
    for (partition, offset), stamp in sent.items():
        ends = reached.get(partition, [])
        index = bisect.bisect_right(ends, offset)  # the first end beyond the offset
        if index < len(ends):
            result.append(moments[partition][index] - stamp)
    return result


def index_the_hot_days(database_url: str) -> None:
    """The trigram index on the days the run loads (its events are of the last two days), which
    the loader's partitions otherwise go without until they cool."""
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=back) for back in range(4)]
    trigrams = "events_hierarchy_trigrams"
    with psycopg.connect(database_url, autocommit=True) as conn:
        schema.ensure_partitions(conn, days)
        for day in days:
            partition = schema.partition_name(day)
            conn.execute(
                f"create index if not exists {schema.route_index_name(partition, trigrams)} "
                f"on raw.{partition} {schema.ROUTE_INDEXES[trigrams]}"
            )


def measure(
    settings: Settings,
    seconds: int,
    rate: int,
    workers: int,
    max_wait_ms: int,
    hot_trigrams: bool = False,
) -> tuple[float, list[float], int]:
    env = {
        **os.environ,
        "RETROLYTICS_DATABASE_URL": settings.database_url,
        "RETROLYTICS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "RETROLYTICS_TOPIC": settings.topic,
        "RETROLYTICS_CONSUMER_GROUP": settings.consumer_group,
    }
    loader = subprocess.Popen(
        [
            *(sys.executable, "-m", "retrolytics.cli", "load"),
            *("--max-wait-ms", str(max_wait_ms), "--workers", str(workers)),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_bootstrap(settings.database_url)
        if hot_trigrams:
            index_the_hot_days(settings.database_url)
        time.sleep(8)  # the consumer group's first assignment
        events = rate * seconds  # a tenth simulated, the rest its copies (retrolytics generate)
        sample = list(traffic.generate_events(events // 10, days=2, seed=seconds + max_wait_ms))
        payloads = list(copies_of(sample, events))
        sent: dict = {}
        seen: list = []
        stop = threading.Event()
        watcher = threading.Thread(target=watch_offsets, args=(settings.database_url, seen, stop))
        watcher.start()
        reached = produce_steadily(settings, payloads, sent, rate)
        time.sleep(5)
        stop.set()
        watcher.join()
    finally:
        loader.terminate()
        loader.wait(30)
    return reached, delays(sent, seen), len(sent)


def _wait_for_bootstrap(database_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as conn:
            if conn.execute("select to_regclass('raw.ingest_offsets')").fetchone()[0]:
                return
        time.sleep(0.2)
    raise RuntimeError("the loader did not bootstrap the schema")


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


SETTINGS = (  # events/s, loader workers, --max-wait-ms, trigram index on the days loaded
    (5_000, 1, 1000, False),
    (5_000, 1, 200, False),
    (20_000, 1, 200, False),
    (20_000, 2, 200, False),
    (20_000, 1, 200, True),
    (20_000, 2, 200, True),
)


def run(quick: bool) -> Section:
    seconds = 15 if quick else 60
    section = Section(
        "2. Freshness at a steady 5k and 20k events/s",
        section_command("freshness", quick),
    )
    rows = []
    for rate, workers, max_wait_ms, hot_trigrams in SETTINGS:
        with scratch("freshness") as settings:
            reached, measured, acknowledged = measure(
                settings, seconds, rate, workers, max_wait_ms, hot_trigrams
            )
        visible = len(measured)
        rows.append(
            (
                rate,
                workers,
                max_wait_ms,
                "yes" if hot_trigrams else "no",
                f"{reached:.0f}",
                acknowledged,
                visible,
                f"{1000 * _quantile(measured, 0.50):.0f}",
                f"{1000 * _quantile(measured, 0.99):.0f}",
                f"{1000 * max(measured):.0f}",
            )
        )
    section.add(f"{seconds} s of produce per setting; delay = produce call to row visible.")
    section.table(
        (
            "target events/s",
            "loader workers",
            "loader --max-wait-ms",
            "trigram index on the days loaded",
            "produced events/s",
            "acknowledged",
            "seen in raw.events",
            "p50 delay (ms)",
            "p99 delay (ms)",
            "max (ms)",
        ),
        rows,
    )
    return section
