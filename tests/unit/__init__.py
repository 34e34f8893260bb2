"""Tests without PostgreSQL or Kafka: the language, the contract, the selector compiler, the
funnel reference, the demo shop's DOM, the Dagster definitions."""
