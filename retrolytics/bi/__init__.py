"""BI on the marts: ``retrolytics bi up | down`` runs an Apache Superset, in an environment of its
own under the state folder, with a dashboard provisioned as code from the project's metadata."""

MARTS_SCHEMA = "marts"  # the one schema the BI login reads, and the dashboard's datasets


class BiError(Exception):
    """``bi up`` or ``bi down`` cannot go on; the message says what is wrong and what to do."""
