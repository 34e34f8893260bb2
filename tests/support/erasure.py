"""The erasure key the tests hash identities with, and settings that carry it."""

from __future__ import annotations

from dataclasses import replace

from ingestion.settings import Settings

KEY = "a-test-erasure-key"


def with_erasure_key(settings: Settings) -> Settings:
    return replace(settings, erasure_key=KEY)
