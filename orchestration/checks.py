"""Asset checks written here; the dbt tests become asset checks through dagster-dbt itself.

``raw_events_fresh`` fails when the newest event in ``raw.events`` (by ``received_at``, the
collector's clock, which a client with a wrong clock cannot move) is older than a bound: traffic
stopped, the collector is down, or the loader fell behind.
"""

import os
from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration.assets.raw import RAW_EVENTS
from orchestration.resources import RetrolyticsResource

MAX_AGE_ENV = "RETROLYTICS_RAW_EVENTS_MAX_AGE_MINUTES"
DEFAULT_MAX_AGE_MINUTES = 60
# Only recent daily partitions are read, which keeps the check cheap on years of history. Nearly
# every event occurs moments before it is received; one that arrives days late (an offline
# device) is not what "traffic is flowing" means anyway.
SCAN_SLACK = timedelta(days=1)


def default_max_age_minutes() -> int:
    value = os.environ.get(MAX_AGE_ENV)
    if not value:
        return DEFAULT_MAX_AGE_MINUTES
    try:
        minutes = int(value)
    except ValueError:
        raise ValueError(f"{MAX_AGE_ENV}={value!r} is not a whole number of minutes") from None
    if minutes <= 0:
        raise ValueError(f"{MAX_AGE_ENV} must be a positive number of minutes, got {minutes}")
    return minutes


class FreshnessConfig(dg.Config):
    max_age_minutes: int | None = None  # None: RETROLYTICS_RAW_EVENTS_MAX_AGE_MINUTES, else 60


def newest_received_at(retrolytics: RetrolyticsResource, now: datetime, max_age: timedelta):
    """The newest ``received_at`` in the recent partitions, and the count in the last hour."""
    with retrolytics.connect() as conn:
        exists = conn.execute("select to_regclass('raw.events') is not null").fetchone()[0]
        if not exists:
            return None, 0
        return conn.execute(
            "select max(received_at), count(*) filter (where received_at >= %(hour_ago)s) "
            "from raw.events where occurred_at >= %(since)s",
            {"since": now - max_age - SCAN_SLACK, "hour_ago": now - timedelta(hours=1)},
        ).fetchone()


@dg.asset_check(
    asset=RAW_EVENTS,
    description="The newest event was received less than max_age_minutes ago.",
)
def raw_events_fresh(
    config: FreshnessConfig, retrolytics: RetrolyticsResource
) -> dg.AssetCheckResult:
    minutes = config.max_age_minutes or default_max_age_minutes()
    max_age = timedelta(minutes=minutes)
    now = datetime.now(tz=UTC)
    newest, last_hour = newest_received_at(retrolytics, now, max_age)
    metadata: dict[str, dg.RawMetadataValue] = {
        "max_age_minutes": minutes,
        "events_received_last_hour": int(last_hour or 0),
    }
    if newest is None:
        return dg.AssetCheckResult(
            passed=False,
            metadata=metadata,
            description=f"no event received in the last {minutes} minutes (raw.events is "
            "empty or has nothing recent)",
        )
    age = now - newest
    metadata["newest_received_at"] = dg.MetadataValue.timestamp(newest)
    metadata["age_minutes"] = round(age.total_seconds() / 60, 1)
    passed = age <= max_age
    verdict = "within" if passed else "older than"
    return dg.AssetCheckResult(
        passed=passed,
        metadata=metadata,
        description=f"newest event received {age} ago, {verdict} the {minutes}-minute bound",
    )
