"""Tests against the real local stack (PostgreSQL and Kafka, started by the session fixture
``stack`` in tests/conftest.py), and against a local Citus where it is installed."""
