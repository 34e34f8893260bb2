"""Daily partitions in UTC: the same days ``raw.events`` is range-partitioned by.

The partition window reaches dbt as the variables ``start`` and ``end`` (half-open, UTC), plus
``lookback_hours`` so that late events that arrived after their day ran are picked up again.
Today's partition exists (``end_offset=1``) so the hourly schedule can keep it current.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

import dagster as dg

HISTORY_START_ENV = "RETROLYTICS_HISTORY_START"
DEFAULT_HISTORY_START = "2024-01-01"


def history_start() -> str:
    """The first day with partitions, ``YYYY-MM-DD`` from the environment or the default."""
    value = os.environ.get(HISTORY_START_ENV) or DEFAULT_HISTORY_START
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{HISTORY_START_ENV}={value!r} is not a date; expected YYYY-MM-DD, e.g. 2024-01-01"
        ) from None
    return value


daily_partitions = dg.DailyPartitionsDefinition(
    start_date=history_start(), timezone="UTC", end_offset=1
)


def utc_timestamp(moment: datetime) -> str:
    """``2026-11-24 00:00:00+00:00``: what dbt casts with ``::timestamptz``, unambiguous."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def dbt_window(window: dg.TimeWindow, lookback_hours: int | None) -> dict[str, str | int]:
    """The dbt window of one partition (or of a single-run backfill's whole range), as
    ``retrolytics.warehouse.runner.window_environment`` takes it."""
    variables: dict[str, str | int] = {
        "start": utc_timestamp(window.start),
        "end": utc_timestamp(window.end),
    }
    if lookback_hours is not None:
        if lookback_hours < 0:
            raise ValueError(f"lookback_hours must be 0 or more, got {lookback_hours}")
        variables["lookback_hours"] = lookback_hours
    return variables


def partition_key_for(day: date) -> str:
    return day.strftime("%Y-%m-%d")
