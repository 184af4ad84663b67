"""One edge node's connection to the hub: the channel conversation (docs/wire.md).

The session knows what the edge holds (``held``: resource -> version, from its ``hub/sync`` and
from its acks) and what is on its way (``inflight``: the message sent for a resource, not acked
yet). :meth:`Session.reconcile` gets what the node must hold from the device controller and sends
only the difference: objects the edge lacks or holds at another version, and deletions of what it
holds but is no longer assigned. An object already on its way at the right version is not sent
again; a newer version replaces the one in flight (the older message's ack is then ignored).
Unacked messages are sent again with back-off (``resend.firstMs`` doubling to ``resend.maxMs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kubeedge.api import channel
from kubeedge.api.channel import ErrorContent, Header, Message, NodeInfoContent, Route, SyncContent
from kubeedge.api.twin import now_ms
from kubeedge.backoff import backoff_delay
from kubeedge.errors import WireError
from kubeedge.ratelimit import ThrottledLog, TokenBuckets
from kubeedge_cloud.config import CloudConfig
from kubeedge_cloud.controllers.devices import Desired, DeviceController
from kubeedge_cloud.hub.activity import NodeActivityLog
from kubeedge_cloud.hub.reports import read_report

log = logging.getLogger(__name__)
refusals = ThrottledLog(log)
"""Refused messages, one line per node and kind a minute (a flood costs one line)."""

SOURCE = "cloudhub"


@dataclass
class Pending:
    message: Message
    frame: bytes
    version: str | None
    """The version sent; ``None`` for a deletion."""
    attempts: int
    due: float


class Session:
    """A connected edge node (implements the controller's ``NodeLink``)."""

    def __init__(
        self,
        connection: ServerConnection,
        node: str,
        controller: DeviceController,
        config: CloudConfig,
        activity: NodeActivityLog | None = None,
    ) -> None:
        self.connection = connection
        self.activity = activity or NodeActivityLog(log)
        self.node = node
        self.controller = controller
        self.config = config
        self.instance = ""
        self.held: dict[str, str] = {}
        self.inflight: dict[str, Pending] = {}
        self._by_id: dict[str, str] = {}
        self.synced = False
        """The edge said what it holds (``hub/sync``)."""
        self._sync_answer_due = False
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._inflight_changed = asyncio.Event()
        limits = config.limits
        self._budget = TokenBuckets(limits.messages_per_second, limits.burst, max_keys=1)
        self.sent_objects = 0
        """resource/* messages sent, resends not counted (tests and the benchmark count them)."""
        self.resends = 0
        self.received = 0
        self.throttled = 0
        self.node_info: NodeInfoContent | None = None
        """The edge's own facts, from its last ``hub/node``."""
        self._closing: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Serve the connection until it closes."""
        writer = asyncio.create_task(self._write(), name=f"hub-write-{self.node}")
        resender = asyncio.create_task(self._resend(), name=f"hub-resend-{self.node}")
        timeout = asyncio.get_running_loop().call_later(
            self.config.limits.sync_timeout_ms / 1000, self._sync_timeout
        )
        try:
            async for frame in self.connection:
                await self._throttle()
                self.received += 1
                await self.handle(frame)
        except ConnectionClosed:
            pass
        finally:
            timeout.cancel()
            writer.cancel()
            resender.cancel()
            await asyncio.gather(writer, resender, return_exceptions=True)

    def _sync_timeout(self) -> None:
        if not self.synced:
            refusals.log((self.node, "sync"), f"node {self.node}: no hub/sync in time; closing")
            self._closing = asyncio.ensure_future(self.connection.close(1008, "no hub/sync received in time"))

    async def _throttle(self) -> None:
        """Over the message budget, read more slowly: TCP pushes back on the edge, nothing is lost."""
        if self._budget.allow(""):
            return
        self.throttled += 1
        rate = self.config.limits.messages_per_second
        refusals.log((self.node, "rate"), f"node {self.node}: over {rate:g} messages/s; read more slowly")
        while not self._budget.allow(""):
            await asyncio.sleep(1 / self._budget.rate)

    async def _write(self) -> None:
        while True:
            frame = await self._outbox.get()
            if frame is None:
                return
            try:
                await self.connection.send(frame.decode())
            except ConnectionClosed:
                return

    def send(self, message: Message) -> None:
        self._outbox.put_nowait(message.to_json())

    def _answer(self, parent: Message | None, operation: str, content: Any = None) -> None:
        # Built as plain data: an ack per report is the hub's most frequent frame.
        frame = {
            "v": channel.CHANNEL_VERSION,
            "header": {
                "msg_id": uuid.uuid4().hex,
                "parent_msg_id": parent.id if parent else "",
                "timestamp": now_ms(),
                "resourceversion": "",
            },
            "route": {"source": SOURCE, "group": channel.HUB, "operation": operation, "resource": ""},
            "content": content,
        }
        self._outbox.put_nowait(orjson.dumps(frame))

    def error(self, parent: Message | None, code: int, reason: str) -> None:
        self._answer(parent, channel.ERROR, ErrorContent(code=code, reason=reason[:4096]).model_dump())

    async def close(self, reason: str) -> None:
        await self.connection.close(1000, reason[:120])

    # ------------------------------------------------------------------ from the edge

    async def handle(self, frame: bytes | str) -> None:
        try:
            message = channel.parse_message(frame)
        except WireError as exc:
            refusals.log((self.node, "malformed"), f"node {self.node}: refused a message: {exc.reason}")
            self.error(None, exc.code, exc.reason)
            return
        route = message.route
        what = f"{route.group}/{route.operation}"
        try:
            if what == "hub/sync":
                self._on_sync(message)
            elif what == "hub/ack":
                self._on_ack(message.header.parent_msg_id, None)
            elif what == "hub/error":
                self._on_edge_error(message)
            elif what == "hub/keepalive":
                pass
            elif what == "twin/report":
                await self._on_report(message)
            elif what == "hub/node":
                self._on_node_info(message)
            else:
                raise WireError(f"{what} is not a message an edge sends")
        except WireError as exc:
            refusals.log((self.node, what), f"node {self.node}: refused {what}: {exc.reason}")
            self.error(message, exc.code, exc.reason)

    def _on_sync(self, message: Message) -> None:
        try:
            content = SyncContent.model_validate(message.content)
        except ValidationError as exc:
            raise WireError(f"hub/sync: {_first_error(exc)}") from None
        if self.synced and content.instance == self.instance:
            log.debug("node %s: hub/sync again from the same instance", self.node)
        self.instance = content.instance
        self.held = dict(content.versions)
        self.inflight.clear()
        self._by_id.clear()
        self.synced = True
        self._sync_answer_due = True
        self.activity.syncs(self.node, self.instance, len(self.held))
        self.controller.enqueue(self.node)

    def _on_ack(self, parent: str, error: str | None) -> None:
        resource = self._by_id.pop(parent, None)
        if resource is None:
            return  # an ack of a message sent again or replaced since: nothing to do
        pending = self.inflight.get(resource)
        if pending is None or pending.message.id != parent:
            return
        del self.inflight[resource]
        if pending.version is None:
            self.held.pop(resource, None)
        else:
            # Refused by the edge or not, this version has been dealt with: sending it again
            # cannot succeed. A newer version is sent when there is one.
            self.held[resource] = pending.version
        if error:
            log.warning("node %s refused %s: %s", self.node, resource, error)

    def _on_edge_error(self, message: Message) -> None:
        try:
            content = ErrorContent.model_validate(message.content)
        except ValidationError as exc:
            raise WireError(f"hub/error: {_first_error(exc)}") from None
        if message.header.parent_msg_id in self._by_id:
            self._on_ack(message.header.parent_msg_id, f"{content.code} {content.reason}")
        else:
            log.warning("node %s says: %d %s", self.node, content.code, content.reason[:500])

    def _on_node_info(self, message: Message) -> None:
        if not self.synced:
            raise WireError("hub/node before hub/sync: the first message must be hub/sync", 409)
        try:
            info = NodeInfoContent.model_validate(message.content)
        except ValidationError as exc:
            raise WireError(f"hub/node: {_first_error(exc)}") from None
        self.node_info = info
        source = self.controller.source
        if source is not None:
            source.node_info(self.node, info)

    async def _on_report(self, message: Message) -> None:
        if not self.synced:
            raise WireError("twin/report before hub/sync: the first message must be hub/sync", 409)
        try:
            devices, priority = read_report(message.content)
        except ValidationError as exc:
            raise WireError(f"twin/report: {_first_error(exc)}") from None
        if not devices:
            self._answer(message, channel.ACK)
            return
        controller = self.controller
        if not controller.ready.is_set():
            await controller.ready.wait()
        stored, refused = controller.submit_report(self.node, devices, priority=priority)
        reason = ""
        if refused:
            names = ", ".join(sorted(refused)[:10]) + (" ..." if len(refused) > 10 else "")
            reason = f"device(s) not assigned to node {self.node}: {names}"
            refusals.log((self.node, "unassigned"), f"node {self.node}: refused a report: {reason}")
        if stored is None:
            self.error(message, 403, reason)
            return

        def answer(done: asyncio.Future[None]) -> None:
            if done.cancelled():
                return
            if done.exception() is not None:
                self.error(message, 503, "the cloud could not store the report; send it again")
            elif refused:
                # the assigned devices were stored: the edge drops the message either way
                self.error(message, 403, reason + " (the others were stored)")
            else:
                self._answer(message, channel.ACK)

        stored.add_done_callback(answer)

    # ------------------------------------------------------------------ to the edge

    def reconcile(self, desired: Mapping[str, Desired]) -> int:
        """Send what differs between ``desired`` and what the edge holds or is being sent."""
        if not self.synced:
            return 0
        sent = 0
        for resource, want in desired.items():
            pending = self.inflight.get(resource)
            have = pending.version if pending is not None else self.held.get(resource)
            if have == want.version:
                continue
            operation = channel.UPDATE if resource in self.held else channel.INSERT
            self._send_object(resource, operation, want.version, want.content)
            sent += 1
        for resource in [r for r in (*self.held, *self.inflight) if r not in desired]:
            pending = self.inflight.get(resource)
            if pending is not None and pending.version is None:
                continue  # its deletion is on its way
            if pending is None and resource not in self.held:
                continue
            self._send_object(resource, channel.DELETE, None, None)
            sent += 1
        if self._sync_answer_due:
            self._sync_answer_due = False
            # priority: this hub takes priority reports (a second report in flight, written ahead
            # of telemetry); node_info: it takes hub/node. An edge that does not know a key
            # ignores it.
            self._answer(None, channel.SYNCED, {"sent": sent, "priority": True, "node_info": True})
            self.activity.synced(self.node, sent, len(self.held))
        return sent

    def _send_object(self, resource: str, operation: str, version: str | None, content: Any) -> None:
        old = self.inflight.get(resource)
        if old is not None:
            self._by_id.pop(old.message.id, None)
        message = Message(
            header=Header(resourceversion=version or ""),
            route=Route(source=SOURCE, group=channel.RESOURCE, operation=operation, resource=resource),
            content=content,
        )
        frame = message.to_json()
        resend = self.config.resend
        self.inflight[resource] = Pending(
            message, frame, version, 1, time.monotonic() + resend.first_ms / 1000
        )
        self._by_id[message.id] = resource
        self._outbox.put_nowait(frame)
        self.sent_objects += 1
        self._inflight_changed.set()

    async def _resend(self) -> None:
        resend = self.config.resend
        first, limit = resend.first_ms / 1000, resend.max_ms / 1000
        while True:
            if not self.inflight:
                self._inflight_changed.clear()
                await self._inflight_changed.wait()
                continue
            now = time.monotonic()
            due = min(p.due for p in self.inflight.values())
            if due > now:
                self._inflight_changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._inflight_changed.wait(), due - now)
                continue
            for pending in self.inflight.values():
                if pending.due <= now:
                    pending.attempts += 1
                    pending.due = now + backoff_delay(pending.attempts, first=first, limit=limit)
                    self._outbox.put_nowait(pending.frame)
                    self.resends += 1


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "content"
    return f"content.{where}: {first['msg']}"
