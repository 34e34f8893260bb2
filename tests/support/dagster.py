"""What the Dagster tests select when the whole asset graph is not the point."""

from __future__ import annotations

import dagster as dg

DEFINED_EVENTS = dg.AssetKey(["marts", "defined_events"])


def defined_events_and_inputs(defs: dg.Definitions) -> list[dg.AssetKey]:
    """``marts/defined_events`` and the materializable assets it reads: the partitioned path of
    the graph in a fraction of the whole graph's time."""
    graph = defs.resolve_asset_graph()
    selection = dg.AssetSelection.assets(DEFINED_EVENTS).upstream().resolve(graph)
    return sorted(key for key in selection if graph.get(key).is_materializable)
