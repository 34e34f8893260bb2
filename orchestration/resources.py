"""Resources: the warehouse/Kafka settings every step shares, and the dbt CLI.

Settings come from ``ingestion.settings.Settings.from_env()`` (``RETROLYTICS_DATABASE_URL`` and
friends, else the local stack's ``stack.env``) when a run starts, not when the code location
loads: the UI keeps working while the database is down, and a run picks up the stack's current
ports. Fields set on the resource override the environment (tests point it at a fresh database).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import dagster as dg
import psycopg
from dagster_dbt import DbtCliResource

from ingestion import schema
from ingestion.loader import Loader, LoadStats
from ingestion.settings import Settings
from orchestration.project import DEFINITIONS_DIR, dbt_environment, dbt_executable, dbt_project
from retrolytics.language.check import load_redaction
from retrolytics.warehouse.runner import environment


class RetrolyticsResource(dg.ConfigurableResource):
    """Where raw events come from and where the warehouse lives."""

    database_url: str | None = None
    kafka_bootstrap: str | None = None
    topic: str | None = None
    consumer_group: str | None = None
    loader_batch_size: int = 5000

    def settings(self) -> Settings:
        return Settings.from_env().with_overrides(
            database_url=self.database_url,
            kafka_bootstrap=self.kafka_bootstrap,
            topic=self.topic,
            consumer_group=self.consumer_group,
        )

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.settings().dbt_url, autocommit=True)

    def drain(self) -> LoadStats:
        """Load the topic up to its current end into ``raw.events``, exactly once, then return;
        under the privacy rules of the code location's declarations, as ``retrolytics load``."""
        loader = Loader(
            self.settings(),
            batch_size=self.loader_batch_size,
            redaction=load_redaction(DEFINITIONS_DIR),
        )
        try:
            return loader.drain()
        finally:
            loader.close()

    def index_cooled_partitions(self) -> list[str]:
        """The trigram indexes of the partitions whose day has cooled, as the database's owner
        (``retrolytics maintain``); returns the partitions indexed now."""
        with psycopg.connect(self.settings().database_url, autocommit=True) as conn:
            return schema.index_cooled_partitions(conn)

    @contextlib.contextmanager
    def dbt_env(self) -> Iterator[None]:
        """Point dbt (a subprocess that inherits this environment) at these settings."""
        with environment(dbt_environment(self.settings())):
            yield


def dbt_resource() -> DbtCliResource:
    """dbt runs from ``dbt_project/`` with the env-driven ``profiles.yml`` kept there."""
    return DbtCliResource(
        project_dir=dbt_project,
        profiles_dir=os.fspath(dbt_project.project_dir),
        dbt_executable=dbt_executable(),
    )
