"""What a test saw of its devices: every report and state change on the bus, and the runtime's log.

The twin keeps only the latest value; a test that fails needs the story (what was reported, when,
which errors, which states), and a test that waits needs to know when the outcome is already
decided (the device went offline, the property has an error) instead of waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from kubeedge.api import topics


@dataclass(frozen=True)
class Report:
    """One property entry of a ``twin/update`` a mapper sent."""

    at: float
    """``time.monotonic()`` when the test saw it."""
    key: str
    prop: str
    value: str | None
    error: str | None


@dataclass(frozen=True)
class StateChange:
    at: float
    key: str
    state: str
    reason: str | None = None
    """Why, when the runtime says (its ``reason`` field)."""


class BusHistory:
    """Reports and states of every device, as published on the bus by mappers."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.reports: list[Report] = []
        self.states: list[StateChange] = []
        self._synced = asyncio.Event()
        self._sync_topic = f"kubeedge-conformance/sync/{uuid.uuid4().hex}"

    async def attach(self, bus: Any, timeout: float = 10) -> None:
        """Subscribe on ``bus``; returns once the subscriptions are active (a message looped back)."""
        bus.subscribe(f"{topics.DEVICE_PREFIX}+/+/{topics.TWIN_UPDATE}", self._on_twin, qos=1)
        bus.subscribe(f"{topics.DEVICE_PREFIX}+/+/{topics.STATE_UPDATE}", self._on_state, qos=1)
        bus.subscribe(self._sync_topic, lambda _t, _p: self._synced.set(), qos=1)
        bus.publish(self._sync_topic, b"sync", qos=1)
        await asyncio.wait_for(self._synced.wait(), timeout)

    @staticmethod
    def _key(topic: str) -> str:
        namespace, name = topic[len(topics.DEVICE_PREFIX) :].split("/")[:2]
        return f"{namespace}/{name}"

    def _on_twin(self, topic: str, payload: bytes) -> None:
        try:
            twins = json.loads(payload).get("twin") or {}
        except (ValueError, AttributeError):
            return
        now, key = time.monotonic(), self._key(topic)
        for prop, twin in twins.items():
            if not isinstance(twin, dict) or ("actual" not in twin and "metadata" not in twin):
                continue  # a desired value set by a client, not a mapper's report
            value = (twin.get("actual") or {}).get("value")
            error = (twin.get("metadata") or {}).get("error")
            if value is None and error is None:
                continue
            self.reports.append(Report(now, key, prop, value, error))

    def _on_state(self, topic: str, payload: bytes) -> None:
        try:
            body = json.loads(payload)
            state, reason = body.get("state"), body.get("reason")
        except (ValueError, AttributeError):
            return
        if isinstance(state, str):
            reason = reason if isinstance(reason, str) else None
            self.states.append(StateChange(time.monotonic(), self._key(topic), state, reason))

    # ----------------------------------------------------------------- questions

    def of(self, key: str, prop: str, since: float = 0.0) -> list[Report]:
        return [r for r in self.reports if r.key == key and r.prop == prop and r.at >= since]

    def states_of(self, key: str, since: float = 0.0) -> list[StateChange]:
        return [s for s in self.states if s.key == key and s.at >= since]

    def ago(self, at: float) -> str:
        return f"{time.monotonic() - at:.2f}s ago"

    def describe_states(self, key: str) -> str:
        changes = self.states_of(key)
        if not changes:
            return "no state reported"
        return ", ".join(
            f"{c.state} at {c.at - self.started:.2f}s" + (f" ({c.reason})" if c.reason else "")
            for c in changes[-8:]
        )

    def describe_reports(self, key: str, prop: str, since: float = 0.0) -> str:
        reports = self.of(key, prop)
        if not reports:
            return "nothing reported yet"
        last_value = next((r for r in reversed(reports) if r.value is not None), None)
        last_error = next((r for r in reversed(reports) if r.error is not None), None)
        recent = len([r for r in reports if r.at >= since])
        parts = []
        if last_value is not None:
            parts.append(f"last value {last_value.value!r} {self.ago(last_value.at)}")
        else:
            parts.append("no value reported")
        if last_error is not None:
            parts.append(f"last error {last_error.error!r} {self.ago(last_error.at)}")
        parts.append(f"{recent} report(s) during the wait")
        return "; ".join(parts)


class RuntimeLog(logging.Handler):
    """The last lines the runtime and the mapper logged (INFO and up), for failure messages."""

    def __init__(self, names: list[str], lines: int = 200) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=lines)
        self._loggers = [logging.getLogger(n) for n in dict.fromkeys(names)]
        self._levels: list[int] = []
        self._started = time.monotonic()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(
                f"{record.created - time.time() + time.monotonic() - self._started:7.2f}s "
                + self.format(record)
            )
        except Exception:  # a log line that cannot be formatted must not break the test
            self.handleError(record)

    def attach(self) -> None:
        for logger in self._loggers:
            self._levels.append(logger.level)
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
            logger.addHandler(self)

    def detach(self) -> None:
        for logger, level in zip(self._loggers, self._levels, strict=False):
            logger.removeHandler(self)
            logger.setLevel(level)

    def tail(self, count: int = 12, containing: str = "") -> list[str]:
        return [line for line in self.lines if containing in line][-count:]
