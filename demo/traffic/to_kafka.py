"""``retrolytics generate``: the generated traffic produced to Kafka, keyed by device."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
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


_COPY_IDS = 2**32  # copy numbers fit the event id's first 8 hex digits


def copies_of(sample: Iterable[dict[str, Any]], events: int) -> Iterator[tuple[bytes, bytes]]:
    """``events`` messages (key, value): the sample, then copies of it by other people until
    there are enough.

    The same transformation as the benchmarks' bulk path (``benchmarks/bulk.py``): copy k gives
    device, user and session ids the suffix ``~k`` and each event an id of its own
    (``copy_event_id``), so a duplicate in the sample stays a duplicate in every copy, and
    devices, sessions, persons and funnel attempts grow with the copies. Times, pages and
    campaigns are the sample's. Each sample event is encoded once, with its ids left as slots
    (``_Template``): a copy is one %-format.
    """
    templates = [_Template.of(event) for event in itertools.islice(sample, events)]
    if not templates and events > 0:
        raise ValueError("the sample to copy is empty")
    return _copies_by_chunk([templates], len(templates), events)


def _copies_by_chunk(
    chunks: Iterable[list[_Template]], sample_size: int, events: int
) -> Iterator[tuple[bytes, bytes]]:
    """Each chunk of a sample of ``sample_size`` events, then the chunk's copies 1, 2, ...:
    copy k of sample event i is message k * sample_size + i, kept if that is under ``events``.

    Whatever the chunks, the messages are the same and a device's events keep their order (copy
    k of a device's events are all copy k); only the order between devices depends on them.
    """
    if events > sample_size * _COPY_IDS:
        raise ValueError(f"at most {_COPY_IDS - 1} copies of a sample; {events} events asked")
    start = 0  # the index in the sample of the chunk's first event
    for chunk in chunks:
        for copy in range(0, _COPY_IDS):
            first = copy * sample_size + start  # the message number of its first event's copy
            if first >= events:
                break
            suffix = f"~{copy}".encode() if copy else b""
            for template in chunk[: events - first]:
                yield template.copy(copy, suffix)
        start += len(chunk)


_CHUNK = 1000  # sample events per message from the simulating process


def _simulate_sample(
    chunks: multiprocessing.Queue, events: int, days: int, seed: int, until: date | None
) -> None:
    """In a process of its own: the sample's events as templates, ``_CHUNK`` at a time, then the
    run's TrafficStats (or, if the simulation fails, its traceback as a string). Ends early if
    the process that reads them is gone."""
    try:
        stats = TrafficStats()
        chunk: list[_Template] = []
        for event in generate(events, days, seed, until, stats):
            chunk.append(_Template.of(event))
            if len(chunk) == _CHUNK:
                _hand_over(chunks, chunk)
                chunk = []
        if chunk:
            _hand_over(chunks, chunk)
        _hand_over(chunks, stats)
    except _ReaderGone:
        return
    except BaseException:
        chunks.put(traceback.format_exc())


class _ReaderGone(Exception):
    """The process reading the sample's chunks ended (killed, or it stopped producing)."""


def _hand_over(chunks: multiprocessing.Queue, item: object) -> None:
    """Put ``item`` on the queue; a full queue nobody will read again (its reader died or
    stopped) raises _ReaderGone instead of blocking forever."""
    while True:
        try:
            chunks.put(item, timeout=1)
            return
        except queue.Full:
            if not multiprocessing.parent_process().is_alive():
                raise _ReaderGone from None


