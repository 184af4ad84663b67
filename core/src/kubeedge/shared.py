"""Connections shared by several devices (devices behind one Modbus gateway, one serial line,
one radio adapter): opened once, reference-counted, closed with their last user.

Each shared connection carries a lock; a driver holds it for every request/response exchange,
so requests of different devices never interleave on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

C = TypeVar("C")


@dataclass
class Shared(Generic[C]):
    key: Hashable
    connection: C
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class SharedConnections(Generic[C]):
    """A pool keyed by what identifies the physical link (host and port, serial device ...)."""

    def __init__(
        self, opener: Callable[[Hashable], Awaitable[C]], closer: Callable[[C], Awaitable[Any]]
    ) -> None:
        self._opener = opener
        self._closer = closer
        self._entries: dict[Hashable, Shared[C]] = {}
        self._opening: dict[Hashable, asyncio.Lock] = {}

    async def acquire(self, key: Hashable) -> Shared[C]:
        lock = self._opening.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = Shared(key, await self._opener(key))
                self._entries[key] = entry
            entry.users += 1
            return entry

    async def release(self, entry: Shared[C]) -> None:
        entry.users -= 1
        if entry.users <= 0 and self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
            await self._closer(entry.connection)

    async def discard(self, entry: Shared[C]) -> None:
        """The connection is broken: the next :meth:`acquire` opens a new one."""
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
            await self._closer(entry.connection)

    def __len__(self) -> int:
        return len(self._entries)
