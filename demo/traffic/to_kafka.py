"""``retrolytics generate``: the generated traffic produced to Kafka, keyed by device."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import msgspec
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from demo.traffic.schedule import TrafficStats, check_arguments, generate
from ingestion.progress import Progress
from ingestion.settings import Settings
from ingestion.topics import RELIABLE_PRODUCER_CONFIG, ensure_topic


def _delivery_report(failures: list[KafkaError]) -> Callable[[KafkaError | None, Message], None]:
    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    return on_delivery


_encode = msgspec.json.Encoder().encode  # 2 µs an event where json.dumps took 13


def copies_of(sample: list[dict[str, Any]], events: int) -> Iterator[tuple[bytes, bytes]]:
    """``events`` messages (key, value): the sample, then copies of it by other people until
    there are enough.

    The same transformation as the benchmarks' bulk path (``benchmarks/bulk.py``): copy k gives
    device, user and session ids the suffix ``~k`` and each event the id md5(event_id || "~k"),
    so a duplicate in the sample stays a duplicate in every copy, and devices, sessions, persons
    and funnel attempts grow with the copies. Times, pages and campaigns are the sample's. Each
    sample event is encoded once, with its ids left as slots (``_Template``): a copy is a join.
    """
    templates = [_Template.of(event) for event in sample[:events]]
    produced = 0
    for copy in itertools.count():
        suffix = f"~{copy}".encode() if copy else b""
        for template in templates[: events - produced]:
            yield template.copy(suffix)
        produced += min(len(templates), events - produced)
        if produced >= events:
            return


_SLOT = "\ue000"  # a private-use character: in no generated event, one UTF-8 sequence encoded
_COPIED_IDS = ("anonymous_id", "user_id", "session_id")


@dataclass(frozen=True)
class _Template:
    """A sample event encoded once: the JSON around its ids, and the ids."""

    parts: list[bytes]  # the JSON, cut where the ids go
    slots: list[tuple[str, bytes]]  # the ids in the JSON's order: field name, the sample's value
    key: bytes  # the device id: the message's key

    @classmethod
    def of(cls, event: dict[str, Any]) -> _Template:
        slots = [
            (name, value.encode())
            for name, value in event.items()
            if name == "event_id" or (name in _COPIED_IDS and value is not None)
        ]
        slotted = {**event, **dict.fromkeys((name for name, _ in slots), _SLOT)}
        parts = _encode(slotted).split(_SLOT.encode())
        return cls(parts, slots, event["anonymous_id"].encode())

    def copy(self, suffix: bytes) -> tuple[bytes, bytes]:
        pieces = [self.parts[0]]
        for (name, value), part in zip(self.slots, self.parts[1:], strict=True):
            if name != "event_id":
                value += suffix
            elif suffix:
                # md5 as in the bulk path: a derived id, not a secret.
                digest = hashlib.md5(value + suffix).hexdigest()
                value = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"
                value = value.encode()
            pieces += (value, part)
        return self.key + suffix, b"".join(pieces)


def produce(
    settings: Settings,
    events: int,
    days: int = 7,
    seed: int = 1,
    until: date | None = None,
    report: Callable[[str], None] | None = None,
    report_every_s: float = 10.0,
    sample: int | None = None,
) -> str:
    """Generate ``events`` events and produce them to ``settings.topic``, keyed by device.

    With ``sample``, only that many are generated (the simulation costs ~30 µs an event) and the
    rest are its copies by other people (``copies_of``): the fast path for test and benchmark
    data. ``report``, if given, receives a progress line (rate and ETA) every ``report_every_s``.
    Raises RuntimeError naming the Kafka error if the topic cannot be reached or any message is
    not acknowledged. Returns a one-line summary.
    """
    check_arguments(events, days)
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be at least 1 event; got {sample}")
    began = time.monotonic()
    try:
        ensure_topic(settings.kafka_bootstrap, settings.topic)
    except KafkaException as exc:
        raise RuntimeError(
            f"cannot prepare topic {settings.topic} on Kafka at {settings.kafka_bootstrap}: {exc}"
        ) from exc
    # No message timestamps from the simulated clock: the broker would apply its retention to
    # them and could delete week-old events right away. Kafka stamps the produce time instead.
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            **RELIABLE_PRODUCER_CONFIG,
            # Reports of failures only: a Python callback per acknowledged message cost ~1 µs.
            "delivery.report.only.error": True,
        }
    )
    failures: list[KafkaError] = []
    on_delivery = _delivery_report(failures)
    stats = TrafficStats()
    progress = Progress(events)
    last_report = progress.started
    generated = generate(min(events, sample or events), days, seed, until, stats)
    if sample and sample < events:
        messages = copies_of(list(generated), events)
    else:
        messages = ((event["anonymous_id"].encode(), _encode(event)) for event in generated)
    for sent, (key, value) in enumerate(messages, start=1):
        while True:
            try:
                producer.produce(settings.topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.5)
        if sent % 100 == 0:  # serve delivery reports now and then, not per message
            producer.poll(0)
        if failures:
            break
        if report is not None and sent % 1000 == 0:
            now = time.monotonic()
            if now - last_report >= report_every_s:
                report(f"generate: {progress.line(sent, now)}")
                last_report = now
    undelivered = producer.flush(120)
    if failures:
        raise RuntimeError(
            f"{len(failures)} event(s) were not delivered to {settings.topic} at "
            f"{settings.kafka_bootstrap}; first error: {failures[0]}"
        )
    if undelivered:
        raise RuntimeError(
            f"{undelivered} event(s) still unacknowledged by Kafka at {settings.kafka_bootstrap} "
            f"after 120 s (topic {settings.topic})"
        )
    seconds = time.monotonic() - began
    traffic = (
        f"{stats.sessions} sessions, {stats.devices} devices, {stats.purchases} purchases, "
        f"{stats.duplicates} duplicates of already sent events, {stats.late} hours late"
    )
    if stats.events < events:
        traffic = f"a sample of {stats.events} generated ({traffic}) and its copies by others"
    return (
        f"produced {events} events ({traffic}) to {settings.topic} in {seconds:.1f} s "
        f"({events / seconds:.0f} events/s)"
    )
