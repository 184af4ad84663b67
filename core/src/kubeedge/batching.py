"""Read planning shared by drivers with an address space (Modbus registers, coils; others later).

A driver gives each property its span (address space, start, count); :func:`plan_blocks` merges
the spans of one space into as few blocks as the protocol's limits allow: sorted by address,
neighbours joined while the block stays within ``max_count`` and the hole between them is at most
``max_gap`` (reading a few unused addresses is cheaper than another request). Each block lists
the properties it serves, so one failed block fails only them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Span:
    space: Hashable
    """Which address space (e.g. holding registers); blocks never mix spaces."""
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count


@dataclass
class Block(Generic[T]):
    space: Hashable
    start: int
    count: int
    items: list[tuple[T, Span]] = field(default_factory=list)

    def slice(self, span: Span) -> slice:
        """Where ``span`` sits in what this block read."""
        return slice(span.start - self.start, span.end - self.start)


def plan_blocks(
    items: Sequence[tuple[T, Span]],
    max_count: Callable[[Hashable], int],
    max_gap: int = 0,
) -> list[Block[T]]:
    """Merge spans into blocks: per space, by address, within ``max_count(space)`` and ``max_gap``.

    A span longer than the limit gets a block of its own (the protocol will refuse it, and the
    error belongs to that property alone).
    """
    blocks: list[Block[T]] = []
    by_space: dict[Hashable, list[tuple[T, Span]]] = {}
    for item, span in items:
        by_space.setdefault(span.space, []).append((item, span))
    for space, entries in by_space.items():
        limit = max_count(space)
        current: Block[T] | None = None
        for item, span in sorted(entries, key=lambda entry: (entry[1].start, entry[1].count)):
            if current is not None:
                end = max(current.start + current.count, span.end)
                gap = span.start - (current.start + current.count)
                if gap <= max_gap and end - current.start <= limit:
                    current.count = end - current.start
                    current.items.append((item, span))
                    continue
            current = Block(space, span.start, span.count, [(item, span)])
            blocks.append(current)
    return blocks
