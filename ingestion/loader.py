"""Kafka → PostgreSQL loader: exactly once into ``raw.events``.

How exactly-once works here: each batch of rows and the Kafka offsets it covers are written in one
PostgreSQL transaction, and the loader always (re)starts from the offsets stored in
``raw.ingest_offsets``, never from Kafka's committed offsets. Inside that transaction the stored
offsets are locked and messages below them are dropped, so two loaders that briefly own the same
partition during a rebalance cannot write a message twice. An event that a producer or a browser
sent twice is stored once: rows that may be stored already go through a temporary table and
``INSERT … ON CONFLICT DO NOTHING``, the rest are COPYed straight in (``_insert_rows``).
Messages that break the contract go to ``raw.dead_letters`` in the same transaction, so the valid
messages around them still load.

Two modes: a long-running stream (consumer group, rebalances) and ``drain`` (assign every
partition, stop at the end offsets seen at start, exit).

Pipelined: while a writer thread writes batch N (PostgreSQL's work, waited for without the GIL),
the main thread reads batch N+1 from Kafka and turns its messages into rows (Python's work). At
most one batch is in flight and batches are written in order, each in its own transaction, so
the guarantees above are unchanged. The main thread uses the database only when no write is in
flight. The writer needs the GIL back after every answer from PostgreSQL, and the main thread
only lets go of it every switch interval: a loader shortens that interval (``WRITER_SWITCH_S``).
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import NamedTuple

import psycopg
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from psycopg import postgres, pq
from psycopg.adapt import Dumper

from ingestion import erasure, schema, user_agents
from ingestion.contract import EVENT_COLUMNS, ContractViolation, parse_message, to_row
from ingestion.fast_contract import read_message
from ingestion.progress import Progress
from ingestion.redaction import Redaction, redact
from ingestion.settings import Settings
from ingestion.topics import ensure_topic

log = logging.getLogger("retrolytics.loader")

_COLUMN_LIST = ", ".join(EVENT_COLUMNS)
_OCCURRED_AT = EVENT_COLUMNS.index("occurred_at")
_ANONYMOUS_ID = EVENT_COLUMNS.index("anonymous_id")
_EVENT_ID = EVENT_COLUMNS.index("event_id")
_USER_ID = EVENT_COLUMNS.index("user_id")
_CONTEXT = EVENT_COLUMNS.index("context")
_PARTITION = EVENT_COLUMNS.index("source_partition")
_OFFSET = EVENT_COLUMNS.index("source_offset")


DEFAULT_REDACTION = Redaction()  # the default query parameters; no selectors without the language
REJOIN_QUIET_S = 5.0  # an outage this old, with Kafka answering again: the stream rejoins
# The interpreter's switch interval in a loading process (the default is 5 ms): each of a batch's
# statements and COPY chunks waited up to that long for the GIL while the main thread read the
# next batch. At 0.5 ms a 1M-event drain took 30 s against 36 to 39 s on one machine, the same
# on another (benchmarks/RESULTS.md section 1); 0.2 ms gained nothing more.
WRITER_SWITCH_S = 0.0005
GAVE_UP_EXIT_CODE = 75  # EX_TEMPFAIL: a supervisor should start the loader again later

# What an outage of PostgreSQL or Kafka raises; anything else is a bug and stops the loader.
OUTAGE_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, KafkaException)


class LoaderGaveUp(RuntimeError):
    """Too many consecutive failures: the outage outlasted the retry policy."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off between retries, capped; ``max_failures`` consecutive failures end
    the loader (exit code ``GAVE_UP_EXIT_CODE``) so that a supervisor notices."""

    max_failures: int = 10
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    kafka_timeout_s: float = 15.0  # one start attempt's wait for Kafka; failures do the rest

    def delay(self, failures: int) -> float:
        return min(self.max_delay_s, self.first_delay_s * 2 ** (failures - 1))


def _is_transient(error: KafkaError) -> bool:
    """Errors librdkafka recovers from by itself (broker down, connection refused, timeouts)."""
    return error.retriable() or error.code() in (
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._RESOLVE,
    )


@dataclass
class LoadStats:
    loaded: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    erased: int = 0
    redacted: int = 0

    def add(self, other: BatchResult) -> None:
        self.loaded += other.loaded
        self.duplicates += other.duplicates
        self.dead_letters += other.dead_letters
        self.erased += other.erased
        self.redacted += other.redacted
        self.batches += 1

    @property
    def handled(self) -> int:
        """Messages this loader has finished with, whatever became of them."""
        return self.loaded + self.duplicates + self.dead_letters + self.erased

    def summary(self) -> str:
        seconds = time.monotonic() - self.started
        rate = self.loaded / seconds if seconds > 0 else 0.0
        return (
            f"loaded {self.loaded} events, skipped {self.duplicates} duplicates, "
            f"{self.dead_letters} dead letters, {self.erased} erased, {self.redacted} redacted "
            f"in {seconds:.1f} s "
            f"({rate:.0f} events/s)"
        )


@dataclass(frozen=True)
class BatchResult:
    loaded: int
    duplicates: int
    dead_letters: int
    erased: int = 0  # rows of erased persons and devices, skipped (ingestion.erasure)
    redacted: int = 0  # events redaction changed (ingestion.redaction)


class Record(NamedTuple):
    """What the loader needs of one Kafka message (a tuple: made 100k times a second)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None

    @classmethod
    def from_message(cls, message: Message) -> Record:
        kind, stamp = message.timestamp()
        return cls(
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            key=message.key(),
            value=message.value(),
            timestamp_ms=stamp if kind != 0 else None,
        )

    @property
    def broker_time(self) -> datetime:
        seconds = (self.timestamp_ms or time.time() * 1000) / 1000
        return datetime.fromtimestamp(seconds, tz=UTC)


