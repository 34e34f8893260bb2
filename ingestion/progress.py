"""A rate and an ETA a person can read while a long load or generation runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Progress:
    """Progress through ``total`` items, measured from when this object was made."""

    total: int
    what: str = "events"
    started: float = field(default_factory=time.monotonic)

    def line(self, done: int, now: float | None = None) -> str:
        """``"120000 of 1000000 events (12%), 20500 events/s, ETA 43 s"``."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        share = 100 * done / self.total if self.total else 100.0
        left = max(self.total - done, 0)
        return (
            f"{done} of {self.total} {self.what} ({share:.0f}%), "
            f"{rate:.0f} {self.what}/s, ETA {_eta(left, rate)}"
        )


def _eta(left: int, rate: float) -> str:
    if left == 0:
        return "0 s"
    return f"{left / rate:.0f} s" if rate > 0 else "unknown"
