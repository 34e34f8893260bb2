"""The demo, kept apart from the product: Retro Shop and the synthetic traffic of its visitors.

- ``demo.catalogue``: the shop's products and the custom-event properties both sides send.
- ``demo.pages``: each page of the shop described once, as an element tree (``demo.dom``),
  from which the shop's HTML, the generator's element hierarchies and the analysts' outline
  of the DOM are derived.
- ``demo.traffic``: ``retrolytics generate``, a week of coherent shop traffic produced to Kafka.
- ``demo.shop``: ``retrolytics shop``, the shop itself, wired with the Retrolytics snippet.
- ``demo.job``: ``retrolytics demo``, the main job end to end on the local stack;
  ``demo.sessions`` prints its sessions per day.

Nothing under ``ingestion/``, ``orchestration/`` or ``retrolytics/language/`` imports this package.
"""