# -- writing a batch ------------------------------------------------------------------------


def _row_or_reason(record: Record, rules: Redaction) -> tuple[tuple | None, str | None, bool]:
    """The message's row (redacted), or why it cannot be one, and whether redaction changed it.

    Never raises: one message that trips an unforeseen error must not stop the partition behind
    it, so it becomes a dead letter too."""
    try:
        event = read_message(record.value)
        redacted = redact(event, rules)
        row = to_row(
            event,
            # The collector's stamp wins; the broker's time is worked out only without one.
            received_at=event.received_at or record.broker_time,
            partition=record.partition,
            offset=record.offset,
        )
    except ContractViolation as violation:
        return None, violation.reason, False
    except Exception as exc:
        log.warning("message %s:%d failed to parse", record.partition, record.offset, exc_info=True)
        return None, f"message could not be parsed ({type(exc).__name__}: {exc})"[:1000], False
    return row, None, redacted


def _rows_and_dead_letters(
    records: Sequence[Record], rules: Redaction
) -> tuple[list[tuple], list[tuple], int]:
    rows, dead, redacted = [], [], 0
    for record in records:
        row, reason, changed = _row_or_reason(record, rules)
        redacted += changed
        if row is not None:
            rows.append(row)
        else:
            dead.append(
                (record.topic, record.partition, record.offset, record.key, record.value, reason)
            )
    return rows, dead, redacted


def _prepare_session(conn: psycopg.Connection) -> None:
    conn.execute(
        "create temporary table if not exists loader_batch "
        "(like raw.events including defaults) on commit delete rows"
    )


def _stored_offsets(
    conn: psycopg.Connection, group: str, topic: str, partitions: Iterable[int], lock: bool
) -> dict[int, int]:
    query = (
        "select partition, next_offset from raw.ingest_offsets "
        "where consumer_group = %s and topic = %s and partition = any(%s)"
    )
    rows = conn.execute(query + (" for update" if lock else ""), (group, topic, list(partitions)))
    return dict(rows.fetchall())


# COPY in PostgreSQL's binary format: the server skips parsing text (1.37x faster in an A/B of
# 50k rows on this machine). Binary needs each column's type: raw.events' own, read once.
_column_types: weakref.WeakKeyDictionary[psycopg.Connection, list[str]] = (
    weakref.WeakKeyDictionary()
)


def _types_of_columns(conn: psycopg.Connection) -> list[str]:
    if conn not in _column_types:
        rows = conn.execute(
            "select attname, format_type(atttypid, atttypmod) from pg_attribute "
            "where attrelid = 'raw.events'::regclass and attnum > 0 and not attisdropped"
        ).fetchall()
        by_name = dict(rows)
        _column_types[conn] = [by_name[column] for column in EVENT_COLUMNS]
    return _column_types[conn]


