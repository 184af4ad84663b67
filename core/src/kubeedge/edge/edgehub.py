"""The edge hub: this edge's link to its cloud (``cloud:`` in edge.yaml), KubeEdge's EdgeHub done better.

It is a device **source** for the registry, as the standalone folder is: the Devices and
DeviceModels the cloud assigns to this node come down one websocket
(``wss://HOST:PORT/v1/nodes/{node}/events``, docs/wire.md "Cloud-edge channel"), are stored with
their versions (:mod:`kubeedge.edge.objectstore`), acked, and handed to the registry. An edge that
starts while the cloud is unreachable serves what it last knew.

And it forwards what the twin module stores (reported values, observed desired values, types,
errors; device state and lastOnlineTime) upstream through a SQLite outbox
(:mod:`kubeedge.edge.outbox`): newest value per property wins, order per property is kept, the
outbox is bounded in bytes (oldest dropped first, counted), and an entry leaves it only when the
cloud acks the ``twin/report`` that carried it. What KubeEdge's per-device settings mean here:

* a property's ``reportToCloud: false``: nothing of that property is forwarded; unset or true:
  forwarded (KubeEdge's mapper-framework reports only when it is true; here the default is on,
  because coalescing keeps a busy property to one value per report, the reason KubeEdge #5892
  turned reporting off by default does not apply);
* a property's ``reportCycle``: the cloud hears of the property at most once per cycle (the
  newest value at the end of it); unset: every change, coalesced per report (``cloud.batchDelayMs``);
* the device's ``stateReport.reportToCloud`` and ``stateReport.reportCycle``: the same for the
  device's state and lastOnlineTime.

Only changes are forwarded (KubeEdge's mapper re-sends every value every cycle): an unchanged
value is not a change of status.

Link problems are said with the cloud's reason (HTTP status and body of a refused upgrade, the TLS
error), logged once per reason at ERROR, shown by ``kubeedge edge status``; the hub keeps trying
with back-off and never stops the edge: the edge serves its last known devices meanwhile (edge
autonomy), and a ``tokenFile`` is read again on every attempt, so a rotated token is taken
without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from kubeedge.api import channel, topics
from kubeedge.api.channel import (
    CHANNEL_PATH,
    MAX_MESSAGE_BYTES,
    ErrorContent,
    Header,
    Message,
    NodeInfoContent,
    Route,
    SyncContent,
    answers_desired,
    parse_message,
    split_resource,
)
from kubeedge.api.device import Device, DeviceModel, DeviceProperty
from kubeedge.api.twin import now_ms
from kubeedge.backoff import backoff_delay
from kubeedge.config import CloudConfig
from kubeedge.driver import NoSettings
from kubeedge.edge.nodeinfo import gather_node_info
from kubeedge.edge.objectstore import ObjectStore, StoredObject
from kubeedge.edge.outbox import Entry, Lane, Outbox
from kubeedge.errors import ConfigError, WireError
from kubeedge.mapper.policy import cycle_ms
from kubeedge.module import EdgeContext, EdgeModule
from kubeedge.registry import ServedDevice
from kubeedge.supervisor import Supervised
from kubeedge.twin.module import TwinModule

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOUD_STATUS = "cloud"
"""``$ke/edge/{node}/cloud``: the link's state and the outbox's counts (retained), for
``kubeedge edge status``."""
OBJECTS_DATABASE = "cloud-objects.db"
SOURCE = "edgehub"
_ENVELOPE_BYTES = 1024
"""Room kept in a report for the message's own fields."""
_STATUS_INTERVAL = 1.0
_INBOX = 512
_MAX_PROBLEMS = 100
"""Messages from the cloud waiting to be handled (and objects stored in one transaction)."""

LinkState = Literal["connecting", "connected", "disconnected", "refused", "stopped"]


class CloudLinkStatus(BaseModel):
    """What ``$ke/edge/{node}/cloud`` says (retained)."""

    model_config = ConfigDict(extra="ignore")

    state: LinkState
    url: str
    reason: str = ""
    """Why the link is not up (the cloud's HTTP status and body, the TLS or network error)."""
    since: int = 0
    """When the link entered this state (ms)."""
    synced: bool = False
    """The cloud has sent every change since the edge's versions on this connection."""
    objects: int = 0
    """Devices and DeviceModels held from the cloud."""
    outbox: dict[str, int] = {}
    """``entries``, ``bytes``, ``max_bytes``, ``dropped_entries``, ``dropped_bytes``,
    ``refused_entries``, ``acked_entries``."""


