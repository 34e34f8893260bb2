"""BI on the marts: ``retrolytics bi up | down`` runs an Apache Superset, in an environment of its
own under the state folder, with a dashboard provisioned as code from the project's metadata."""


class BiError(Exception):
    """``bi up`` or ``bi down`` cannot go on; the message says what is wrong and what to do."""
