"""Desired values that converge, level-triggered: the twin module owns it.

Whenever a writable property's reported value differs from its desired (expected) value, the
twin module sends the delta again, with back-off per property, until the reading holds or a new
desired value arrives. Triggers: a report that differs (the device restarted with reset state,
someone changed it by hand, a write failed), a device that comes back online, the same desired
value set again (retried at once), and a timer for devices whose mapper reports only changes.

Why the twin module and not the mapper runtime: a KubeEdge Go mapper on our bus writes on every
delta it receives and never compares readings with desired values itself; with the twin module
re-sending, it converges too. KubeEdge's edgecore re-sends the delta after *every* report while
expected != actual, which makes mappers rewrite the device every cycle; here the re-sends are
spaced by an exponential back-off with jitter (``initialBackoff`` doubling up to ``maxBackoff``),
and after ``errorAfter`` writes that did not hold the twin says so in ``metadata.error`` (shown
in ``kubeedge device list`` ERRORS), while retries go on at the capped rate. A write counts as not
holding only when a reading taken after its delta went out (and ``settleMs`` more) still differs:
readings already on their way when the delta left prove nothing, and re-sending before a fresh
reading would only pile deltas onto a write that is still in flight.

A value that held for ``hold`` seconds starts the count over: a device that keeps reverting
keeps its attempt count (and its error), one that reverted once a day does not.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubeedge.backoff import backoff_delay

NOT_HOLDING = "desired value "
"""How the errors this module puts on a twin start (so they are told apart from a mapper's)."""


class ConvergenceSettings(BaseModel):
    """``modules.twin.settings.convergence`` in edge.yaml."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    initial_backoff: float = Field(default=2.0, gt=0)
    """Seconds before the first re-send of a desired value that does not hold (doubles each time)."""
    max_backoff: float = Field(default=300.0, gt=0)
    """Longest wait between re-sends, seconds: the rate at which a refused value is retried."""
    error_after: int = Field(default=3, ge=1)
    """Writes that did not hold before the twin shows an error."""
    hold: float = Field(default=30.0, ge=0)
    """Seconds a value must hold before its attempt count starts over."""
    settle_ms: int = Field(default=500, ge=0)
    """A reading counts as proof that a write did not hold only if it was taken this long after
    the delta went out (a read already in flight, or queued before the write, proves nothing)."""


@dataclass(slots=True)
class Attempts:
    """Re-sends of one property's desired value."""

    expected: str
    sent: int = 0
    """Deltas sent for this desired value since it last held for ``hold`` seconds."""
    failed: int = 0
    """Of those, how many a later reading proved did not hold (what the error counts)."""
    sent_ms: int = 0
    """Wall-clock time (ms) the last delta went out; readings taken before it prove nothing."""
    proven: bool = False
    """A reading taken after the last delta (and ``settleMs``) still differs."""
    next_at: float = 0.0
    """Monotonic time before which no delta is sent again."""
    held_since: float | None = None
    """When the reading last started to equal the desired value (None: it differs)."""
    armed: float = -1.0
    """The ``next_at`` a timer is already queued for (one timer per property, not per report)."""


class Convergence:
    """Which properties' desired values must be sent again, and when."""

    def __init__(self, settings: ConvergenceSettings) -> None:
        self.settings = settings
        self.attempts: dict[tuple[str, str], Attempts] = {}
        self._timers: list[tuple[float, str, str]] = []
        self.on_armed: Callable[[], None] | None = None
        """Called when a re-send is scheduled (the twin module wakes its timer)."""

    def sent(self, key: str, name: str, expected: str, now: float, wall_ms: int) -> None:
        """A delta carrying ``expected`` for this property went out at ``now`` (``wall_ms``)."""
        entry = self.attempts.get((key, name))
        if entry is None or entry.expected != expected:
            entry = self.attempts[(key, name)] = Attempts(expected)
        entry.sent += 1
        entry.sent_ms = wall_ms
        entry.proven = False
        entry.next_at = now + backoff_delay(
            entry.sent, first=self.settings.initial_backoff, limit=self.settings.max_backoff
        )
        self._arm(key, name, entry)

    def retry_now(self, key: str, name: str) -> None:
        """The same desired value was set again: sent at once, counted afresh."""
        entry = self.attempts.get((key, name))
        if entry is not None:
            entry.next_at = 0.0
            entry.sent = entry.failed = 0  # a fresh try: its error goes until it fails again

    def observe(
        self, key: str, name: str, expected: str, diverged: bool, now: float, read_ms: int | None = None
    ) -> bool:
        """Note whether the reading (taken at ``read_ms``, if this is a new one) differs; True if
        a delta is due now. After a delta, only a reading taken ``settleMs`` after it may prove
        that the write did not hold; until one does, nothing is sent again (the write may still
        be on its way)."""
        entry = self.attempts.get((key, name))
        if entry is not None and entry.expected != expected:
            entry = None  # a new desired value: its count starts at zero
            del self.attempts[(key, name)]
        if not diverged:
            if entry is not None and entry.held_since is None:
                entry.held_since = now
            return False
        if entry is None:
            entry = self.attempts[(key, name)] = Attempts(expected)
        elif entry.held_since is not None:
            if now - entry.held_since >= self.settings.hold:
                entry.sent = entry.failed = 0  # it held long enough: a new divergence starts over
                entry.next_at = 0.0
            entry.held_since = None
        if entry.sent and not entry.proven:
            if read_ms is None or read_ms < entry.sent_ms + self.settings.settle_ms:
                return False  # no reading taken after the write yet: it may still land
            entry.proven = True
            entry.failed += 1
        if now >= entry.next_at:
            return True
        self._arm(key, name, entry)
        return False

    def _arm(self, key: str, name: str, entry: Attempts) -> None:
        if entry.armed != entry.next_at:
            entry.armed = entry.next_at
            heapq.heappush(self._timers, (entry.next_at, key, name))
            if self.on_armed is not None:
                self.on_armed()

    def not_holding(self, key: str, name: str) -> int:
        """Writes a later reading proved did not hold, once that reaches ``errorAfter`` (else 0)."""
        entry = self.attempts.get((key, name))
        if entry is None or entry.held_since is not None or entry.failed < self.settings.error_after:
            return 0
        return entry.failed

    def forget(self, key: str, name: str | None = None) -> None:
        if name is not None:
            self.attempts.pop((key, name), None)
            return
        for pair in [p for p in self.attempts if p[0] == key]:
            del self.attempts[pair]

    def next_timer(self) -> float | None:
        """When the earliest pending re-send is due (monotonic), if any."""
        while self._timers:
            at, key, name = self._timers[0]
            entry = self.attempts.get((key, name))
            if entry is None or entry.held_since is not None or entry.next_at != at:
                heapq.heappop(self._timers)  # stale: held since, re-armed, or forgotten
                continue
            return at
        return None

    def due(self, now: float) -> list[tuple[str, str]]:
        """Properties whose re-send time has come (each once); the caller checks them again."""
        out = []
        while self._timers and self._timers[0][0] <= now:
            at, key, name = heapq.heappop(self._timers)
            entry = self.attempts.get((key, name))
            if entry is not None and entry.held_since is None and entry.next_at == at:
                entry.armed = -1.0
                out.append((key, name))
        return out

    def expire(self, now: float) -> None:
        """Drop entries whose value has held for ``hold`` seconds (memory stays bounded)."""
        hold = self.settings.hold
        for pair in [
            p for p, e in self.attempts.items() if e.held_since is not None and now - e.held_since >= hold
        ]:
            del self.attempts[pair]