class _JsonTextDumper(Dumper):
    """Binary jsonb from the JSON text the rows already hold (``contract.to_row``): the COPY's
    dumper for jsonb columns, chosen by type (``set_types``), so rows go in without a wrapper."""

    format = pq.Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()  # jsonb's binary format: a version byte, then the text


def _copy_rows(conn: psycopg.Connection, table: str, rows: list[tuple]) -> None:
    types = _types_of_columns(conn)
    statement = f"copy {table} ({_COLUMN_LIST}) from stdin (format binary)"
    with conn.cursor() as cur:
        cur.adapters.register_dumper(None, _JsonTextDumper)  # this cursor's COPY only
        with cur.copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)


@dataclass(frozen=True)
class BatchRows:
    """A batch's rows and what writing them needs to know of them, worked out before the
    transaction: in the loader by the main thread, so that the writer thread holds the GIL as
    little as it can while PostgreSQL works."""

    rows: list[tuple]
    keys: list[int]  # RecentKeys.key of each row
    days: frozenset[date]  # their daily partitions
    user_agents: frozenset[str]  # the User-Agent headers they carry

    @classmethod
    def of(cls, rows: list[tuple]) -> BatchRows:
        """From ``contract.to_row`` rows."""
        keys = [RecentKeys.key(row) for row in rows]
        days = frozenset(row[_OCCURRED_AT].astimezone(UTC).date() for row in rows)
        return cls(rows, keys, days, _user_agents_in(rows))

    def where(self, keep: Callable[[tuple], bool]) -> BatchRows:
        """The rows ``keep`` keeps (rows of erased identities, messages stored already)."""
        kept = [(row, key) for row, key in zip(self.rows, self.keys, strict=True) if keep(row)]
        rows = [row for row, _ in kept]
        return BatchRows(rows, [key for _, key in kept], self.days, _user_agents_in(rows))


def _user_agents_in(rows: list[tuple]) -> frozenset[str]:
    return frozenset(user_agents.headers_of({row[_CONTEXT] for row in rows}))


def _insert_deduplicated(conn: psycopg.Connection, rows: list[tuple]) -> int:
    """Insert through a temporary table and ``ON CONFLICT DO NOTHING``: the path for rows that
    may already be stored. Returns how many were new."""
    if not rows:
        return 0
    _prepare_session(conn)
    _copy_rows(conn, "loader_batch", rows)
    with conn.cursor() as cur:
        # Count the rows RETURNING gives back: on Citus the command tag of an
        # INSERT ... SELECT ... ON CONFLICT counts the rows selected, not those inserted.
        cur.execute(
            f"insert into raw.events ({_COLUMN_LIST}) select {_COLUMN_LIST} from loader_batch "
            "on conflict do nothing returning 1"
        )
        return len(cur.fetchall())


def _insert_rows(
    conn: psycopg.Connection, batch: BatchRows, recent: RecentKeys | None = None
) -> int:
    """Insert rows, storing each key once; returns how many were new.

    Deduplication is paid for only where a duplicate is possible: rows whose key repeats in the
    batch or was loaded recently (``recent``) go through ``_insert_deduplicated``; the rest, in
    practice nearly all, are COPYed straight into ``raw.events``. A key stored before ``recent``
    remembers (another process, a replay) makes that COPY fail with a unique violation, which
    the caller answers by writing the whole batch again with ``recent=None``: everything then
    takes the deduplicating path, in a new transaction.
    """
    with conn.cursor() as cur:  # the devices, browsers and OSes of the batch (user_agents)
        user_agents.record_new(cur, batch.user_agents)
    if recent is None:
        return _insert_deduplicated(conn, batch.rows)
    direct, careful, seen = [], [], set()
    for row, key in zip(batch.rows, batch.keys, strict=True):
        (careful if key in seen or key in recent else direct).append(row)
        seen.add(key)
    _copy_rows(conn, "raw.events", direct)
    return len(direct) + _insert_deduplicated(conn, careful)


class RecentKeys:
    """Hashes of the keys this process loaded lately, a bounded set: a retried event usually
    arrives soon after its first copy. A hash is only a hint (a collision merely sends a row the
    deduplicating way); PostgreSQL's unique key stays the judge."""

    def __init__(self, capacity: int = 500_000) -> None:
        self.capacity = capacity
        self._order: deque[int] = deque()
        self._hashes: set[int] = set()

    @staticmethod
    def key(row: tuple) -> int:
        # The UUID's int: hashing the UUID object is a Python call.
        return hash((row[_ANONYMOUS_ID], row[_EVENT_ID].int, row[_OCCURRED_AT]))

    def __contains__(self, key: int) -> bool:
        return key in self._hashes

    def remember(self, keys: Iterable[int]) -> None:
        for key in keys:
            if key not in self._hashes:
                self._hashes.add(key)
                self._order.append(key)
        while len(self._order) > self.capacity:
            self._hashes.discard(self._order.popleft())