def _sample_from_a_process(
    events: int, days: int, seed: int, until: date | None, stats: TrafficStats
) -> Iterator[list[_Template]]:
    """The sample's templates, simulated in a second process while this one copies and produces
    what came before (the simulation is half the fast path's work); fills ``stats`` at the end."""
    context = multiprocessing.get_context("spawn")  # fork is unsafe beside Kafka's threads
    chunks = context.Queue(maxsize=64)
    simulation = context.Process(
        target=_simulate_sample, args=(chunks, events, days, seed, until), daemon=True
    )
    simulation.start()
    try:
        while True:
            try:
                item = chunks.get(timeout=1)
            except queue.Empty:
                if simulation.is_alive():
                    continue
                try:  # what it put just before it ended
                    item = chunks.get(timeout=1)
                except queue.Empty:
                    raise RuntimeError(
                        f"the sample's simulation stopped (exit code {simulation.exitcode})"
                    ) from None
            if isinstance(item, TrafficStats):
                vars(stats).update(vars(item))
                return
            if isinstance(item, str):
                raise RuntimeError(f"the sample's simulation failed:\n{item}")
            yield item
    finally:
        if simulation.is_alive():
            simulation.kill()
        simulation.join()
        chunks.close()


def copy_event_id(event_id: str, copy: int) -> str:
    """The id of copy ``copy`` (1 to 2**32 - 1) of an event: its first 8 hex digits xor the
    copy number.

    Copies of one event differ from it and from each other; copies of two events share an id
    only if the two ids share their last 24 hex digits (90 random bits). Cheaper than a hash
    (the copies are bound by Python's work per message), and written in SQL in bulk.py.
    """
    if not 0 < copy < _COPY_IDS:
        raise ValueError(f"copy must be 1 to {_COPY_IDS - 1}; got {copy}")
    return f"{int(event_id[:8], 16) ^ copy:08x}{event_id[8:]}"


_SLOT = "\ue000"  # a private-use character: in no generated event, one UTF-8 sequence encoded
COPIED_IDS = ("anonymous_id", "user_id", "session_id")


@dataclass(frozen=True)
class _Template:
    """A sample event encoded once, as a bytes format with slots for what a copy changes."""

    encoded: bytes  # the JSON, `%(id)08x` where the event id's first 8 hex digits go, `%(suffix)s`
    # after each copied id
    id_head: int  # the event id's first 8 hex digits
    key: bytes  # the device id: the message's key

    @classmethod
    def of(cls, event: dict[str, Any]) -> _Template:
        slots = [
            name
            for name, value in event.items()
            if name == "event_id" or (name in COPIED_IDS and value is not None)
        ]
        slotted = {**event, **dict.fromkeys(slots, _SLOT)}
        parts = _encode(slotted).replace(b"%", b"%%").split(_SLOT.encode())
        encoded = parts[0]
        for name, part in zip(slots, parts[1:], strict=True):
            value = event[name].replace("%", "%%").encode()
            slot = b"%(id)08x" + value[8:] if name == "event_id" else value + b"%(suffix)s"
            encoded += slot + part
        head = int(event["event_id"][:8], 16)
        return cls(encoded, head, event["anonymous_id"].encode())

    def copy(self, copy: int, suffix: bytes) -> tuple[bytes, bytes]:
        """Copy ``copy`` (ids suffixed ``~copy``) as (key, value): its event id is
        ``copy_event_id``'s, and copy 0, with the suffix b"", is the event itself. %-formatting
        is one C call: half the cost of joining the pieces in Python."""
        value = self.encoded % {b"id": self.id_head ^ copy, b"suffix": suffix}
        return self.key + suffix, value


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

    With ``sample``, only that many are generated (the simulation costs ~30 µs an event), in a
    second process while this one produces, and the rest are its copies by other people (as
    ``copies_of``, each chunk of the sample followed by its copies): the fast path for test and
    benchmark data (a script that calls it so needs multiprocessing's ``if __name__ ==
    "__main__"`` guard: the second process is spawned). ``report``, if given, receives a
    progress line (rate and ETA) every ``report_every_s``. Raises RuntimeError naming the Kafka
    error if the topic cannot be reached or any message is not acknowledged. Returns a one-line
    summary.
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
    if sample and sample < events:
        simulated = _sample_from_a_process(sample, days, seed, until, stats)
        messages = _copies_by_chunk(simulated, sample, events)
    else:
        simulated = generate(events, days, seed, until, stats)
        messages = ((event["anonymous_id"].encode(), _encode(event)) for event in simulated)
    with contextlib.closing(simulated):  # a failure ends the sample's simulation at once
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
