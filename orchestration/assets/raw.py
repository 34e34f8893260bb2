"""``raw.events``: the upstream asset everything is derived from.

The loader fills it as its own long-running process (``retrolytics load``), so Dagster does not
materialize it; it is an external asset. Deployments without a long-running loader run the
``load_raw_events`` job instead, which drains the topic to its current end and reports a
materialization of this asset with what it loaded. The ``maintain_raw_events`` job builds the
trigram index of each day's partition once the day has cooled (``retrolytics maintain``).
"""

import dagster as dg

from orchestration.resources import RetrolyticsResource

RAW_EVENTS = dg.AssetKey(["raw", "events"])

raw_events = dg.AssetSpec(
    key=RAW_EVENTS,
    group_name="raw",
    kinds={"postgres", "kafka"},
    description=(
        "Every captured event, exactly once, as the loader wrote it from the Kafka topic. "
        "Range-partitioned by day on occurred_at; on Citus distributed on anonymous_id."
    ),
    metadata={
        "dagster/table_name": "raw.events",
        "written_by": "retrolytics load (long-running), or the load_raw_events job (drain)",
    },
)


@dg.op(
    description="Load the Kafka topic into raw.events up to its current end, then stop.",
    tags={"kind": "kafka"},
)
def drain_topic_into_raw_events(
    context: dg.OpExecutionContext, retrolytics: RetrolyticsResource
) -> None:
    settings = retrolytics.settings()
    stats = retrolytics.drain()
    context.log.info(stats.summary())
    context.log_event(
        dg.AssetMaterialization(
            asset_key=RAW_EVENTS,
            description=stats.summary(),
            metadata={
                "loaded": dg.MetadataValue.int(stats.loaded),
                "duplicates_skipped": dg.MetadataValue.int(stats.duplicates),
                "dead_letters": dg.MetadataValue.int(stats.dead_letters),
                "batches": dg.MetadataValue.int(stats.batches),
                "topic": settings.topic,
            },
        )
    )


@dg.job(
    description=(
        "Drain mode of the loader, for deployments without the long-running `retrolytics load`: "
        "load what the topic holds now into raw.events, exactly once, and exit."
    ),
    tags={"retrolytics/stage": "load"},
)
def load_raw_events() -> None:
    drain_topic_into_raw_events()


@dg.op(
    description=(
        "Build the trigram (GIN) index of each raw.events partition whose day has cooled; the "
        "loader fills the recent days without it (ingestion.schema.GIN_AFTER)."
    ),
    tags={"kind": "postgres"},
)
def index_cooled_partitions(
    context: dg.OpExecutionContext, retrolytics: RetrolyticsResource
) -> None:
    indexed = retrolytics.index_cooled_partitions()
    context.log.info(f"indexed {len(indexed)} partitions: {', '.join(indexed) or 'none'}")


@dg.job(
    description="Storage upkeep of raw.events, as `retrolytics maintain` without Citus columnar.",
    tags={"retrolytics/stage": "maintain"},
)
def maintain_raw_events() -> None:
    index_cooled_partitions()
