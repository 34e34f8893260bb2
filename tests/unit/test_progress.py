"""The progress line of long loads and generations: rate and ETA from what is done so far."""

from __future__ import annotations

from ingestion.progress import Progress


def test_rate_and_eta_follow_from_the_work_done() -> None:
    progress = Progress(total=1000, what="messages", started=100.0)
    assert progress.line(250, now=110.0) == ("250 of 1000 messages (25%), 25 messages/s, ETA 30 s")


def test_nothing_done_yet_has_no_eta() -> None:
    assert Progress(total=10, started=5.0).line(0, now=5.0).endswith("ETA unknown")


def test_an_empty_job_is_complete() -> None:
    assert Progress(total=0, started=0.0).line(0, now=1.0) == (
        "0 of 0 events (100%), 0 events/s, ETA 0 s"
    )
