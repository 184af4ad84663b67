"""Rate limits: message budgets per sender, and log lines that a flood cannot multiply.

* :class:`TokenBuckets`: a token bucket per key (a device, a class of senders), for the edge's
  limit on messages per second (``bus.maxMessageRate``).
* :class:`ThrottledLog`: one log line per key and minute, with a count of what it stood for, so a
  sender that repeats a bad message a thousand times a second costs one line a minute, and the
  first one is never lost.

Both keep a bounded number of keys: keys come from the senders, and a sender must not be able to
grow the edge's memory by inventing new ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass


class TokenBuckets:
    """``allow(key)``: whether one more message from ``key`` fits its budget of ``rate`` per
    second, with bursts up to ``burst`` (default: two seconds' worth)."""

    def __init__(self, rate: float, burst: float | None = None, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else 2 * rate
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        """key -> [tokens, last refill (monotonic)]; least recently used first."""

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = [self.burst, now]
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        return False

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)


@dataclass
class _Window:
    started: float
    suppressed: int = 0
    last_message: str = ""
    scheduled: bool = False


class ThrottledLog:
    """Log through ``logger`` at most once per ``key`` and ``interval`` seconds.

    The first occurrence in a window is logged at once; later ones are counted, and when the
    window ends (on the next occurrence, or by a timer when an event loop runs) one line says how
    many there were, with the last of them.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        level: int = logging.WARNING,
        max_keys: int = 1000,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.level = level
        self.max_keys = max_keys
        self._windows: OrderedDict[tuple[str, ...], _Window] = OrderedDict()
        self.logged = 0
        """Lines written (for tests and metrics)."""

    def log(self, key: tuple[str, ...], message: str) -> None:
        """Log ``message`` (already formatted) for ``key``, or count it if ``key`` spoke recently."""
        now = time.monotonic()
        window = self._windows.get(key)
        if window is not None and now - window.started < self.interval:
            window.suppressed += 1
            window.last_message = message
            if not window.scheduled:
                window.scheduled = self._schedule(key, window.started + self.interval - now)
            return
        if window is not None and window.suppressed:
            self._summary(window)
        if window is None and len(self._windows) >= self.max_keys:
            _, oldest = self._windows.popitem(last=False)
            if oldest.suppressed:
                self._summary(oldest)
        self._windows[key] = _Window(started=now)
        self._windows.move_to_end(key)
        self._emit(message)

    def flush(self) -> None:
        """Write the counts of every open window now (at shutdown)."""
        for window in self._windows.values():
            if window.suppressed:
                self._summary(window)
                window.suppressed = 0

    def _schedule(self, key: tuple[str, ...], delay: float) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False  # no loop: the count is written with the next occurrence instead
        loop.call_later(max(0.0, delay), self._expire, key)
        return True

    def _expire(self, key: tuple[str, ...]) -> None:
        window = self._windows.get(key)
        if window is None:
            return
        window.scheduled = False
        if window.suppressed:
            self._summary(window)
            window.suppressed = 0
            window.started = time.monotonic()  # the summary counts as this window's line

    def _summary(self, window: _Window) -> None:
        self._emit(
            f"{window.last_message} (and {window.suppressed} more like it in the last {self.interval:g}s)"
        )

    def _emit(self, message: str) -> None:
        self.logged += 1
        self.logger.log(self.level, "%s", message)
