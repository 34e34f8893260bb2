"""The loader's guarantees, each against the real Kafka and PostgreSQL."""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest

from ingestion.contract import MAX_MESSAGE_BYTES
from ingestion.loader import (
    BatchResult,
    Loader,
    PreparedBatch,
    RecentKeys,
    Record,
    RetryPolicy,
    write_batch,
)
from ingestion.settings import Settings
from ingestion.topics import DEFAULT_PARTITIONS
from tests.support.factories import (
    BASE_TIME,
    click_event,
    encode,
    iso,
    many_events,
    pageview_event,
    produce,
)
from tests.support.loading import (
    drain,
    kill_group,
    live_processes_of_group,
    loader_process,
    produce_events,
    scalar,
    wait_for_rows,
)

pytestmark = pytest.mark.integration


def test_drain_loads_every_event_and_stops(settings: Settings) -> None:
    events = many_events(1200)
    produce_events(settings, events)
    stats = drain(settings)
    assert (stats.loaded, stats.duplicates, stats.dead_letters) == (1200, 0, 0)
    stored = scalar(settings.database_url, "select array_agg(event_id::text) from raw.events")
    assert sorted(stored) == sorted(e["event_id"] for e in events)


class _LoaderCutOffBeforeItsLastWrite(Loader):
    """A loader whose PostgreSQL session is terminated (a real outage) as its writer thread is
    about to write the batch that completes the drain: the main thread has by then read to the
    topic's end."""

    def __init__(self, settings: Settings, total: int) -> None:
        super().__init__(settings, batch_size=300, retry=RetryPolicy(first_delay_s=0.1))
        self.total = total
        self.cut_off = False

    def _write_prepared(self, batch: PreparedBatch) -> tuple[BatchResult, PreparedBatch]:
        if not self.cut_off and self.stats.handled + len(batch.records) >= self.total:
            self.cut_off = True
            with psycopg.connect(self.settings.database_url, autocommit=True) as admin:
                pid = self._database().info.backend_pid
                admin.execute("select pg_terminate_backend(%s)", (pid,))
        return super()._write_prepared(batch)


def test_a_drain_whose_last_write_fails_reads_it_again(settings: Settings) -> None:
    events = many_events(1500)
    produce_events(settings, events)
    loader = _LoaderCutOffBeforeItsLastWrite(settings, total=len(events))
    try:
        stats = loader.drain()
    finally:
        loader.close()
    assert loader.cut_off
    assert (stats.loaded, stats.duplicates, stats.dead_letters) == (1500, 0, 0)
    total, distinct = scalar_pair(
        settings.database_url, "select count(*), count(distinct event_id) from raw.events"
    )
    assert total == distinct == len(events)


def test_a_stream_whose_last_write_fails_writes_it_again_on_a_quiet_topic(
    settings: Settings,
) -> None:
    """No message follows the batch whose write failed: the stream still learns of the failure
    (its next poll comes back empty) and reads the batch again from the stored offsets."""
    events = many_events(900)
    produce_events(settings, events)
    loader = _LoaderCutOffBeforeItsLastWrite(settings, total=len(events))
    streaming = threading.Thread(target=loader.stream)
    streaming.start()
    try:
        wait_for_rows(settings.database_url, at_least=len(events), timeout=90)
    finally:
        loader.request_stop()
        streaming.join(timeout=60)
        loader.close()
    assert loader.cut_off
    total, distinct = scalar_pair(
        settings.database_url, "select count(*), count(distinct event_id) from raw.events"
    )
    assert total == distinct == len(events)


def test_offsets_are_stored_with_the_rows(settings: Settings) -> None:
    produce_events(settings, many_events(700))
    drain(settings, batch_size=100)
    with psycopg.connect(settings.database_url) as conn:
        per_partition = dict(
            conn.execute(
                "select source_partition, max(source_offset) + 1 from raw.events group by 1"
            ).fetchall()
        )
        stored = dict(
            conn.execute(
                "select partition, next_offset from raw.ingest_offsets where consumer_group = %s",
                (settings.consumer_group,),
            ).fetchall()
        )
    assert stored == per_partition