def is_duplicate_key(error: psycopg.Error) -> bool:
    """A unique violation: PostgreSQL's own, or one a Citus worker raised during a COPY into a
    distributed table, which reaches the client as SQLSTATE XX000 with PostgreSQL's message."""
    if isinstance(error, psycopg.errors.UniqueViolation):
        return True
    message = error.diag.message_primary or ""
    return isinstance(error, psycopg.errors.InternalError_) and message.startswith(
        "duplicate key value violates unique constraint"
    )


def _insert_dead_letters(conn: psycopg.Connection, dead: list[tuple]) -> None:
    if not dead:
        return
    with conn.cursor() as cur:
        cur.executemany(
            'insert into raw.dead_letters (topic, partition, "offset", message_key, payload, '
            "reason) values (%s, %s, %s, %s, %s, %s) on conflict do nothing",
            dead,
        )


def _store_offsets(
    conn: psycopg.Connection, group: str, topic: str, next_offsets: dict[int, int]
) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into raw.ingest_offsets (consumer_group, topic, partition, next_offset) "
            "values (%s, %s, %s, %s) on conflict (consumer_group, topic, partition) do update "
            "set next_offset = excluded.next_offset, updated_at = now() "
            "where raw.ingest_offsets.next_offset < excluded.next_offset",
            [(group, topic, p, o) for p, o in next_offsets.items()],
        )


@dataclass(frozen=True)
class PreparedBatch:
    """A batch of messages read into rows and dead letters: the CPU half of writing it."""

    records: Sequence[Record]
    rows: BatchRows
    dead: list[tuple]
    redacted: int
    offsets: dict[int, tuple[int, int]]  # partition: (its first offset, the next after its last)


def prepare_batch(records: Sequence[Record], redaction: Redaction) -> PreparedBatch:
    """Read the messages into rows (or dead letters); touches no database."""
    with _cycle_collection_paused():
        rows, dead, redacted = _rows_and_dead_letters(records, redaction)
        batch_rows = BatchRows.of(rows)
    offsets: dict[int, tuple[int, int]] = {}
    for r in records:
        first, end = offsets.get(r.partition, (r.offset, r.offset + 1))
        offsets[r.partition] = (min(first, r.offset), max(end, r.offset + 1))
    return PreparedBatch(records, batch_rows, dead, redacted, offsets)


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """Reading a batch allocates millions of objects and no reference cycles: reference counts
    free them all. Left on, the cycle collector ran every 700 allocations over the batch still
    held, a fifth of the reading's CPU (2.65 s against 3.34 s per 100k messages)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def write_prepared(
    conn: psycopg.Connection,
    group: str,
    batch: PreparedBatch,
    recent: RecentKeys | None = None,
    erasure_key: bytes | None = None,
) -> BatchResult:
    """Write a batch's rows and the offsets it reaches in one transaction; skip what is already
    stored.

    With ``recent`` (what this loader stored lately) rows without a likely duplicate take the
    plain COPY; should one of them be stored after all, the whole batch is written again the
    deduplicating way.
    """
    if not batch.records:
        return BatchResult(0, 0, 0)
    schema.ensure_partitions(conn, batch.rows.days)
    try:
        result = _write_transaction(conn, group, batch, recent, erasure_key)
    except psycopg.Error as error:
        if not is_duplicate_key(error):
            raise
        result = _write_transaction(conn, group, batch, None, erasure_key)
    if recent is not None:
        recent.remember(batch.rows.keys)
    return replace(result, redacted=batch.redacted)


def write_batch(
    conn: psycopg.Connection,
    group: str,
    records: Sequence[Record],
    recent: RecentKeys | None = None,
    erasure_key: bytes | None = None,
    redaction: Redaction = DEFAULT_REDACTION,
) -> BatchResult:
    """``prepare_batch`` then ``write_prepared``, in the caller's thread."""
    return write_prepared(conn, group, prepare_batch(records, redaction), recent, erasure_key)


