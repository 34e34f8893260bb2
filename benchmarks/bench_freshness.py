"""Freshness: how long from produce to the row being visible in raw.events, at a steady rate.

A stream loader (``retrolytics load``) runs as its own process. One thread produces at a fixed
rate and remembers, for every acknowledged message, when it was handed to the producer; another
polls ``raw.ingest_offsets`` every few milliseconds. The offsets are committed in the same
transaction as the rows, so the first poll that sees a message's offset covered is the moment
its row became visible.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time

import psycopg
from confluent_kafka import Producer

from benchmarks.common import Section, scratch
from demo import traffic
from ingestion.settings import Settings
from ingestion.topics import RELIABLE_PRODUCER_CONFIG

RATE = 5_000  # events per second
TICK = 0.01  # seconds between produce bursts
POLL = 0.005  # seconds between visibility polls


def produce_steadily(settings: Settings, payloads: list[tuple[bytes, bytes]], sent: dict) -> float:
    """Produce at RATE; fills sent[(partition, offset)] = monotonic send time. Returns the rate."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, **RELIABLE_PRODUCER_CONFIG})
    per_tick = int(RATE * TICK)
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
    result = []
    for (partition, offset), stamp in sent.items():
        for moment, offsets in seen:
            if offsets.get(partition, 0) > offset:
                result.append(moment - stamp)
                break
    return result


def measure(settings: Settings, seconds: int, max_wait_ms: int) -> tuple[float, list[float], int]:
    env = {
        **os.environ,
        "RETROLYTICS_DATABASE_URL": settings.database_url,
        "RETROLYTICS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "RETROLYTICS_TOPIC": settings.topic,
        "RETROLYTICS_CONSUMER_GROUP": settings.consumer_group,
    }
    loader = subprocess.Popen(
        [sys.executable, "-m", "retrolytics.cli", "load", "--max-wait-ms", str(max_wait_ms)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_bootstrap(settings.database_url)
        time.sleep(8)  # the consumer group's first assignment
        payloads = [
            (e["anonymous_id"].encode(), json.dumps(e).encode())
            for e in traffic.generate_events(RATE * seconds, days=2, seed=seconds + max_wait_ms)
        ]
        sent: dict = {}
        seen: list = []
        stop = threading.Event()
        watcher = threading.Thread(target=watch_offsets, args=(settings.database_url, seen, stop))
        watcher.start()
        rate = produce_steadily(settings, payloads, sent)
        time.sleep(5)
        stop.set()
        watcher.join()
    finally:
        loader.terminate()
        loader.wait(30)
    return rate, delays(sent, seen), len(sent)


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


def run(quick: bool) -> Section:
    seconds = 15 if quick else 60
    section = Section(
        "2. Freshness at a steady 5k events/s",
        f"python -m benchmarks {'--quick ' if quick else ''}--only freshness",
    )
    rows = []
    for max_wait_ms in (1000, 200):
        with scratch("freshness") as settings:
            rate, measured, acknowledged = measure(settings, seconds, max_wait_ms)
        visible = len(measured)
        rows.append(
            (
                max_wait_ms,
                f"{rate:.0f}",
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
            "loader --max-wait-ms",
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