def test_replaying_the_topic_adds_no_row(settings: Settings) -> None:
    produce_events(settings, many_events(500))
    first = drain(settings)
    replay = drain(replace(settings, consumer_group=settings.consumer_group + "-replay"))
    assert first.loaded == 500
    assert (replay.loaded, replay.duplicates) == (0, 500)
    assert scalar(settings.database_url, "select count(*) from raw.events") == 500


def test_same_event_id_twice_is_stored_once(settings: Settings) -> None:
    event = click_event()
    produce_events(settings, [event, pageview_event(), event])
    stats = drain(settings)
    assert (stats.loaded, stats.duplicates) == (2, 1)
    count = scalar(
        settings.database_url,
        "select count(*) from raw.events where event_id = %s",
        (event["event_id"],),
    )
    assert count == 1


def test_a_batch_already_written_is_skipped_by_its_offsets(raw_db: psycopg.Connection) -> None:
    records = [
        Record("t", 0, offset, b"device-1", encode(pageview_event()), None) for offset in range(5)
    ]
    first = write_batch(raw_db, "group", records)
    again = write_batch(raw_db, "group", records)
    # Not even counted as duplicates: the stored offsets fence the replayed messages off
    # before ON CONFLICT is reached.
    assert (first.loaded, again.loaded, again.duplicates) == (5, 0, 0)


BAD_PAYLOADS: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"{this is not json", "not JSON"),
    "not an object": (b'"just a string"', "not an object"),
    "missing required field": (
        encode({k: v for k, v in click_event().items() if k != "occurred_at"}),
        "occurred_at: Field required",
    ),
    "malformed required field": (encode(click_event(anonymous_id="")), "anonymous_id"),
    "unknown type": (encode(click_event(type="hover")), "type: Input should be"),
    "bad uuid": (encode(click_event(event_id="not-a-uuid")), "event_id"),
    "bad timestamp": (encode(click_event(occurred_at="32/13/2026")), "occurred_at"),
    "oversized payload": (
        encode(click_event(properties={"blob": "x" * MAX_MESSAGE_BYTES})),
        "larger than the",
    ),
    "wrong field type": (encode(click_event(session_id=["a", "b"])), "session_id"),
    "invalid UTF-8": (b'{"type": "click", "name": "\xc3\x28"}', "not valid UTF-8"),
    "NaN, which jsonb cannot hold": (
        encode(click_event())[:-1] + b', "score": NaN}',
        "NaN is not a JSON value",
    ),
    "too far in the future": (
        encode(click_event(occurred_at=iso(BASE_TIME + timedelta(days=3)))),
        "client clock ahead",
    ),
}


def test_each_kind_of_bad_message_becomes_a_dead_letter(settings: Settings) -> None:
    good = many_events(len(BAD_PAYLOADS) + 1)
    payloads: list[bytes] = []
    for index, (bad, _reason) in enumerate(BAD_PAYLOADS.values()):
        payloads += [encode(good[index]), bad]
    payloads.append(encode(good[-1]))
    # One partition key so the interleaving (good, bad, good, ...) is kept on the topic.
    produce(settings.kafka_bootstrap, settings.topic, payloads, ["same"] * len(payloads))

    stats = drain(settings)

    assert (stats.loaded, stats.dead_letters) == (len(good), len(BAD_PAYLOADS))
    with psycopg.connect(settings.database_url) as conn:
        letters = conn.execute(
            'select topic, partition, "offset", payload, reason from raw.dead_letters '
            'order by "offset"'
        ).fetchall()
    assert len(letters) == len(BAD_PAYLOADS)
    for (kind, (bad, reason)), letter in zip(BAD_PAYLOADS.items(), letters, strict=True):
        topic, _partition, offset, payload, stored_reason = letter
        assert topic == settings.topic
        assert offset % 2 == 1, kind  # every bad message sat between two good ones
        assert bytes(payload) == bad, kind
        assert reason in stored_reason, (kind, stored_reason)


