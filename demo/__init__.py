"""The demo, kept apart from the product: Retro Shop and the synthetic traffic of its visitors.

- ``demo.traffic``: ``retrolytics generate``, a week of coherent shop traffic produced to Kafka.
- ``demo.shop``: ``retrolytics shop``, the shop itself, wired with the Retrolytics snippet.
- ``demo.job``: ``retrolytics demo``, the main job end to end on the local stack.

Nothing under ``ingestion/``, ``orchestration/`` or ``retrolytics/language/`` imports this package.
"""
