"""``retrolytics load --workers N``: N loader processes side by side, each its own Python.

The topic's partitions are the unit of parallelism, so N above the partition count gains
nothing (``retrolytics.events`` is created with 6). Streaming workers join one consumer group
and Kafka hands each a share of the partitions, rebalancing when one comes or goes; draining
workers take fixed shares (partition % N). Each worker writes its batches with their offsets
in one transaction, exactly as a single loader does, so a rebalance or a killed worker loses
and duplicates nothing. SIGTERM / SIGINT reach every worker: each finishes its batch in hand.
A worker whose parent died (SIGKILL, an out-of-memory kill) stops the same way within a second,
rather than loading on unsupervised.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time

from ingestion.loader import GAVE_UP_EXIT_CODE, Loader, LoaderGaveUp, LoadStats, RetryPolicy
from ingestion.settings import Settings

log = logging.getLogger("retrolytics.workers")


def main(
    settings: Settings,
    *,
    workers: int,
    drain: bool,
    loader_options: dict,
    retry: RetryPolicy | None = None,
) -> int:
    """Run the workers to their end; print one summary line; the worst exit code wins."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    context = multiprocessing.get_context("spawn")  # no Kafka or PostgreSQL state crosses a fork
    results = context.Queue()
    started = time.monotonic()
    processes = [
        context.Process(
            target=_work,
            args=(settings, drain, (index, workers), loader_options, retry, results, os.getpid()),
            name=f"loader-{index}",
        )
        for index in range(workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in processes:
        process.join()
    totals = LoadStats(started=started)
    for _ in processes:
        try:
            loaded, duplicates, dead_letters, batches, erased, redacted = results.get(timeout=5)
        except queue.Empty:
            continue  # a worker that died without reporting; its exit code says so
        totals.loaded += loaded
        totals.duplicates += duplicates
        totals.dead_letters += dead_letters
        totals.batches += batches
        totals.erased += erased
        totals.redacted += redacted
    print(f"{totals.summary()} with {workers} workers", flush=True)
    codes = [process.exitcode or 0 for process in processes]
    return GAVE_UP_EXIT_CODE if GAVE_UP_EXIT_CODE in codes else max(codes, key=abs)


def _work(
    settings: Settings,
    drain: bool,
    share: tuple[int, int],
    loader_options: dict,
    retry: RetryPolicy | None,
    results: multiprocessing.Queue,
    parent: int,
) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(name)s[{share[0]}] %(message)s")
    loader = Loader(settings, retry=retry, **loader_options)
    signal.signal(signal.SIGTERM, loader.request_stop)
    signal.signal(signal.SIGINT, loader.request_stop)
    threading.Thread(
        target=_stop_when_orphaned, args=(parent, loader), name="parent-watch", daemon=True
    ).start()
    code = 0
    try:
        stats = loader.drain(share) if drain else loader.stream()
    except LoaderGaveUp as exc:
        log.error("%s; %s", exc, loader.stats.summary())
        stats, code = loader.stats, GAVE_UP_EXIT_CODE
    finally:
        loader.close()
    results.put(
        (
            stats.loaded,
            stats.duplicates,
            stats.dead_letters,
            stats.batches,
            stats.erased,
            stats.redacted,
        )
    )
    raise SystemExit(code)


def _stop_when_orphaned(parent: int, loader: Loader) -> None:
    """Ask ``loader`` to stop (as SIGTERM does) once ``parent``, the pid of the process that
    started this worker, is no longer its parent: it died (SIGKILL, an out-of-memory kill),
    perhaps before this thread started, and the worker was handed to another process."""
    while os.getppid() == parent:
        time.sleep(0.5)
    log.warning("the parent process %d is gone: stopping after the batch in hand", parent)
    loader.request_stop()