def test_late_and_old_events_get_their_own_daily_partitions(settings: Settings) -> None:
    late = pageview_event(
        occurred_at=iso(BASE_TIME - timedelta(days=40)), received_at=iso(BASE_TIME)
    )
    produce_events(settings, [pageview_event(), late])
    drain(settings)
    with psycopg.connect(settings.database_url) as conn:
        partitions = {
            row[0]
            for row in conn.execute("select tableoid::regclass::text from raw.events").fetchall()
        }
    day = BASE_TIME.date()
    assert partitions == {
        f"raw.events_{day:%Y%m%d}",
        f"raw.events_{day - timedelta(days=40):%Y%m%d}",
    }


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_at_any_point_loses_and_duplicates_nothing(
    settings: Settings, workers: int
) -> None:
    events = many_events(20_000, devices=60)
    produce_events(settings, events)
    rng = random.Random(7)
    seen_after_kills = []
    for run in range(6):
        # Alternate the stream (consumer group, rebalances) and drain (assigned) modes.
        mode = ("--drain",) if run % 2 else ()
        options = ("--batch-size", "50", "--workers", str(workers), *mode)
        process = loader_process(settings, *options, own_group=True)
        try:
            already = seen_after_kills[-1] if seen_after_kills else 0
            wait_for_rows(settings.database_url, at_least=already + 1)
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            kill_group(process.pid)  # the loader and its workers, wherever they are
        process.wait(timeout=30)
        seen_after_kills.append(scalar(settings.database_url, "select count(*) from raw.events"))
    # The kills landed mid-stream: each run made progress and none finished the topic.
    assert seen_after_kills == sorted(set(seen_after_kills)), seen_after_kills
    assert seen_after_kills[-1] < len(events), seen_after_kills
    stats = drain(settings, batch_size=200)
    with psycopg.connect(settings.database_url) as conn:
        total, distinct = conn.execute(
            "select count(*), count(distinct event_id) from raw.events"
        ).fetchone()
    assert total == distinct == len(events)
    assert stats.duplicates == 0


