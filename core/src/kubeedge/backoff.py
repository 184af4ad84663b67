"""How long to wait before the next attempt to reach something that is down (a broker, a device).

Exponential, capped, with "equal jitter": each wait is a random point in the upper half of the
exponential step, so clients that lost the same peer at the same moment do not come back in step,
and none retries sooner than half the step.
"""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, first: float, limit: float) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` >= 1 failures so far)."""
    step = min(limit, first * 2 ** min(max(attempt - 1, 0), 16))
    return float(step * random.uniform(0.5, 1.0))  # noqa: S311 - spreading load, not security