class _Refused(Exception):
    """The cloud (or its certificate) refused this edge: said at ERROR, retried with back-off."""


@dataclass
class _Held:
    version: str
    obj: Device | DeviceModel


@dataclass
class _Changes:
    """Objects received and not yet stored: resource -> the object, or None (deleted)."""

    held: dict[str, _Held | None] = field(default_factory=dict)
    puts: dict[str, StoredObject] = field(default_factory=dict)
    acks: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.held.clear()
        self.puts.clear()
        self.acks.clear()


@dataclass
class HubStats:
    """Counters for tests and diagnostics."""

    connects: int = 0
    received: dict[str, int] = field(default_factory=lambda: {"insert": 0, "update": 0, "delete": 0})
    """Resource messages received from the cloud, by operation (since start)."""
    refused_objects: int = 0
    reports_sent: int = 0
    priority_reports_sent: int = 0
    """Of ``reports_sent``, those of the priority lane (answers to desired values, changes of state)."""
    node_info_sent: int = 0
    """``hub/node`` messages sent (one after each ``hub/synced`` of a cloud that takes them)."""


class EdgeHub(EdgeModule):
    name = "edgehub"
    # order: the default; built-in modules of equal order start as BUILTIN_MODULES lists them
    # (twin, the device source, mappers): the twin must be there to listen to
    settings_model = NoSettings  # its settings are the `cloud:` section

    def __init__(self, context: EdgeContext, settings: BaseModel) -> None:
        super().__init__(context, settings)
        cloud = context.config.cloud
        if cloud is None:
            raise ConfigError(
                "module edgehub needs 'cloud': the cloud hub's url and the node token (see README)"
            )
        self.cloud: CloudConfig = cloud
        data_dir = context.config.data_dir
        self.store = ObjectStore(data_dir / OBJECTS_DATABASE)
        self.outbox = Outbox(data_dir / cloud.queue.database, cloud.queue.max_bytes)
        self.hubs = cloud.hubs
        """The cloud's hubs (``url``, then ``urls``): a failed or lost link moves to the next."""
        self._hub = 0
        self.instance = uuid.uuid4().hex
        self.objects: dict[str, _Held] = {}
        self.stats = HubStats()
        self.state: LinkState = "connecting"
        self.reason = ""
        self.since = now_ms()
        self.synced = False
        self.ever_synced = False
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgehub-db")
        self._ws: ClientConnection | None = None
        self._twin: TwinModule | None = None
        self._pending: dict[tuple[str, str], Entry] = {}
        self._known: dict[tuple[str, str], bytes] = {}
        self._last_taken: dict[tuple[str, str], int] = {}
        self._properties: dict[str, dict[str, DeviceProperty]] = {}
        self._wake = asyncio.Event()
        self._in_flight: dict[Lane, tuple[str, float]] = {}
        """Lane -> the report in flight on it (message id, when sent): one per lane."""
        self._cloud_priority = False
        """The cloud's ``hub/synced`` said it takes priority reports (a second lane)."""
        self.node_info: NodeInfoContent | None = None
        """This machine's facts (``hub/node``), gathered at start."""
        self._views: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        """(device, property) -> (observed desired, reported) as last queued; (device, "") ->
        (state, None): what tells an answer to a desired value or a change of state."""
        self._urgent_queued = asyncio.Event()
        self._retry_at = 0.0
        self._next_due_ms: int | None = None
        self._registry_timer: asyncio.TimerHandle | None = None
        self._tasks: list[Supervised] = []
        self._logged_reason = ""
        self._published: dict[str, Any] | None = None
        self._problems: dict[str, str] = {}
        """Resource -> why the edge refused the cloud's last version of it."""
        self._stopping = False

    @property
    def hub(self) -> str:
        """The hub the link uses, or tries, now."""
        return self.hubs[self._hub]

    @property
    def url(self) -> str:
        return self.hub + CHANNEL_PATH.format(node=self.context.node)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self._call(self.store.open)
        await self._call(self.outbox.open)
        self.node_info = await self._call(gather_node_info, self.context.config.enabled_mappers())
        stored = await self._call(self.store.load)
        self.ever_synced = await self._call(self.store.ever_synced)
        for item in stored:
            try:
                self.objects[item.resource] = _Held(item.version, _decode(item.resource, item.body))
            except WireError as exc:
                log.warning("edgehub: stored object %s cannot be read, skipped: %s", item.resource, exc)
        if self.objects:
            log.info("edgehub: %d object(s) from the last connection to %s", len(self.objects), self.hub)
        self._update_registry()
        self.context.registry.add_listener(self)
        twin = self.context.modules.get("twin")
        if isinstance(twin, TwinModule):
            self._twin = twin
            self._known = await self._call(self.outbox.known_bodies)
            twin.add_change_listener(self._twin_changed)
            # What changed since the cloud last heard (while stopped, or at a kill -9 between the
            # twin's commit and the outbox's) goes into the outbox now.
            self._twin_changed(
                {(key, name) for key, record in twin.devices.items() for name in record.twins},
                set(twin.devices),
            )
        else:
            log.warning("edgehub: the twin module is not enabled; nothing is reported to the cloud")
        supervise = self.context.supervisor.spawn
        self._tasks = [
            supervise("edgehub-link", self._link_loop),
            supervise("edgehub-upstream", self._upstream_loop),
            supervise("edgehub-status", self._status_loop),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(t for t in self._tasks), return_exceptions=True)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 2)
        if self._registry_timer is not None:
            self._registry_timer.cancel()
        try:
            await self._call(self.outbox.put, list(self._pending.values()))  # not lost at a stop
            self._pending.clear()
        except Exception:
            log.exception("edgehub: could not store the last reports")
        self._set_state("stopped", "the edge stopped")
        await self._call(self.outbox.close)
        await self._call(self.store.close)
        self._db.shutdown(wait=True)

    async def _call(self, func: Any, *args: Any) -> Any:
        # SQLite runs in the hub's own thread, deliberately: a commit must never stall the loop.
        return await asyncio.get_running_loop().run_in_executor(self._db, func, *args)

    # ----------------------------------------------------------------- the link

    async def _link_loop(self) -> None:
        attempt = 0
        while True:
            try:
                await self._connect_once()
                reason = "the cloud closed the connection"
                refused = False
            except _Refused as exc:
                reason, refused = str(exc), True
            except ConnectionClosed as exc:
                reason, refused = f"connection lost ({_close_reason(exc)})", False
            except (OSError, InvalidHandshake, TimeoutError, EOFError) as exc:
                reason, refused = _network_reason(exc), False
            if self.synced:
                attempt = 0  # a connection that worked: the next attempt is quick again
            self.synced = False
            self._cloud_priority = False
            self._in_flight.clear()
            attempt += 1
            delay = backoff_delay(
                attempt, first=self.cloud.reconnect_min_ms / 1000, limit=self.cloud.reconnect_max_ms / 1000
            )
            self._set_state("refused" if refused else "disconnected", reason)
            if reason != self._logged_reason:
                self._logged_reason = reason
                level = logging.ERROR if refused else logging.WARNING
                log.log(level, "edgehub: %s: %s; retrying with back-off", self.hub, reason)
            else:
                log.debug("edgehub: %s: %s; next attempt in %.1fs", self.hub, reason, delay)
            self._hub = (self._hub + 1) % len(self.hubs)  # another replica of the cloud, if any
            await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        token = self._token()
        tls = self._tls() if self.hub.startswith("wss://") else None
        keepalive = self.cloud.keepalive_ms / 1000
        self._set_state("connecting", self.reason)
        try:
            ws = await connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {token}"},
                ssl=tls,
                max_size=MAX_MESSAGE_BYTES,
                ping_interval=keepalive,
                ping_timeout=keepalive,
                open_timeout=10,
                close_timeout=2,
                compression=None,
                proxy=None,
                user_agent_header=f"kubeedge-edgehub/{self.context.node}",
            )
        except InvalidStatus as exc:
            response = exc.response
            body = bytes(response.body or b"").decode("utf-8", "replace").strip()[:500]
            raise _Refused(f"the cloud refused the connection: HTTP {response.status_code}: {body}") from None
        except ssl.SSLCertVerificationError as exc:
            where = f"caFile {self.cloud.ca_file}" if self.cloud.ca_file else "the system's trust store"
            raise _Refused(
                f"TLS: the cloud's certificate is not trusted ({where}): {exc.verify_message}"
            ) from None
        except ssl.SSLError as exc:
            raise _Refused(f"TLS: {exc.reason or exc}") from None
        self._ws = ws
        self.stats.connects += 1
        try:
            await self._call(self.outbox.unsend)  # what the last connection did not get acked
            self._in_flight.clear()
            versions = {resource: held.version for resource, held in self.objects.items()}
            sync = Message(
                route=Route(source=SOURCE, group=channel.HUB, operation=channel.SYNC),
                content=SyncContent(instance=self.instance, versions=versions).model_dump(),
            )
            await ws.send(sync.to_json().decode())
            self._set_state("connected", "")
            self._logged_reason = ""
            log.info("edgehub: connected to %s; sync with %d object version(s)", self.hub, len(versions))
            self._wake.set()
            inbox: asyncio.Queue[Message] = asyncio.Queue(maxsize=_INBOX)
            handler = asyncio.create_task(self._handle(ws, inbox), name="edgehub-handle")
            try:
                async for frame in ws:
                    message = await self._parse(ws, frame)
                    if message is not None:
                        await inbox.put(message)  # full: the cloud waits (TCP pushes back)
                    if handler.done():
                        break
            finally:
                handler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handler  # a failure in it is raised here: the connection starts over
        finally:
            self._ws = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)

    def _token(self) -> str:
        if self.cloud.token is not None:
            return self.cloud.token.strip()
        assert self.cloud.token_file is not None
        try:
            token = self.cloud.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _Refused(f"cloud.tokenFile {self.cloud.token_file}: {exc.strerror or exc}") from None
        if not token:
            raise _Refused(f"cloud.tokenFile {self.cloud.token_file} is empty")
        return token

    def _tls(self) -> ssl.SSLContext:
        ca = self.cloud.ca_file
        try:
            return ssl.create_default_context(cafile=str(ca) if ca else None)
        except (OSError, ssl.SSLError) as exc:
            raise _Refused(f"cloud.caFile {ca}: {getattr(exc, 'strerror', None) or exc}") from None

    async def _send(self, ws: ClientConnection, message: Message) -> None:
        await ws.send(message.to_json().decode())

    async def _ack(self, ws: ClientConnection, parent: str) -> None:
        route = Route(source=SOURCE, group=channel.HUB, operation=channel.ACK)
        await self._send(ws, Message(header=Header(parent_msg_id=parent), route=route))

    async def _error(self, ws: ClientConnection, parent: str, code: int, reason: str) -> None:
        await self._send(
            ws,
            Message(
                header=Header(parent_msg_id=parent),
                route=Route(source=SOURCE, group=channel.HUB, operation=channel.ERROR),
                content=ErrorContent(code=code, reason=reason[:4000]).model_dump(),
            ),
        )

    # ----------------------------------------------------------------- downstream

    async def _parse(self, ws: ClientConnection, frame: str | bytes) -> Message | None:
        try:
            return parse_message(frame)
        except WireError as exc:
            log.warning("edgehub: malformed message from the cloud: %s", exc.reason)
            await self._error(ws, "", exc.code, exc.reason)
            return None

    async def _handle(self, ws: ClientConnection, inbox: asyncio.Queue[Message]) -> None:
        """Messages in order; the objects among those waiting are stored in one transaction
        (a sync of a thousand devices is a few commits, not a thousand), then acked."""
        while True:
            batch = [await inbox.get()]
            while not inbox.empty() and len(batch) < _INBOX:
                batch.append(inbox.get_nowait())
            changes = _Changes()
            for message in batch:
                route = message.route
                if route.group == channel.RESOURCE and route.operation in (channel.INSERT, channel.UPDATE):
                    await self._on_object(ws, message, changes)
                elif route.group == channel.RESOURCE and route.operation == channel.DELETE:
                    await self._on_delete(ws, message, changes)
                else:
                    await self._commit(ws, changes)
                    await self._on_hub(ws, message)
            await self._commit(ws, changes)

    async def _on_hub(self, ws: ClientConnection, message: Message) -> None:
        route = message.route
        if route.group == channel.HUB and route.operation == channel.SYNCED:
            await self._on_synced(ws, message)
        elif route.group == channel.HUB and route.operation == channel.ACK:
            await self._on_ack(message.header.parent_msg_id)
        elif route.group == channel.HUB and route.operation == channel.ERROR:
            await self._on_error(message)
        elif route.group == channel.HUB and route.operation == channel.KEEPALIVE:
            pass
        else:
            reason = f"{route.group}/{route.operation} is not something the edge takes"
            await self._error(ws, message.id, 400, reason)

    async def _on_object(self, ws: ClientConnection, message: Message, changes: _Changes) -> None:
        resource = message.route.resource
        try:
            version = message.header.resourceversion
            if not version:
                raise WireError(f"{resource[:200]}: header.resourceversion is missing")
            body = orjson.dumps(message.content)
            obj = _decode(resource, body)
            if isinstance(obj, Device) and obj.spec.node_name and obj.spec.node_name != self.context.node:
                raise WireError(
                    f"{resource}: spec.nodeName is {obj.spec.node_name!r}, not this node "
                    f"({self.context.node})",
                    403,
                )
        except (WireError, TypeError) as exc:
            reason = exc.reason if isinstance(exc, WireError) else f"{resource[:200]}: {exc}"
            code = exc.code if isinstance(exc, WireError) else 400
            self.stats.refused_objects += 1
            log.warning("edgehub: refused %s from the cloud: %s", message.route.operation, reason)
            self._problems[resource[:512]] = reason
            self._report_problems()
            await self._error(ws, message.id, code, reason)
            return
        self.stats.received[message.route.operation] += 1
        held = changes.held.get(resource, self.objects.get(resource))
        if held is None or held.version != version:
            changes.held[resource] = _Held(version, obj)
            changes.puts[resource] = StoredObject(resource, version, body)
        changes.acks.append(message.id)

    async def _on_delete(self, ws: ClientConnection, message: Message, changes: _Changes) -> None:
        resource = message.route.resource
        try:
            split_resource(resource)
        except WireError as exc:
            await self._error(ws, message.id, 400, exc.reason)
            return
        self.stats.received["delete"] += 1
        changes.puts.pop(resource, None)
        changes.held[resource] = None
        changes.acks.append(message.id)

    async def _commit(self, ws: ClientConnection, changes: _Changes) -> None:
        """Store the objects gathered so far, then hold them and ack them (in that order)."""
        if changes.held:
            deletes = [r for r, held in changes.held.items() if held is None and r in self.objects]
            await self._call(self.store.apply, list(changes.puts.values()), deletes)
            for resource, held in changes.held.items():
                if held is None:
                    self.objects.pop(resource, None)
                else:
                    self.objects[resource] = held
            if any(self._problems.pop(resource, None) for resource in changes.held):
                self._report_problems()
            self._registry_soon()
        for message_id in changes.acks:
            await self._ack(ws, message_id)
        changes.clear()

    async def _on_synced(self, ws: ClientConnection, message: Message) -> None:
        if not self.ever_synced:
            await self._call(self.store.apply, [], [], True)
            self.ever_synced = True
        self._update_registry()
        self.synced = True
        content = message.content if isinstance(message.content, dict) else {}
        sent = content.get("sent")
        self._cloud_priority = content.get("priority") is True
        log.info(
            "edgehub: in sync with %s (%s change(s) received; %d object(s) held)",
            self.hub,
            sent,
            len(self.objects),
        )
        self._set_state("connected", "")
        self._wake.set()  # reports may go now
        if content.get("node_info") is True and self.node_info is not None:
            # only to a cloud that said it takes them: an older one refuses the operation (400)
            node = Message(
                route=Route(source=SOURCE, group=channel.HUB, operation=channel.NODE),
                content=self.node_info.model_dump(mode="json", exclude_none=True),
            )
            await self._send(ws, node)
            self.stats.node_info_sent += 1

    def _report_problems(self) -> None:
        """Objects the cloud sent that the edge refused, for ``kubeedge device list``: a device
        whose older version is held is served as it was."""
        if len(self._problems) > _MAX_PROBLEMS:  # the oldest go: they are in the log
            for resource in list(self._problems)[: len(self._problems) - _MAX_PROBLEMS]:
                del self._problems[resource]
        per_device = {}
        for resource, reason in self._problems.items():
            if resource.startswith("device/") and resource in self.objects:
                key = resource.removeprefix("device/")
                per_device[key] = (
                    f"the cloud's latest version was refused, the last good one is served: {reason}"
                )
        general = [f"from the cloud: {reason}" for reason in self._problems.values()]
        self.context.registry.report_problems(per_device, general)

    def _registry_soon(self) -> None:
        """Objects often come in bursts (a sync): the registry is told once per burst. Once in
        sync, a change is mostly one object (a user's desired value, waited for): a short wait."""
        if self._registry_timer is None:
            delay = 0.005 if self.synced else 0.05
            self._registry_timer = asyncio.get_running_loop().call_later(delay, self._update_registry)

    def _update_registry(self) -> None:
        if self._registry_timer is not None:
            self._registry_timer.cancel()
            self._registry_timer = None
        devices = [h.obj for h in self.objects.values() if isinstance(h.obj, Device)]
        models = [h.obj for h in self.objects.values() if isinstance(h.obj, DeviceModel)]
        # The set held is always complete as of the last hub/synced plus the changes since; before
        # the first sync ever, twins of devices not (yet) held are kept.
        self.context.registry.replace(devices, models, complete=self.ever_synced)

    # ----------------------------------------------------------------- registry listener

    def device_added(self, served: ServedDevice) -> None:
        self._properties.pop(served.key, None)

    def device_updated(self, served: ServedDevice, previous: ServedDevice) -> None:
        self._properties.pop(served.key, None)

    def device_removed(self, served: ServedDevice) -> None:
        key = served.key
        self._properties.pop(key, None)
        for item in [k for k in self._known if k[0] == key]:
            del self._known[item]
        for item in [k for k in self._pending if k[0] == key]:
            del self._pending[item]
        for item in [k for k in self._last_taken if k[0] == key]:
            del self._last_taken[item]
        for item in [k for k in self._views if k[0] == key]:
            del self._views[item]
        if not self._stopping:
            asyncio.get_running_loop().run_in_executor(self._db, self.outbox.forget_device, key)

    def registry_synced(self, keys: set[str]) -> None:
        pass

    # ----------------------------------------------------------------- upstream

    def _twin_changed(self, twins: set[tuple[str, str]], devices: set[str]) -> None:
        """Called by the twin module after a commit: queue what changed for the cloud."""
        twin = self._twin
        if twin is None:
            return
        registry = self.context.registry
        for key, name in twins:
            record = twin.devices.get(key)
            served = registry.get(key)
            if record is None or served is None:
                continue
            prop = self._property(served, name)
            value = record.twins.get(name)
            if prop is None or value is None or value.deleted or prop.report_to_cloud is False:
                continue
            item = (key, name)
            view = self._views.get(item) or self._view_of(item)
            urgent = answers_desired(view[0], view[1], value.expected, value.actual)
            self._views[item] = (value.expected, value.actual)
            # the fields of channel.TwinStatus, as a dict: this runs for every change at any rate
            status = {
                "reported": value.actual,
                "reported_at": value.actual_ts,
                "observed_desired": value.expected,
                "observed_desired_at": value.expected_ts,
                "type": value.type,
                "error": value.error,
            }
            cycle = cycle_ms(prop.report_cycle) if prop.report_cycle is not None else 0
            self._queue(key, name, orjson.dumps(status), cycle, urgent)
        for key in devices:
            record = twin.devices.get(key)
            served = registry.get(key)
            if record is None or served is None or record.state is None:
                continue
            report = served.device.spec.state_report
            if report is not None and report.report_to_cloud is False:
                continue
            cycle = cycle_ms(report.report_cycle) if report and report.report_cycle is not None else 0
            body = orjson.dumps({"state": record.state, "last_online_time": record.last_online})
            item = (key, "")
            urgent = record.state != (self._views.get(item) or self._view_of(item))[0]
            self._views[item] = (record.state, None)
            self._queue(key, "", body, cycle, urgent)

    def _property(self, served: ServedDevice, name: str) -> DeviceProperty | None:
        props = self._properties.get(served.key)
        if props is None:
            props = {p.name: p for p in served.device.spec.properties or []}
            self._properties[served.key] = props
        return props.get(name)

    def _view_of(self, item: tuple[str, str]) -> tuple[str | None, str | None]:
        """What the cloud has or will get of a property (observed desired, reported) or of a
        device's state (state, None), from the body last queued or acked (once per item)."""
        known = self._known.get(item)
        if known is None:
            return (None, None)
        body = orjson.loads(known)
        if item[1]:
            return (body.get("observed_desired"), body.get("reported"))
        return (body.get("state"), None)

    def _queue(self, device: str, name: str, body: bytes, cycle: int, urgent: bool = False) -> None:
        item = (device, name)
        if self._known.get(item) == body:
            return
        entry_due = 0
        if cycle and not urgent:  # reportCycle paces telemetry, not the answer to a user
            entry_due = self._last_taken.get(item, 0) + cycle
        held = self._pending.get(item)
        entry = Entry(device, name, body, entry_due, urgent or (held is not None and held.urgent))
        if entry.size + _ENVELOPE_BYTES > self.cloud.max_report_bytes:
            log.warning(
                "edgehub: %s/%s: a report of %d bytes does not fit cloud.maxReportBytes (%d); not sent",
                device,
                name or "(state)",
                entry.size,
                self.cloud.max_report_bytes,
            )
            return
        self._known[item] = body
        self._pending[item] = entry
        if entry.urgent:
            self._urgent_queued.set()
        self._wake.set()

    async def _upstream_loop(self) -> None:
        while True:
            await self._wait_for_work()
            if self._pending and self.cloud.batch_delay_ms and not self._urgent_queued.is_set():
                # changes meanwhile coalesce; an answer to a desired value or a change of state
                # does not wait for the rest of the batch
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent_queued.wait(), self.cloud.batch_delay_ms / 1000)
            self._urgent_queued.clear()
            if self._pending:
                entries = list(self._pending.values())
                self._pending.clear()
                dropped = await self._call(self.outbox.put, entries)
                if dropped:
                    log.warning(
                        "edgehub: outbox full (cloud.queue.maxBytes %d): dropped the %d oldest "
                        "entr(y/ies); %d dropped in all",
                        self.outbox.max_bytes,
                        dropped,
                        self.outbox.stats.dropped_entries,
                    )
            await self._send_report()

    async def _wait_for_work(self) -> None:
        timeouts = []
        clock = time.monotonic()
        for _, sent in self._in_flight.values():
            timeouts.append(sent + self.cloud.ack_timeout_ms / 1000 - clock)
        if self._retry_at:
            timeouts.append(self._retry_at - clock)
        telemetry_busy = "all" in self._in_flight or "telemetry" in self._in_flight
        if self._next_due_ms is not None and not telemetry_busy:
            # entries waiting for their reportCycle go in the telemetry lane: while a report is in
            # flight on it, its ack wakes the loop (a due time passed meanwhile would spin it)
            timeouts.append((self._next_due_ms - now_ms()) / 1000)
        timeout = max(0.0, min(timeouts)) if timeouts else None
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _send_report(self) -> None:
        ws = self._ws
        clock = time.monotonic()
        # Reports wait for hub/synced: by then devices no longer assigned here are gone (with
        # their entries), so a report does not name them.
        if ws is None or not self.synced:
            return
        for lane, (message_id, sent) in list(self._in_flight.items()):
            if clock - sent < self.cloud.ack_timeout_ms / 1000:
                continue  # one report per lane: the next one goes when this one is acked
            log.warning(
                "edgehub: report %s not acked within %dms; sending again",
                message_id,
                self.cloud.ack_timeout_ms,
            )
            await self._call(self.outbox.unsend, message_id)
            if self._in_flight.get(lane, ("",))[0] == message_id:
                del self._in_flight[lane]
        if self._retry_at > clock:
            return
        self._retry_at = 0.0
        # A cloud that takes priority reports gets the answers to desired values and changes of
        # state in a lane of their own, so they never wait behind telemetry in flight; another
        # cloud gets one report at a time, as before.
        lanes: tuple[Lane, ...] = ("priority", "telemetry") if self._cloud_priority else ("all",)
        for lane in lanes:
            if lane not in self._in_flight and not await self._send_lane(ws, lane):
                return

    async def _send_lane(self, ws: ClientConnection, lane: Lane) -> bool:
        """Send the next report of ``lane`` if an entry is due; False when the link went down."""
        message_id = uuid.uuid4().hex
        taken = await self._call(
            self.outbox.take, message_id, self.cloud.max_report_bytes - _ENVELOPE_BYTES, now_ms(), lane
        )
        if lane != "priority":
            self._next_due_ms = taken.next_due_ms
        if not taken.entries:
            return True
        devices: dict[str, dict[str, Any]] = {}
        stamp = now_ms()
        for entry in taken.entries:
            report = devices.setdefault(entry.device, {})
            body = orjson.loads(entry.body)
            if entry.name:
                report.setdefault("twins", {})[entry.name] = body
            else:
                report.update(body)
            self._last_taken[(entry.device, entry.name)] = stamp
        content: dict[str, Any] = {"devices": devices}
        if lane == "priority":
            content["priority"] = True
        message = Message(
            header=Header(msg_id=message_id),
            route=Route(source=SOURCE, group=channel.TWIN, operation=channel.REPORT),
            content=content,
        )
        self._in_flight[lane] = (message_id, time.monotonic())
        try:
            await self._send(ws, message)
        except ConnectionClosed:
            # The link went down while the report was being made (maybe a new one is up already,
            # with reports of its own in flight): this message's entries are unsent again now.
            if self._in_flight.get(lane, ("",))[0] == message_id:
                del self._in_flight[lane]
            await self._call(self.outbox.unsend, message_id)
            self._wake.set()
            return False
        self.stats.reports_sent += 1
        if lane == "priority":
            self.stats.priority_reports_sent += 1
        log.debug(
            "edgehub: report %s (%s): %d entr(y/ies) of %d device(s)",
            message_id,
            lane,
            len(taken.entries),
            len(devices),
        )
        return True

    def _lane_of(self, message_id: str) -> Lane | None:
        return next((lane for lane, (m, _) in self._in_flight.items() if m == message_id), None)

    async def _on_ack(self, parent: str) -> None:
        acked = await self._call(self.outbox.acked, parent)
        lane = self._lane_of(parent)
        if lane is not None:
            del self._in_flight[lane]
            self._wake.set()
        if acked:
            log.debug("edgehub: report %s acked (%d entries)", parent, acked)

    async def _on_error(self, message: Message) -> None:
        parent = message.header.parent_msg_id
        try:
            error = ErrorContent.model_validate(message.content)
        except ValidationError:
            error = ErrorContent(code=500, reason=str(message.content)[:500])
        lane = self._lane_of(parent)
        if lane is None:
            log.warning(
                "edgehub: the cloud says %d: %s (message %s)", error.code, error.reason, parent or "-"
            )
            return
        del self._in_flight[lane]
        if error.code in (400, 403, 404, 413, 422):
            count = await self._call(self.outbox.refused, parent)
            log.warning(
                "edgehub: the cloud refused a report (%d entries dropped): %d %s",
                count,
                error.code,
                error.reason,
            )
            self._wake.set()
        else:  # the cloud cannot take it now: the same entries go again later
            log.warning(
                "edgehub: the cloud could not take a report: %d %s; retrying", error.code, error.reason
            )
            await self._call(self.outbox.unsend, parent)
            self._retry_at = time.monotonic() + self.cloud.reconnect_min_ms / 1000
            self._wake.set()

    # ----------------------------------------------------------------- status

    def _set_state(self, state: LinkState, reason: str) -> None:
        if state != self.state or reason != self.reason:
            if state != self.state:
                self.since = now_ms()
            self.state, self.reason = state, reason
            self._publish_status()

    def link_status(self) -> CloudLinkStatus:
        stats = self.outbox.stats
        return CloudLinkStatus(
            state=self.state,
            url=self.hub,
            reason=self.reason,
            since=self.since,
            synced=self.synced,
            objects=len(self.objects),
            outbox={
                "entries": stats.entries + len(self._pending),
                "bytes": stats.bytes,
                "max_bytes": stats.max_bytes,
                "dropped_entries": stats.dropped_entries,
                "dropped_bytes": stats.dropped_bytes,
                "refused_entries": stats.refused_entries,
                "acked_entries": stats.acked_entries,
            },
        )

    def _publish_status(self) -> None:
        status = self.link_status().model_dump()
        if status == self._published:
            return
        self._published = status
        self.context.bus.publish(  # never raises (BusClient.publish)
            topics.edge_topic(self.context.node, CLOUD_STATUS), orjson.dumps(status), qos=1, retain=True
        )

    async def _status_loop(self) -> None:
        while True:
            self._publish_status()
            await asyncio.sleep(_STATUS_INTERVAL)


def _decode(resource: str, body: bytes) -> Device | DeviceModel:
    """The object of ``resource`` from its JSON; :class:`WireError` names the object and field."""
    kind, namespace, name = split_resource(resource)
    model: type[Device] | type[DeviceModel] = Device if kind == "device" else DeviceModel
    try:
        obj = model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "content"
        raise WireError(f"{resource}: {where}: {first['msg']}") from None
    if obj.namespace != namespace or obj.name != name:
        raise WireError(f"{resource}: the object is {obj.namespace}/{obj.name}, not {namespace}/{name}")
    return obj


def _close_reason(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "no close frame"
    return f"code {frame.code}" + (f": {frame.reason}" if frame.reason else "")


def _network_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the peer"
    return str(exc) or type(exc).__name__