def test_workers_whose_parent_is_killed_stop_and_lose_nothing(settings: Settings) -> None:
    events = many_events(20_000, devices=60)
    produce_events(settings, events)
    process = loader_process(settings, "--workers", "2", "--batch-size", "50", own_group=True)
    try:
        wait_for_rows(settings.database_url, at_least=1)
        process.send_signal(signal.SIGKILL)  # the parent alone: its workers are orphaned
        process.wait(timeout=30)
        deadline = time.monotonic() + 60
        while live_processes_of_group(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        # Streaming workers never end on their own: they stopped because their parent was gone.
        assert not live_processes_of_group(process.pid), "the orphaned workers kept running"
    finally:
        kill_group(process.pid)
    log = process.stderr.read()  # the workers wrote to it until they ended
    assert log.count(f"the parent process {process.pid} is gone") == 2, log
    stats = drain(settings, batch_size=500)
    with psycopg.connect(settings.database_url) as conn:
        total, distinct = conn.execute(
            "select count(*), count(distinct event_id) from raw.events"
        ).fetchone()
    assert total == distinct == len(events)
    assert stats.duplicates == 0


def test_sigterm_finishes_the_batch_and_exits_cleanly(settings: Settings) -> None:
    produce_events(settings, many_events(3000))
    process = loader_process(settings, "--batch-size", "100")
    wait_for_rows(settings.database_url, at_least=1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.startswith("loaded ")
    loaded = int(out.split()[1])
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("select count(*) from raw.events").fetchone()[0]
        covered = conn.execute("select sum(next_offset) from raw.ingest_offsets").fetchone()[0]
    # Every message the stored offsets cover is in the table, and nothing more.
    assert rows == loaded == covered


def test_stream_logs_throughput_and_lag(settings: Settings) -> None:
    produce_events(settings, many_events(300))
    process = loader_process(settings, "--report-every", "0.5")
    wait_for_rows(settings.database_url, at_least=300)
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    reports = [line for line in err.splitlines() if "events/s" in line and "lag" in line]
    assert reports, err
    assert reports[-1].endswith("lag 0 messages"), reports[-1]


def test_drain_command_prints_one_summary_line_and_logs_its_progress(settings: Settings) -> None:
    produce_events(settings, many_events(50))
    process = loader_process(settings, "--drain", "--report-every", "0", "--batch-size", "20")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert out.strip().startswith("loaded 50 events, skipped 0 duplicates, 0 dead letters")
    assert len(out.strip().splitlines()) == 1
    # A drain knows where it ends, so its reports carry a rate and an ETA instead of a lag.
    progress = [line for line in err.splitlines() if "of 50 messages" in line]
    assert progress, err
    assert "ETA" in progress[-1]


def test_a_duplicate_the_loader_no_longer_remembers_is_stored_once(
    raw_db: psycopg.Connection,
) -> None:
    """The plain COPY is only for rows without a likely duplicate; one the loader forgot (a
    restart, another process) fails that COPY, and the batch is written again, deduplicated."""
    first, again, new = pageview_event(), pageview_event(), pageview_event()
    write_batch(raw_db, "g", [Record("t", 0, 0, b"k", encode(first), None)], RecentKeys())
    batch = [
        Record("t", 0, 1, b"k", encode(new), None),
        Record("t", 0, 2, b"k", encode(first), None),  # stored by the "previous process"
        Record("t", 0, 3, b"k", encode(again), None),
        Record("t", 0, 4, b"k", encode(again), None),  # repeated inside the batch
    ]

    result = write_batch(raw_db, "g", batch, RecentKeys())  # a fresh memory: a restart

    assert (result.loaded, result.duplicates) == (2, 2)
    rows = raw_db.execute("select event_id::text from raw.events order by 1").fetchall()
    assert sorted(r[0] for r in rows) == sorted(e["event_id"] for e in (first, again, new))


def test_a_duplicate_the_loader_remembers_is_skipped(
    raw_db: psycopg.Connection,
) -> None:
    recent = RecentKeys()
    event = click_event()
    write_batch(raw_db, "g", [Record("t", 0, 0, b"k", encode(event), None)], recent)

    result = write_batch(raw_db, "g", [Record("t", 0, 1, b"k", encode(event), None)], recent)

    assert (result.loaded, result.duplicates) == (0, 1)
    assert raw_db.execute("select count(*) from raw.events").fetchone()[0] == 1


def test_draining_workers_split_the_partitions_and_load_everything_once(
    settings: Settings,
) -> None:
    events = many_events(3000, devices=40)
    produce_events(settings, events)

    process = loader_process(settings, "--drain", "--workers", "2", "--batch-size", "200")
    out, err = process.communicate(timeout=300)

    assert process.returncode == 0, err
    assert out.strip().endswith("with 2 workers") and len(out.strip().splitlines()) == 1, out
    assert out.startswith("loaded 3000 events, skipped 0 duplicates"), out
    with psycopg.connect(settings.database_url) as conn:
        total, distinct = conn.execute(
            "select count(*), count(distinct event_id) from raw.events"
        ).fetchone()
        partitions = conn.execute("select count(*) from raw.ingest_offsets").fetchone()[0]
    assert total == distinct == len(events)
    assert partitions == DEFAULT_PARTITIONS  # both shares were drained


def test_rebalances_while_streaming_lose_and_duplicate_nothing(settings: Settings) -> None:
    events = many_events(20_000, devices=60)
    produce_events(settings, events)
    group = loader_process(settings, "--workers", "2", "--batch-size", "100")
    wait_for_rows(settings.database_url, at_least=1)
    joiner = loader_process(settings, "--batch-size", "100")  # a rebalance: 3 members now
    try:
        wait_for_rows(settings.database_url, at_least=scalar_rows(settings) + 500)
        joiner.send_signal(signal.SIGKILL)  # and another: its partitions move back
        joiner.wait(timeout=30)
        wait_for_rows(settings.database_url, at_least=len(events), timeout=300)
    finally:
        for process in (group, joiner):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        _, err = group.communicate(timeout=120)
    assert group.returncode == 0, err
    with psycopg.connect(settings.database_url) as conn:
        total, distinct = conn.execute(
            "select count(*), count(distinct event_id) from raw.events"
        ).fetchone()
    assert total == distinct == len(events)


def scalar_pair(database_url: str, query: str) -> tuple:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query).fetchone()


def scalar_rows(settings: Settings) -> int:
    return int(scalar(settings.database_url, "select count(*) from raw.events"))
