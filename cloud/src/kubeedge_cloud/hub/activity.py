"""The hub's log of nodes connecting, syncing and disconnecting: one INFO line per second at most.

Each event is a DEBUG line of its own (``-v`` shows them); at INFO, what happened in the last
second is one line, naming the first few nodes::

    hub: 1 node(s) connected (edge-1); 1 synced (edge-1): 0 object(s) sent, 2 held already
    hub: 5000 node(s) connected (edge-0001, edge-0002, edge-0003 and 4997 more); 4210 synced ...

A connect storm of 5,000 edges (three events each) is then a few dozen lines, not 15,000, and a
single edge still reads as one line naming it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

INTERVAL_SECONDS = 1.0
NAMED = 3
"""Nodes named per kind of event in a summary line; the others are counted."""


@dataclass
class _Kind:
    count: int = 0
    names: list[str] = field(default_factory=list)

    def add(self, name: str) -> None:
        self.count += 1
        if len(self.names) < NAMED:
            self.names.append(name)

    def shown(self) -> str:
        more = f" and {self.count - len(self.names)} more" if self.count > len(self.names) else ""
        return f"({', '.join(self.names)}{more})"


class NodeActivityLog:
    """Counts node events and logs them as one summary line per :data:`INTERVAL_SECONDS`."""

    def __init__(self, log: logging.Logger, interval: float = INTERVAL_SECONDS) -> None:
        self.log = log
        self.interval = interval
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self._connected = _Kind()
        self._replaced = 0
        self._synced = _Kind()
        self._sent = 0
        self._held = 0
        self._disconnected = _Kind()

    def connected(self, node: str, peer: str, replaced: bool) -> None:
        again = ", closing its previous connection" if replaced else ""
        self.log.debug("node %s connected from %s%s", node, peer, again)
        self._connected.add(node)
        self._replaced += replaced
        self._due()

    def syncs(self, node: str, instance: str, held: int) -> None:
        self.log.debug("node %s (instance %s) syncs: holds %d object(s)", node, instance, held)

    def synced(self, node: str, sent: int, held: int) -> None:
        self.log.debug("node %s synced: %d object(s) sent, %d held already", node, sent, held)
        self._synced.add(node)
        self._sent += sent
        self._held += held
        self._due()

    def disconnected(self, node: str, code: int | None, reason: str) -> None:
        self.log.debug("node %s disconnected (%s %s)", node, code, reason)
        self._disconnected.add(f"{node}: {code}{' ' + reason if reason else ''}")
        self._due()

    def _due(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Log what happened since the last line (nothing if nothing did)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        parts = []
        if self._connected.count:
            again = f", {self._replaced} replacing a previous connection" if self._replaced else ""
            parts.append(f"{self._connected.count} node(s) connected {self._connected.shown()}{again}")
        if self._synced.count:
            parts.append(
                f"{self._synced.count} synced {self._synced.shown()}: "
                f"{self._sent} object(s) sent, {self._held} held already"
            )
        if self._disconnected.count:
            parts.append(f"{self._disconnected.count} disconnected {self._disconnected.shown()}")
        self._reset()
        if parts:
            self.log.info("hub: %s", "; ".join(parts))
