"""The device controller: which objects each node must hold, and the status the nodes report.

Level-triggered, in the controller pattern: an informer task lists the source and then watches it
from the listing's revision (listing again when the source says the revision is gone), keeping a
cache; every change enqueues the *nodes* it affects (a device's old and new node, every node with
a device of a changed model), and a worker reconciles a node by computing what it must hold now
(:meth:`DeviceController.desired`) and handing it to the node's link (the hub's session), which
sends only what differs from what the edge holds. A repeated or dropped event costs nothing: the
next reconcile of the node computes the same answer from the cache.

Upstream, reports are checked (a node may report only on its own devices), merged per device while
the previous write is in flight or for ``status.flushMs`` (so a busy node makes one write per
device and batch, not one per report), and written in one call to the source; the edge's message
is acked only once that write returned. A priority report (answers to desired values, changes of
state: docs/wire.md) skips ``flushMs``, and where the source takes overlapping writes it goes as a
batch of its own, so its ack waits for no telemetry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from kubeedge.api.device import Device
from kubeedge.supervisor import Supervised
from kubeedge_cloud.module import CloudContext, CloudModule
from kubeedge_cloud.sources.source import (
    Gone,
    Source,
    SourceObject,
    StatusChange,
    WatchEvent,
    merge_change,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Desired:
    """One object a node must hold: its version, and what is sent. The content is made only when
    the object is sent: most reconciles find every version already held."""

    source: SourceObject

    @property
    def version(self) -> str:
        return self.source.version

    @property
    def content(self) -> dict[str, Any]:
        return self.source.content()


class NodeLink(Protocol):
    """A node's connection, as the controller sees it (the hub's session implements it)."""

    node: str

    def reconcile(self, desired: Mapping[str, Desired]) -> int:
        """Make the edge hold exactly ``desired`` (resource -> object); the number of messages sent."""
        ...


class DeviceController(CloudModule):
    name = "devices"
    order = 20

    def __init__(self, context: CloudContext, settings: BaseModel) -> None:
        super().__init__(context, settings)
        self.source: Source | None = None
        self.devices: dict[str, SourceObject] = {}
        self.models: dict[str, SourceObject] = {}
        self.by_node: dict[str, set[str]] = defaultdict(set)
        self.links: dict[str, NodeLink] = {}
        self.ready = asyncio.Event()
        """Set once the source's first listing is in the cache (before it, no node is answered)."""
        self._queue: set[str] = set()
        self._queued = asyncio.Event()
        self._pending: dict[str, tuple[str, StatusChange]] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._have_pending = asyncio.Event()
        self._flush_now = asyncio.Event()
        self.status_writes = 0
        """Batches written (each is one call to the source)."""
        self.reports_taken = 0
        self.reconciles = 0
        self._tasks: list[Supervised] = []
        self._storing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.source = self.context.find(Source)  # type: ignore[type-abstract]
        supervisor = self.context.supervisor
        self._tasks = [
            supervisor.spawn("device-informer", self._inform),
            supervisor.spawn("device-reconciler", self._work),
            supervisor.spawn("status-writer", self._write_status),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for storing in self._storing:
            storing.cancel()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()

    # ------------------------------------------------------------------ downstream

    async def _inform(self) -> None:
        assert self.source is not None
        while True:
            listing = await self.source.list()
            self._replace(listing.objects)
            self.ready.set()
            try:
                async for event in self.source.watch(listing.revision):
                    self._apply(event)
            except Gone as exc:
                log.info("device source: %s; listing again", exc)

    def _replace(self, objects: list[SourceObject]) -> None:
        touched = set(self.by_node) | set(self.links)
        self.devices.clear()
        self.models.clear()
        self.by_node.clear()
        for obj in objects:
            self._put(obj)
        log.info("device controller: %d device(s), %d model(s) listed", len(self.devices), len(self.models))
        self.enqueue(*(touched | set(self.by_node)))

    def _apply(self, event: WatchEvent) -> None:
        obj = event.object
        if obj.kind == "device":
            old = self.devices.get(obj.key)
            old_node = _node(old) if old else None
            if event.type == "delete":
                self._remove_device(obj.key)
            else:
                self._put(obj)
            self.enqueue(*(n for n in (old_node, _node(obj)) if n))
            return
        if event.type == "delete":
            self.models.pop(obj.key, None)
        else:
            self.models[obj.key] = obj
        namespace, model = obj.obj.namespace, obj.obj.name
        self.enqueue(
            *{
                _node(d)
                for d in self.devices.values()
                if d.obj.namespace == namespace and _model(d) == model and _node(d)
            }
        )

    def _put(self, obj: SourceObject) -> None:
        if obj.kind == "devicemodel":
            self.models[obj.key] = obj
            return
        self._remove_device(obj.key)
        self.devices[obj.key] = obj
        node = _node(obj)
        if node:
            self.by_node[node].add(obj.key)

    def _remove_device(self, key: str) -> None:
        old = self.devices.pop(key, None)
        node = _node(old) if old else None
        if node and node in self.by_node:
            self.by_node[node].discard(key)
            if not self.by_node[node]:
                del self.by_node[node]

    def desired(self, node: str) -> dict[str, Desired]:
        """Everything ``node`` must hold: its devices (``spec.nodeName``) and the models they use."""
        out: dict[str, Desired] = {}
        for key in sorted(self.by_node.get(node, ())):
            device = self.devices[key]
            out[device.resource] = Desired(device)
            model_name = _model(device)
            if model_name:
                model = self.models.get(f"{device.obj.namespace}/{model_name}")
                if model is not None:
                    out[model.resource] = Desired(model)
        return out

    def enqueue(self, *nodes: str) -> None:
        self._queue.update(nodes)
        if self._queue:
            self._queued.set()

    async def _work(self) -> None:
        await self.ready.wait()
        while True:
            await self._queued.wait()
            self._queued.clear()
            nodes, self._queue = self._queue, set()
            for node in sorted(nodes):
                link = self.links.get(node)
                if link is None:
                    continue
                self.reconciles += 1
                try:
                    link.reconcile(self.desired(node))
                except Exception:
                    log.exception("reconciling node %s failed; it is tried again on its next change", node)
            await asyncio.sleep(0)  # let the sessions write before the next round

    def attach(self, link: NodeLink) -> NodeLink | None:
        """Serve ``link``'s node through it from now on; returns the link it replaces."""
        previous = self.links.get(link.node)
        self.links[link.node] = link
        return previous if previous is not link else None

    def detach(self, link: NodeLink) -> None:
        if self.links.get(link.node) is link:
            del self.links[link.node]

    # ------------------------------------------------------------------ upstream

    def assigned(self, node: str, key: str) -> bool:
        return key in self.by_node.get(node, ())

    def submit_report(
        self, node: str, devices: Mapping[str, StatusChange], *, priority: bool = False
    ) -> tuple[asyncio.Future[None] | None, list[str]]:
        """Queue a node's report for the next status write (``priority``: at once).

        Returns a future done once the devices assigned to ``node`` are stored (``None`` when
        there were none), and the keys refused because they are not assigned to ``node``.
        """
        refused = []
        taken: dict[str, tuple[str, StatusChange]] = {}
        for key, change in devices.items():
            if not self.assigned(node, key):
                refused.append(key)
                continue
            taken[key] = (node, change)
        if not taken:
            return None, refused
        self.reports_taken += 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if priority and self.source is not None and self.source.overlapping_writes:
            # The answer to a user's desired value or a change of state: a batch of its own,
            # handed over now, so its ack waits for no other device's turn. What was gathered
            # before it goes first: the source merges batches in the order they are handed over,
            # so an older value never lands after a newer one.
            self._hand_over()
            self._start_store(taken, [waiter])
            return waiter, refused
        for key, (_, change) in taken.items():
            held = self._pending.get(key)
            if held is None:
                self._pending[key] = (node, change)
            else:
                merge_change(held[1], change)
        self._waiters.append(waiter)
        self._have_pending.set()
        if priority:
            self._flush_now.set()
        return waiter, refused

    async def _write_status(self) -> None:
        assert self.source is not None
        flush = self.context.config.status.flush_ms / 1000
        while True:
            await self._have_pending.wait()
            if flush and not self._flush_now.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_now.wait(), flush)  # a priority report ends it
            self._flush_now.clear()
            if self.source.overlapping_writes:
                # the source takes the next batch while this one is written (it merges batches
                # in the order they were handed over): a slow batch holds back no later report
                self._hand_over()
            else:
                batch, waiters = self._take_pending()
                if batch:
                    await self._store(batch, waiters)

    def _take_pending(self) -> tuple[dict[str, tuple[str, StatusChange]], list[asyncio.Future[None]]]:
        batch, self._pending = self._pending, {}
        waiters, self._waiters = self._waiters, []
        self._have_pending.clear()
        return batch, waiters

    def _hand_over(self) -> None:
        """Hand what is pending to the source now (overlapping writes only)."""
        batch, waiters = self._take_pending()
        if batch:
            self._start_store(batch, waiters)

    def _start_store(
        self, batch: dict[str, tuple[str, StatusChange]], waiters: list[asyncio.Future[None]]
    ) -> None:
        # tasks start in the order they are made: the source sees the batches in this order
        task = asyncio.create_task(self._store(batch, waiters))
        self._storing.add(task)
        task.add_done_callback(self._storing.discard)

    async def _store(
        self, batch: dict[str, tuple[str, StatusChange]], waiters: list[asyncio.Future[None]]
    ) -> None:
        assert self.source is not None
        try:
            await self.source.write_status(batch)
        except Exception as exc:
            log.exception("status write of %d device(s) failed; the edges send them again", len(batch))
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        self.status_writes += 1
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _node(obj: SourceObject) -> str:
    assert isinstance(obj.obj, Device)
    return obj.obj.spec.node_name or ""


def _model(obj: SourceObject) -> str:
    assert isinstance(obj.obj, Device)
    return obj.obj.model_name or ""