def _write_transaction(
    conn: psycopg.Connection,
    group: str,
    batch: PreparedBatch,
    recent: RecentKeys | None,
    erasure_key: bytes | None,
) -> BatchResult:
    topic = batch.records[0].topic
    rows, dead = batch.rows, batch.dead
    with conn.transaction():
        stored = _stored_offsets(conn, group, topic, batch.offsets, lock=True)
        if any(first < stored.get(p, 0) for p, (first, _) in batch.offsets.items()):
            # Some of it is stored already: a rebalance, or a batch written before a restart.
            fresh = {
                (r.partition, r.offset)
                for r in batch.records
                if r.offset >= stored.get(r.partition, 0)
            }
            rows = rows.where(lambda row: (row[_PARTITION], row[_OFFSET]) in fresh)
            dead = [d for d in dead if (d[1], d[2]) in fresh]
        rows, erased = _without_erased(conn, rows, erasure_key)
        loaded = _insert_rows(conn, rows, recent)
        _insert_dead_letters(conn, dead)
        _store_offsets(conn, group, topic, {p: end for p, (_, end) in batch.offsets.items()})
    return BatchResult(
        loaded=loaded, duplicates=len(rows.rows) - loaded, dead_letters=len(dead), erased=erased
    )


def _without_erased(
    conn: psycopg.Connection, rows: BatchRows, key: bytes | None
) -> tuple[BatchRows, int]:
    """The rows of identities not on the erasure list, and how many were left out."""
    erased = erasure.erased_hashes(conn)
    if not erased.hashes:
        return rows, 0
    key = erased.require(key)
    kept = rows.where(
        lambda row: not erasure.is_erased(erased.hashes, key, row[_ANONYMOUS_ID], row[_USER_ID])
    )
    return kept, len(rows.rows) - len(kept.rows)


def store_events(conn: psycopg.Connection, events: Iterable[dict]) -> int:
    """Validate contract dicts and insert them straight into raw.events, bypassing Kafka.

    For tests and benchmarks of what lies downstream of the loader. Returns rows inserted;
    a contract violation raises, naming the event.
    """
    import json

    rows = []
    now = datetime.now(tz=UTC)
    for event in events:
        parsed = parse_message(json.dumps(event).encode())
        rows.append(to_row(parsed, received_at=now, partition=None, offset=None))
    batch = BatchRows.of(rows)
    schema.ensure_partitions(conn, batch.days)
    try:
        with conn.transaction():
            return _insert_rows(conn, batch, RecentKeys())
    except psycopg.Error as error:
        if not is_duplicate_key(error):
            raise
        with conn.transaction():
            return _insert_rows(conn, batch)


# -- consuming ------------------------------------------------------------------------------


