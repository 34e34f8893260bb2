"""Synthetic traffic of a small web shop, produced to Kafka in the raw event contract.

``retrolytics generate --events N [--days D] [--seed S]`` simulates visitors of *Retro Shop*
(``https://shop.example.com``) who land from search engines, ads, social posts and newsletters,
browse a catalogue of shoes, shirts, bags and hats, search, read reviews, fill their carts, sign
up or log in and sometimes buy. The data drives event definitions, funnels and the demo, so it is
coherent rather than random noise:

- A *person* has one device, or two (phone and computer) on which they log in to the same
  ``user_id``. Each device has a stable ``anonymous_id``, user agent, screen and locale
  (``context``), and keeps its cart and its login between sessions.
- A *session* (``session_id``) is one visit of one device. Events inside a session are less than
  30 minutes apart and visits of a device are at least 30 minutes apart, so sessionising on a
  30-minute inactivity gap reproduces ``session_id``. Visits follow a daily rhythm (quiet nights,
  busy evenings, slightly busier weekends) over the ``days`` days up to and including ``until``
  (UTC); nothing occurs outside that window.
- The landing pageview of a session carries the referrer and, for campaigns, UTM parameters in
  both the URL and ``context.utm`` (``source``, ``medium``, ``campaign``).
- Journeys drop off along home/listing → product → add to cart → cart → checkout → purchase.
  Element events carry the element hierarchy (target first, ``html`` last) and text that a
  browser on ``retrolytics shop`` reports, from the pages of ``demo.pages``; sometimes the
  target is a child of the interesting element (``span.label`` inside a button, ``img`` inside
  a product link), as in real browsers.
- ``change`` events never carry values (none are captured, passwords included).
- Custom events (``type: custom``): ``product_viewed`` (product_id, name, category, price),
  ``search_performed`` (query, result_count), ``signup_completed`` (method, source) and
  ``purchase_completed`` (order_id, revenue, currency, item_count, category — the category of
  the most expensive line). ``identify`` events mark logins and signups; later events of that
  device carry the ``user_id``.
- Delivery: messages come in the order the collector received them. About 1% arrive hours late
  (``received_at`` 1 to 6 h after ``occurred_at``) and about 0.2% are sent twice, as a client
  retrying after a lost acknowledgement would: the same event (same ``event_id`` and client
  fields) received again 1 to 30 s later, so only ``received_at`` differs. The loader must store
  each ``event_id`` once.
- Deterministic: the same arguments give the same messages in the same order. Exactly
  ``events`` messages (duplicates included) are generated: whole persons are simulated until
  the total is reached and the last one is cut short.

The events are shared, read-only dictionaries: nested objects (hierarchies, page, context) are
reused between events, so copy an event before changing it.

Modules, one concern each: ``population`` (persons, devices, traffic sources, the daily rhythm),
``targets`` (the elements visitors act on, from ``demo.pages``), ``visit`` (one session, page
by page), ``delivery`` (receive times, late and retried messages, the contract event),
``schedule`` (the whole run in received order) and ``to_kafka`` (``retrolytics generate``).
"""

from demo.traffic.schedule import TrafficStats, generate_events
from demo.traffic.to_kafka import produce

__all__ = ["TrafficStats", "generate_events", "produce"]
