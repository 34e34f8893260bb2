"""Schedules (UTC, the partitions' time zone).

- ``derive_today_hourly``: at minute 5 of every hour, re-derive today's partition, so the marts
  are at most about an hour behind the loader.
- ``finalise_yesterday_daily``: at 02:00, derive yesterday's partition once more, after the
  events that arrived late for it (the run's lookback reaches back another day as well).
- ``maintain_raw_events_daily``: at 01:00, the trigram index of the day that has just cooled.
- ``check_raw_events_every_15_minutes``: the freshness check of ``raw.events``.
- ``drain_topic_every_5_minutes``: the loader in drain mode, for deployments without the
  long-running loader; stopped by default because the long-running loader is the normal way.
"""

from datetime import UTC, timedelta

import dagster as dg

from orchestration.jobs import check_raw_events, derive, load_raw_events, maintain_raw_events
from orchestration.partitions import partition_key_for


@dg.schedule(
    job=derive,
    cron_schedule="5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Re-derive today's partition every hour.",
)
def derive_today_hourly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    moment = context.scheduled_execution_time.astimezone(UTC)
    key = partition_key_for(moment.date())
    return dg.RunRequest(run_key=f"today-{moment:%Y-%m-%dT%H}", partition_key=key)


@dg.schedule(
    job=derive,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Finalise yesterday's partition once its late events are in.",
)
def finalise_yesterday_daily(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    yesterday = context.scheduled_execution_time.astimezone(UTC).date() - timedelta(days=1)
    key = partition_key_for(yesterday)
    return dg.RunRequest(run_key=f"finalise-{key}", partition_key=key)


maintain_raw_events_daily = dg.ScheduleDefinition(
    name="maintain_raw_events_daily",
    job=maintain_raw_events,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

check_raw_events_every_15_minutes = dg.ScheduleDefinition(
    name="check_raw_events_every_15_minutes",
    job=check_raw_events,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

drain_topic_every_5_minutes = dg.ScheduleDefinition(
    name="drain_topic_every_5_minutes",
    job=load_raw_events,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="For deployments without `retrolytics load` running: drain the topic.",
)

schedules = [
    derive_today_hourly,
    finalise_yesterday_daily,
    maintain_raw_events_daily,
    check_raw_events_every_15_minutes,
    drain_topic_every_5_minutes,
]