class Loader:
    """Consumes the topic and writes it in batches; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        batch_size: int = 5000,
        max_batch_seconds: float = 1.0,
        report_every_seconds: float = 10.0,
        retry: RetryPolicy | None = None,
        redaction: Redaction = DEFAULT_REDACTION,
    ) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self.max_batch_seconds = max_batch_seconds
        self.report_every_seconds = report_every_seconds
        self.retry = retry or RetryPolicy()
        self.redaction = redaction
        self.stats = LoadStats()
        self.recent = RecentKeys()
        self._erasure_key = settings.erasure_key.encode() if settings.erasure_key else None
        self._stopping = False
        self._last_transient: int | None = None
        self._last_outage: float | None = None  # when Kafka first reported the current outage
        self._conn: psycopg.Connection | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loader-write")
        sys.setswitchinterval(min(sys.getswitchinterval(), WRITER_SWITCH_S))
        self._in_flight: Future[tuple[BatchResult, PreparedBatch]] | None = None
        self._recoveries = 0  # a drain plans again after each
        try:  # a schema this login may not create is an error at once, not after retries
            self._database()
        except OUTAGE_ERRORS as exc:  # stream() and drain() wait for it under the retry policy
            log.warning("%s is not answering yet: %s", self._service_of(exc), _detail(exc))
        self._consumer = self._new_consumer()

    def _new_consumer(self) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "group.id": self.settings.consumer_group,
                # Offsets live in PostgreSQL; Kafka's copy is only for lag dashboards.
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # A loader that died hands its partitions on after 6 s instead of 45 s.
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1500,
                "fetch.max.bytes": 64 * 1024 * 1024,
                # Broker-level trouble (all brokers down, a lost connection) comes here, not
                # as a message error from consume().
                "error_cb": self._on_kafka_error,
            }
        )

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.settings.loader_url, autocommit=True, connect_timeout=10)

    def _database(self) -> psycopg.Connection:
        """The connection to PostgreSQL, opened (and the raw schema checked) if there is none or
        the last one broke in an outage."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            conn = self._connect()
            try:
                schema.ensure_ready(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _service_of(self, error: BaseException) -> str:
        """Which server an outage error came from, named for the operator (no password)."""
        if isinstance(error, KafkaException):
            return f"Kafka at {self.settings.kafka_bootstrap}"
        where = psycopg.conninfo.conninfo_to_dict(self.settings.loader_url)
        return (
            f"PostgreSQL at {where.get('host') or 'the local socket'}:{where.get('port') or 5432}"
            f" (database {where.get('dbname')})"
        )

    def request_stop(self, *_: object) -> None:
        """Finish the batch in hand, then stop (SIGTERM/SIGINT)."""
        self._stopping = True

    def close(self) -> None:
        self._await_write()
        self._writer.shutdown()
        self._consumer.close()
        if self._conn is not None:
            self._conn.close()

    # Outages: a failed step is retried after a bounded back-off, from the stored offsets. The
    # first step of stream() and drain() is their start, so a loader started during an outage
    # waits for PostgreSQL and Kafka the same way.
    def _run_resilient(self, step: Callable[[], bool]) -> None:
        """Call ``step`` until it returns False or a stop is requested."""
        failures = 0
        recovering = False
        more = True
        while more and not self._stopping:
            try:
                if recovering:
                    self._recover()
                    recovering = False
                more = step()
                failures = 0
            except OUTAGE_ERRORS as exc:
                failures += 1
                if failures >= self.retry.max_failures:
                    raise LoaderGaveUp(
                        f"giving up after {failures} consecutive failures: "
                        f"{self._service_of(exc)} unreachable; last error: {_detail(exc)}"
                    ) from exc
                delay = self.retry.delay(failures)
                log.warning(
                    "%s: %s (failure %d of %d); retrying in %.1f s from the stored offsets",
                    self._service_of(exc),
                    _detail(exc),
                    failures,
                    self.retry.max_failures,
                    delay,
                )
                self._sleep(delay)
                recovering = True

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, deadline - time.monotonic()))

    def _recover(self) -> None:
        """Rewind every assigned partition to its stored offset (reconnecting to PostgreSQL to
        read them): the batch that failed was rolled back, but the consumer had read past it."""
        self._settle_write()
        self._recoveries += 1
        assigned = self._consumer.assignment()
        if not assigned:  # the start failed, or a rebalance is under way: nothing to rewind
            return
        for tp in self._positions(assigned):
            if tp.offset >= 0:
                self._consumer.seek(tp)
            else:
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING))
        log.info(
            "resumed from the stored offsets of partitions %s",
            sorted(p.partition for p in assigned),
        )

    # Partition assignment: always seek to the offsets stored with the data.
    def _positions(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        stored = _stored_offsets(
            self._database(),
            self.settings.consumer_group,
            self.settings.topic,
            [p.partition for p in partitions],
            lock=False,
        )
        for tp in partitions:
            tp.offset = stored.get(tp.partition, OFFSET_BEGINNING)
        return partitions

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._await_write()  # its offsets are stored, or it failed: either way they are final
        consumer.assign(self._positions(partitions))
        log.info("assigned partitions %s", sorted(p.partition for p in partitions))

    def _next_batch(self) -> list[Record]:
        records: list[Record] = []
        deadline = time.monotonic() + self.max_batch_seconds
        while len(records) < self.batch_size and not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            messages = self._consumer.consume(
                num_messages=self.batch_size - len(records), timeout=min(remaining, 0.5)
            )
            for message in messages:
                error = message.error()
                if error is None:
                    records.append(Record.from_message(message))
                elif error.code() == KafkaError._PARTITION_EOF:
                    continue
                elif error.fatal() or not _is_transient(error):
                    raise KafkaException(error)
                else:
                    # librdkafka reconnects by itself; say so once per kind of error and go on.
                    self._note_transient(error)
        return records

    def _on_kafka_error(self, error: KafkaError) -> None:
        if error.fatal():
            log.error("Kafka: %s", error.str())
        else:
            self._note_transient(error)

    def _note_transient(self, error: KafkaError) -> None:
        if error.code() != self._last_transient:
            log.warning("Kafka: %s; librdkafka keeps reconnecting", error.str())
            self._last_transient = error.code()
        if self._last_outage is None:  # the outage's first error: librdkafka repeats them
            self._last_outage = time.monotonic()

    def _rejoin_after_outage(self) -> None:
        """Join the consumer group anew once Kafka has answered for a while after an outage.

        A restarted broker reloads the group without its members; librdkafka did not always
        notice (a fresh-clone test run saw the group stay empty for minutes), so the stream
        leaves and joins again itself. The partitions then start from the stored offsets.
        """
        if self._last_outage is None or time.monotonic() - self._last_outage < REJOIN_QUIET_S:
            return
        try:
            self._consumer.list_topics(self.settings.topic, timeout=2)
        except KafkaException:
            return  # not back yet
        log.info("Kafka is back; joining the consumer group again with a new consumer")
        self._last_outage = None
        self._last_transient = None
        # A new consumer, not unsubscribe/subscribe: the old instance kept its dead membership
        # in 2 of 5 test runs; a new one always joins. Partitions resume from stored offsets.
        self._consumer.close()
        self._consumer = self._new_consumer()
        self._consumer.subscribe([self.settings.topic], on_assign=self._on_assign)

    def _hand_over(self, records: list[Record]) -> None:
        """Turn the records into rows here, then hand them to the writer once the batch before
        them is written."""
        batch = prepare_batch(records, self.redaction)
        self._finish_write()
        self._in_flight = self._writer.submit(self._write_prepared, batch)

    def _write_prepared(self, batch: PreparedBatch) -> tuple[BatchResult, PreparedBatch]:
        """The writer thread's work."""
        group = self.settings.consumer_group
        result = write_prepared(self._database(), group, batch, self.recent, self._erasure_key)
        return result, batch

    def _await_write(self) -> None:
        if self._in_flight is not None:
            wait([self._in_flight])

    def _finish_write(self) -> None:
        """Wait for the batch in flight, count it and tell Kafka how far it reached; or raise
        what its write raised (the transaction was rolled back)."""
        future, self._in_flight = self._in_flight, None
        if future is None:
            return
        result, batch = future.result()
        self.stats.add(result)
        # Informational only: resuming always uses the offsets stored in PostgreSQL.
        self._consumer.commit(
            offsets=[
                TopicPartition(self.settings.topic, p, end) for p, (_, end) in batch.offsets.items()
            ],
            asynchronous=True,
        )

    def _settle_write(self) -> None:
        """``_finish_write`` where a failed write is no longer news: its messages are read again
        from the stored offsets."""
        try:
            self._finish_write()
        except OUTAGE_ERRORS as exc:
            log.warning("the batch in flight was not written (%s); it is read again", _detail(exc))

    def _lag(self) -> int:
        lag = 0
        for tp in self._consumer.assignment():
            _, high = self._consumer.get_watermark_offsets(tp, timeout=5)
            position = self._consumer.position([tp])[0].offset
            lag += max(0, high - max(position, 0))
        return lag

    def _report(self, last_report: float, progress: Progress | None = None) -> float:
        now = time.monotonic()
        if now - last_report < self.report_every_seconds:
            return last_report
        if progress is not None:  # a drain knows where it ends
            log.info("%s; %s", self.stats.summary(), progress.line(self.stats.handled))
            return now
        try:
            lag = f"{self._lag()} messages"
        except KafkaException as exc:  # a broker outage must not stop the loader over a log line
            lag = f"unknown ({exc.args[0].str() if exc.args else exc})"
        log.info("%s; lag %s", self.stats.summary(), lag)
        return now

    def stream(self) -> LoadStats:
        """Run until asked to stop."""
        subscribed = False
        last_report = time.monotonic()

        def step() -> bool:
            nonlocal subscribed, last_report
            if not subscribed:
                self._database()
                ensure_topic(
                    self.settings.kafka_bootstrap,
                    self.settings.topic,
                    timeout=self.retry.kafka_timeout_s,
                )
                self._consumer.subscribe([self.settings.topic], on_assign=self._on_assign)
                subscribed = True
            self._rejoin_after_outage()
            records = self._next_batch()
            if records:
                self._hand_over(records)
            else:  # a quiet topic: the batch in flight is counted, or its failure known, now
                self._finish_write()
            last_report = self._report(last_report)
            return True

        self._run_resilient(step)
        self._settle_write()
        return self.stats

    def drain(self, share: tuple[int, int] = (0, 1)) -> LoadStats:
        """Load up to the end offsets every partition has now, then return.

        ``share`` = (i, n): only the partitions p with p % n == i, so that n drains side by side
        split the topic (``ingestion.workers``).
        """
        plan: _DrainPlan | None = None
        last_report = time.monotonic()

        def step() -> bool:
            nonlocal plan, last_report
            if plan is None:
                plan = self._start_drain(share)
            elif plan.recoveries != self._recoveries:
                # Partitions counted as read may have lost their last batch: ask the stored
                # offsets again.
                plan = replace(self._start_drain(share, plan.ends), progress=plan.progress)
            if not plan.pending:
                return False
            records = self._next_batch()
            if records:
                self._hand_over(records)
            reached = self._consumer.position(
                [TopicPartition(self.settings.topic, p) for p in plan.pending]
            )
            for tp in reached:
                if tp.offset >= plan.ends[tp.partition]:
                    plan.pending.discard(tp.partition)
            if not plan.pending:
                self._finish_write()  # the drain ends once its last batch is stored
            last_report = self._report(last_report, plan.progress)
            return bool(plan.pending)

        self._run_resilient(step)
        self._settle_write()
        return self.stats

    def _start_drain(
        self, share: tuple[int, int], ends: dict[int, int] | None = None
    ) -> _DrainPlan:
        """Assign the share's partitions at their stored offsets; their ends are ``ends`` (a
        plan made again after a failure keeps its own), else where they end now."""
        topic = self.settings.topic
        self._database()
        metadata = self._consumer.list_topics(topic, timeout=self.retry.kafka_timeout_s)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            reason = described.error.str() if described is not None else "no such topic"
            raise KafkaException(
                f"topic {topic!r} is not available on {self.settings.kafka_bootstrap} ({reason})"
            )
        index, count = share
        partitions = [TopicPartition(topic, p) for p in described.partitions if p % count == index]
        watermarks = {
            tp.partition: self._consumer.get_watermark_offsets(
                tp, timeout=self.retry.kafka_timeout_s
            )
            for tp in partitions
        }
        if ends is None:
            ends = {partition: high for partition, (_, high) in watermarks.items()}
        assigned = self._positions(partitions)
        pending = set()
        to_read = 0
        for tp in assigned:
            low, _ = watermarks[tp.partition]
            start = tp.offset if tp.offset >= 0 else low
            if start < ends[tp.partition]:
                pending.add(tp.partition)
                to_read += ends[tp.partition] - start
        self._consumer.assign(assigned)
        return _DrainPlan(ends, pending, Progress(to_read, "messages"), self._recoveries)


@dataclass
class _DrainPlan:
    """Where a drain stops (each partition's end offset when it started), the partitions not
    there yet, and the progress towards the ends."""

    ends: dict[int, int]
    pending: set[int]
    progress: Progress
    recoveries: int  # the loader's count of recoveries when this plan was made


def _detail(error: BaseException) -> str:
    """The error on one line (psycopg's messages span several)."""
    return f"{type(error).__name__}: {' '.join(str(error).split()) or 'no detail'}"


def main(
    settings: Settings,
    *,
    drain: bool,
    batch_size: int = 5000,
    max_wait: float = 1.0,
    report_every: float = 10.0,
    retry: RetryPolicy | None = None,
    redaction: Redaction = DEFAULT_REDACTION,
) -> int:
    """The ``retrolytics load`` command."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    loader = Loader(
        settings,
        batch_size=batch_size,
        max_batch_seconds=max_wait,
        report_every_seconds=report_every,
        retry=retry,
        redaction=redaction,
    )
    signal.signal(signal.SIGTERM, loader.request_stop)
    signal.signal(signal.SIGINT, loader.request_stop)
    try:
        stats = loader.drain() if drain else loader.stream()
    except LoaderGaveUp as exc:
        log.error("%s; %s", exc, loader.stats.summary())
        return GAVE_UP_EXIT_CODE
    except erasure.ErasureKeyMissing as exc:
        log.error("%s", exc)
        return 2
    finally:
        loader.close()
    print(stats.summary(), flush=True)
    return 0
