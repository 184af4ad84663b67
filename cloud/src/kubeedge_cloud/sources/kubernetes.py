"""The Kubernetes source: Devices and DeviceModels from a Kubernetes API server, status back into it.

Reads with the official client's asyncio API (``kubernetes.aio``), as a client-go informer does:
list, then watch from the listing's ``resourceVersion`` (with bookmarks, so a quiet watch still
moves its revision forward), resume a dropped watch from the last revision seen, back off on
errors, and raise :class:`~kubeedge_cloud.sources.source.Gone` on HTTP 410 so the controller lists
again. One watch per resource and namespace (all namespaces when none are configured).

Versions are a digest of what the edge receives (the object without its status and without the
server's bookkeeping: resourceVersion, managedFields ...), never the ``resourceVersion``: a status
write changes the ``resourceVersion`` but not the digest, so it never re-sends a device to its edge
(KubeEdge #6269 restarted devices on every status write). A changed object whose digest is
unchanged is not even passed on.

Status goes through the Device's status subresource as JSON merge patches (``status.twins[]`` is a
list, which a merge patch replaces whole, so the source keeps each device's full status and sends
all of it). Writes are coalesced per device (at most one in flight and one per
``statusIntervalMs``; reports arriving meanwhile are merged into the next) and limited globally by
``qps``/``burst``, so a flapping device or a thousand busy ones cannot overload the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubeedge.api.channel import NodeInfoContent, answers_desired
from kubeedge.api.device import Device, DeviceModel
from kubeedge.backoff import backoff_delay
from kubeedge.errors import ConfigError
from kubeedge_cloud.leader import LeaderElector, ReplicaSettings
from kubeedge_cloud.module import CloudContext
from kubeedge_cloud.nodes import NodeKeeper, NodeMonitor, NodeSettings
from kubeedge_cloud.sources.source import (
    DeviceStatusRecord,
    Gone,
    Listing,
    SourceObject,
    StatusChange,
    WatchEvent,
    merge_change,
    sendable,
)
from kubeedge_cloud.sources.source import Source as _Source

log = logging.getLogger(__name__)

GROUP = "devices.kubeedge.io"
VERSION = "v1beta1"
PLURALS: dict[Literal["device", "devicemodel"], str] = {"device": "devices", "devicemodel": "devicemodels"}
MERGE_PATCH = "application/merge-patch+json"
# Metadata the edge receives; the rest (resourceVersion, managedFields, generation, timestamps)
# is the server's bookkeeping and changes without the object changing.
KEPT_METADATA = ("name", "namespace", "labels", "annotations", "uid")


class KubernetesSettings(BaseModel):
    """``source:`` in cloud.yaml for ``kind: kubernetes``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kubeconfig: str = "in-cluster"
    """A kubeconfig file (relative to cloud.yaml), or ``in-cluster`` for the pod's service account."""
    context: str | None = None
    """The kubeconfig context (default: its current one)."""
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to serve; empty: all of them (needs cluster-wide list/watch)."""
    qps: float = Field(default=50.0, gt=0)
    """Status writes per second to the API server, all devices together (client-go's QPS)."""
    burst: int = Field(default=100, ge=1)
    """Status writes allowed at once above ``qps`` (client-go's burst)."""
    status_interval_ms: int = Field(default=250, alias="statusIntervalMs", ge=0)
    """At most one status write per device this often; reports meanwhile go into the next."""
    parallel_writes: int = Field(default=8, alias="parallelWrites", ge=1, le=64)
    """Status writes in flight at once."""
    watch_timeout_s: int = Field(default=300, alias="watchTimeoutSeconds", ge=1)
    """How long one watch request lasts before it is renewed from its last revision."""
    field_manager: str = Field(default="kubeedge-cloud", alias="fieldManager", max_length=128)
    nodes: NodeSettings = Field(default_factory=NodeSettings)
    """Each connected edge as a Node with a Lease heartbeat (:mod:`kubeedge_cloud.nodes`)."""
    replica: ReplicaSettings = Field(default_factory=ReplicaSettings)
    """This replica's name and the leader election among replicas (:mod:`kubeedge_cloud.leader`)."""


class RateLimiter:
    """A token bucket that waits: ``rate`` per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


@dataclass
class _StatusEntry:
    """One device's full status as this cloud last wrote or read it, and what waits on it."""

    namespace: str
    name: str
    node: str = ""
    state: str | None = None
    last_online_time: str | None = None
    twins: dict[str, dict[str, Any]] = field(default_factory=dict)
    updated_at: int = 0
    dirty: bool = False
    in_flight: bool = False
    next_at: float = 0.0
    attempts: int = 0
    urgent: bool = False
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def merge(self, node: str, change: StatusChange) -> None:
        held: StatusChange = {"twins": self.twins}
        merge_change(held, change)
        self.twins = held["twins"]
        self.state = held.get("state", self.state)
        if held.get("last_online_time") is not None:
            self.last_online_time = held["last_online_time"]
        self.node = node
        self.updated_at = int(time.time() * 1000)

    def body(self) -> dict[str, Any]:
        """The merge patch: the whole status (a merge patch replaces a list whole)."""
        status: dict[str, Any] = {"twins": [_twin(name, t) for name, t in sorted(self.twins.items())]}
        if self.state is not None:
            status["state"] = self.state
        if self.last_online_time is not None:
            status["lastOnlineTime"] = self.last_online_time
        return {"status": status}

    def record(self) -> DeviceStatusRecord:
        from kubeedge.api.channel import TwinStatus

        return DeviceStatusRecord(
            node=self.node,
            state=self.state,
            last_online_time=self.last_online_time,
            twins={name: TwinStatus.model_validate(t) for name, t in self.twins.items()},
            updated_at=self.updated_at,
        )


def _answers(entry: _StatusEntry, change: StatusChange) -> bool:
    """Whether ``change`` answers a user's desired value (a new observed-desired value, or the
    reported value reaching it: :func:`kubeedge.api.channel.answers_desired`) or changes the
    device's state, compared with what ``entry`` holds."""
    state = change.get("state")
    if state is not None and state != entry.state:
        return True
    for name, twin in (change.get("twins") or {}).items():
        held = entry.twins.get(name) or {}
        old_desired, old_reported = held.get("observed_desired"), held.get("reported")
        desired = twin.get("observed_desired", old_desired)
        if answers_desired(old_desired, old_reported, desired, twin.get("reported", old_reported)):
            return True
    return False


def _twin(name: str, twin: Mapping[str, Any]) -> dict[str, Any]:
    """One of KubeEdge's ``status.twins[]``: value and metadata (timestamp in ms, type) each."""
    out: dict[str, Any] = {"propertyName": name}
    kind = str(twin.get("type") or "string")
    for value_key, at_key, field_name in (
        ("reported", "reported_at", "reported"),
        ("observed_desired", "observed_desired_at", "observedDesired"),
    ):
        value = twin.get(value_key)
        if value is None:
            continue
        metadata = {"type": kind}
        if twin.get(at_key) is not None:
            metadata["timestamp"] = str(twin[at_key])
        if value_key == "reported" and twin.get("error"):
            metadata["error"] = str(twin["error"])
        out[field_name] = {"value": value, "metadata": metadata}
    return out


def _twins_from_status(status: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The flat form of a stored ``status.twins[]`` (what an earlier run wrote)."""
    twins: dict[str, dict[str, Any]] = {}
    for item in (status or {}).get("twins") or []:
        if not isinstance(item, dict) or not item.get("propertyName"):
            continue
        flat: dict[str, Any] = {}
        for value_key, at_key, field_name in (
            ("reported", "reported_at", "reported"),
            ("observed_desired", "observed_desired_at", "observedDesired"),
        ):
            part = item.get(field_name)
            if not isinstance(part, dict) or part.get("value") is None:
                continue
            flat[value_key] = str(part["value"])
            metadata = part.get("metadata") or {}
            if str(metadata.get("timestamp", "")).isdigit():
                flat[at_key] = int(metadata["timestamp"])
            if metadata.get("type"):
                flat["type"] = str(metadata["type"])
            if value_key == "reported" and metadata.get("error"):
                flat["error"] = str(metadata["error"])
        twins[str(item["propertyName"])] = flat
    return twins


def stripped(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The object without the server's bookkeeping in its metadata."""
    data = dict(raw)
    metadata = raw.get("metadata") or {}
    data["metadata"] = {k: metadata[k] for k in KEPT_METADATA if k in metadata}
    return data


def version_of(obj: Device | DeviceModel) -> str:
    """A digest of what the edge receives: changes exactly when that changes."""
    return hashlib.sha256(orjson.dumps(sendable(obj), option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def parse_object(kind: Literal["device", "devicemodel"], raw: Mapping[str, Any]) -> SourceObject:
    """A listed or watched object as the source passes it on (raises ``ValidationError``)."""
    cls = Device if kind == "device" else DeviceModel
    obj = cls.model_validate(stripped(raw))
    return SourceObject(obj, version_of(obj))


def _describe(raw: Mapping[str, Any]) -> str:
    metadata = raw.get("metadata") or {}
    return f"{raw.get('kind', 'object')} {metadata.get('namespace', '')}/{metadata.get('name', '?')}"


def _error_text(exc: BaseException) -> str:
    """An API error said in a line: the HTTP status and the server's message."""
    from kubernetes.aio.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        message = exc.reason or ""
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(exc.body or "{}").get("message") or message
        return f"HTTP {exc.status}: {message}"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class _Stream:
    kind: Literal["device", "devicemodel"]
    namespace: str | None

    @property
    def key(self) -> str:
        return f"{PLURALS[self.kind]}/{self.namespace or '*'}"


class KubernetesSource(_Source):
    """Devices and DeviceModels from the Kubernetes API, status into their status subresource."""

    name = "kubernetes"
    settings_model = KubernetesSettings
    overlapping_writes = True  # each call merges into the devices' entries at once, in call order

    def __init__(self, context: CloudContext, settings: BaseModel) -> None:
        super().__init__(context, settings)
        assert isinstance(settings, KubernetesSettings)
        self.config = settings
        namespaces: list[str | None] = list(settings.namespaces) or [None]
        self.streams = [_Stream(kind, ns) for kind in ("device", "devicemodel") for ns in namespaces]
        self.api_client: Any = None
        self.api: Any = None
        self.versions: dict[str, str] = {}
        """resource -> version last passed on (a change with the same version is not passed on)."""
        self.status: dict[str, _StatusEntry] = {}
        self._wake = asyncio.Event()
        self._dirty: dict[str, None] = {}
        self._urgent: set[str] = set()
        """Devices with status to write, in the order they got it (a dict as an ordered set)."""
        self._limiter = RateLimiter(settings.qps, settings.burst)
        self._writer: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self.nodes: NodeKeeper | None = None
        self.leader: LeaderElector | None = None
        self.replica = settings.replica.replica_id()
        self._serving: set[str] = set()
        """Nodes connected to this replica: only this replica writes their devices' status."""
        self.patches = 0
        """Status patches the API server accepted (for tests and the benchmark)."""

    # ------------------------------------------------------------------ connection

    def limiter_rate(self, rate: float, burst: int) -> None:
        """Change the global status write limit (``qps``/``burst``) of a running source."""
        self._limiter = RateLimiter(rate, burst)

    def _kubeconfig_path(self) -> Path:
        """``source.kubeconfig`` as a path: ``~`` expanded, relative to cloud.yaml."""
        return self.context.config.resolve(Path(os.path.expanduser(self.config.kubeconfig)))

    async def _connect(self) -> None:
        from kubernetes.aio import client, config

        configuration = client.Configuration()
        try:
            if self.config.kubeconfig == "in-cluster":
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                path = self._kubeconfig_path()
                if not path.is_file():
                    raise ConfigError(f"source.kubeconfig: {path} is not a file")
                await config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=str(path),
                    context=self.config.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except config.ConfigException as exc:
            raise ConfigError(f"source.kubeconfig: {exc}") from exc
        configuration.connection_pool_maxsize = self.config.parallel_writes + len(self.streams) + 4
        self.api_client = client.ApiClient(configuration)
        self.api = client.CustomObjectsApi(self.api_client)

    async def _kubeconfig_namespace(self) -> str | None:
        """The kubeconfig context's namespace (where the leader's Lease goes by default)."""
        if self.config.kubeconfig == "in-cluster":
            return None
        from kubernetes.aio import config

        path = str(self._kubeconfig_path())
        with contextlib.suppress(Exception):
            contexts, active = await asyncio.to_thread(config.list_kube_config_contexts, path)
            chosen = next((c for c in contexts if c.get("name") == self.config.context), active)
            return str((chosen.get("context") or {}).get("namespace") or "") or None
        return None

    async def start(self) -> None:
        await self._connect()
        self.nodes = NodeKeeper(self.api_client, self.config.nodes, self.replica)
        self._writer = asyncio.create_task(self._write_loop(), name="kubernetes-status-writer")
        replica = self.config.replica
        if replica.leader_election:
            monitor = NodeMonitor(self.api_client, replica.node_monitor_period_seconds)
            namespace = replica.namespace(await self._kubeconfig_namespace())
            self.leader = LeaderElector(self.api_client, replica, self.replica, namespace, monitor.run)
            self.leader.start()

    async def open_view(self) -> None:
        await self._connect()
        listing = await self.list()
        del listing

    async def stop(self) -> None:
        tasks = [t for t in (self._writer, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.leader is not None:
            await self.leader.stop()  # released: another replica leads at its next try
        if self.nodes is not None:
            await self.nodes.stop()
        if self.api_client is not None:
            await self.api_client.close()

    def describe(self) -> dict[str, Any]:
        where = ", ".join(self.config.namespaces) or "all namespaces"
        server = getattr(getattr(self.api_client, "configuration", None), "host", "?")
        return {"source": f"kubernetes {server} ({where}), replica {self.replica}"}

    def node_connected(self, node: str, address: str) -> None:
        self._serving.add(node)
        if self.nodes is not None:
            self.nodes.connected(node, address)

    def node_disconnected(self, node: str) -> None:
        self._serving.discard(node)
        if self.nodes is not None:
            self.nodes.disconnected(node)

    def node_info(self, node: str, info: NodeInfoContent) -> None:
        if self.nodes is not None:
            self.nodes.info(node, info)

    # ------------------------------------------------------------------ list and watch

    def _list_call(self, stream: _Stream) -> tuple[Any, tuple[Any, ...]]:
        plural = PLURALS[stream.kind]
        if stream.namespace is None:
            return self.api.list_cluster_custom_object, (GROUP, VERSION, plural)
        return self.api.list_namespaced_custom_object, (GROUP, VERSION, stream.namespace, plural)

    async def list(self) -> Listing:
        """Every object of every stream, retried with back-off until the server answers."""
        attempt = 0
        while True:
            try:
                return await self._list_once()
            except Exception as exc:
                delay = backoff_delay(attempt, first=0.5, limit=30.0)
                attempt += 1
                log.warning(
                    "kubernetes source: listing failed (%s); again in %.1f s", _error_text(exc), delay
                )
                await asyncio.sleep(delay)

    async def _list_once(self) -> Listing:
        objects: list[SourceObject] = []
        revisions: dict[str, str] = {}
        versions: dict[str, str] = {}
        for stream in self.streams:
            call, args = self._list_call(stream)
            answer = await call(*args)
            revisions[stream.key] = answer["metadata"]["resourceVersion"]
            for raw in answer.get("items") or []:
                parsed = self._parse(stream.kind, raw)
                if parsed is not None:
                    objects.append(parsed)
                    versions[parsed.resource] = parsed.version
        self.versions = versions
        return Listing(objects, json.dumps(revisions, sort_keys=True))

    def _parse(self, kind: Literal["device", "devicemodel"], raw: Mapping[str, Any]) -> SourceObject | None:
        try:
            parsed = parse_object(kind, raw)
        except ValidationError as exc:
            # the API server validated it against the CRD; the edge's model is stricter in places
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            log.error("kubernetes source: %s is not served: %s: %s", _describe(raw), where, first["msg"])
            return None
        if kind == "device":
            self._seed_status(parsed, raw)
        return parsed

    def _seed_status(self, parsed: SourceObject, raw: Mapping[str, Any]) -> None:
        """Take the status stored in the object (an earlier run's) for a device not known yet,
        and for a device whose node another replica serves (that replica writes its status: when
        the node moves here, the patches made here must start from what it wrote, since each
        patch carries the whole ``twins[]``)."""
        key = parsed.key
        node = getattr(parsed.obj.spec, "node_name", None) or ""
        held = self.status.get(key)
        if held is not None and (
            held.dirty
            or held.in_flight
            or held.waiters
            or node in self._serving
            or held.node in self._serving
            or not raw.get("status")
        ):
            return
        status = raw.get("status") or {}
        self.status[key] = _StatusEntry(
            namespace=parsed.obj.namespace,
            name=parsed.obj.name,
            node=node,
            state=status.get("state"),
            last_online_time=status.get("lastOnlineTime"),
            twins=_twins_from_status(status),
        )

    async def watch(self, revision: str) -> AsyncIterator[WatchEvent]:
        revisions: dict[str, str] = json.loads(revision)
        queue: asyncio.Queue[WatchEvent | BaseException] = asyncio.Queue()
        tasks = [
            asyncio.create_task(self._follow(stream, revisions, queue), name=f"kubernetes-watch-{stream.key}")
            for stream in self.streams
        ]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(
        self, stream: _Stream, revisions: dict[str, str], queue: asyncio.Queue[WatchEvent | BaseException]
    ) -> None:
        """One stream's watch, renewed from its last revision until the server says 410 Gone."""
        from kubernetes.aio import watch
        from kubernetes.aio.client.exceptions import ApiException

        call, args = self._list_call(stream)
        attempt = 0
        timeout = self.config.watch_timeout_s
        while True:
            try:
                async with watch.Watch().stream(  # type: ignore[no-untyped-call]
                    call,
                    *args,
                    resource_version=revisions[stream.key],
                    allow_watch_bookmarks=True,
                    timeout_seconds=timeout,
                    _request_timeout=timeout + 30,
                ) as events:
                    async for event in events:
                        attempt = 0
                        raw = event["raw_object"]
                        revisions[stream.key] = raw["metadata"]["resourceVersion"]
                        if event["type"] == "BOOKMARK":
                            continue
                        out = self._event(stream.kind, event["type"], raw, revisions)
                        if out is not None:
                            queue.put_nowait(out)
            except ApiException as exc:
                if exc.status == 410:
                    queue.put_nowait(
                        Gone(f"{stream.key} at revision {revisions[stream.key]}: {_error_text(exc)}")
                    )
                    return
                delay = backoff_delay(attempt, first=0.5, limit=30.0)
                attempt += 1
                log.warning(
                    "kubernetes source: watch of %s: %s; again in %.1f s", stream.key, _error_text(exc), delay
                )
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff_delay(attempt, first=0.5, limit=30.0)
                attempt += 1
                log.warning(
                    "kubernetes source: watch of %s: %s; again in %.1f s", stream.key, _error_text(exc), delay
                )
                await asyncio.sleep(delay)

    def _event(
        self,
        kind: Literal["device", "devicemodel"],
        type_: str,
        raw: Mapping[str, Any],
        revisions: dict[str, str],
    ) -> WatchEvent | None:
        parsed = self._parse(kind, raw)
        if parsed is None:
            return None
        revision = json.dumps(revisions, sort_keys=True)
        if type_ == "DELETED":
            self.versions.pop(parsed.resource, None)
            if kind == "device":
                self.status.pop(parsed.key, None)
            return WatchEvent("delete", parsed, revision)
        if self.versions.get(parsed.resource) == parsed.version:
            return None  # a status write or the server's bookkeeping: nothing the edge receives
        self.versions[parsed.resource] = parsed.version
        return WatchEvent("put", parsed, revision)

    # ------------------------------------------------------------------ status

    async def write_status(self, batch: Mapping[str, tuple[str, StatusChange]]) -> None:
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[None]] = []
        for key, (node, change) in batch.items():
            namespace, _, name = key.partition("/")
            entry = self.status.get(key)
            if entry is None:
                entry = self.status[key] = _StatusEntry(namespace=namespace, name=name)
            if _answers(entry, change):
                # the answer to a user's desired value, or a change of state: ahead of the queue
                # and of the device's interval (every report carries observed_desired, so what
                # counts is a value that differs from the one held)
                entry.urgent = True
                self._urgent.add(key)
            entry.merge(node, change)
            entry.dirty = True
            self._dirty.setdefault(key, None)  # a device already waiting keeps its place
            future: asyncio.Future[None] = loop.create_future()
            entry.waiters.append(future)
            waiting.append(future)
        self._wake.set()
        await asyncio.gather(*waiting)

    def _next_ready(self, now: float, telemetry: bool = True) -> tuple[_StatusEntry | None, float | None]:
        """The device to patch next: one whose change answers a user or changes its state first,
        else (``telemetry``: a slot is free for it) the one that has waited longest; or, when none
        may go yet, when the first one may."""
        for key in list(self._urgent):
            entry = self.status.get(key)
            if entry is None or not entry.dirty or not entry.urgent:
                self._urgent.discard(key)
            elif not entry.in_flight:
                return entry, None
        if not telemetry:
            return None, None  # a slot's release wakes the writer
        soonest: float | None = None
        for key in list(self._dirty):
            entry = self.status.get(key)
            if entry is None or not entry.dirty:
                del self._dirty[key]
            elif entry.in_flight:
                continue
            elif entry.next_at <= now:
                return entry, None
            elif soonest is None or entry.next_at < soonest:
                soonest = entry.next_at
        return None, soonest

    async def _write_loop(self) -> None:
        interval = self.config.status_interval_ms / 1000
        slots = asyncio.Semaphore(self.config.parallel_writes)
        while True:
            # A token first, then the best device at that moment: a device that becomes urgent
            # while the writer waits for the rate limit still goes first. Telemetry takes one of
            # parallelWrites slots; an urgent device needs none (one patch per device is in
            # flight at most), so an answer never waits for slow telemetry patches to end.
            await self._limiter.acquire()
            while True:
                self._wake.clear()
                entry, soonest = self._next_ready(time.monotonic(), telemetry=not slots.locked())
                if entry is not None:
                    break
                timeout = None if soonest is None else max(0.0, soonest - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            key = f"{entry.namespace}/{entry.name}"
            self._dirty.pop(key, None)
            self._urgent.discard(key)
            slot = None
            if not entry.urgent:
                await slots.acquire()  # free: _next_ready offered telemetry only then
                slot = slots
            entry.in_flight = True
            entry.urgent = False
            task = asyncio.create_task(self._patch(entry, interval, slot))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _patch(self, entry: _StatusEntry, interval: float, slot: asyncio.Semaphore | None) -> None:
        from kubernetes.aio.client.exceptions import ApiException

        body = entry.body()
        waiters, entry.waiters = entry.waiters, []
        entry.dirty = False
        done = True
        try:
            await self.api.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                entry.namespace,
                "devices",
                entry.name,
                body,
                field_manager=self.config.field_manager,
                _content_type=MERGE_PATCH,
            )
            self.patches += 1
            entry.attempts = 0
            entry.next_at = time.monotonic() + interval
        except ApiException as exc:
            if exc.status == 404:
                log.info(
                    "kubernetes source: device %s/%s is gone; its status is dropped",
                    entry.namespace,
                    entry.name,
                )
            elif exc.status in (400, 422):
                log.error(
                    "kubernetes source: status of device %s/%s refused (%s); dropped",
                    entry.namespace,
                    entry.name,
                    _error_text(exc),
                )
            else:
                done = False
                self._retry(entry, waiters, exc)
        except asyncio.CancelledError:
            entry.waiters = waiters + entry.waiters
            raise
        except Exception as exc:
            done = False
            self._retry(entry, waiters, exc)
        finally:
            entry.in_flight = False
            if slot is not None:
                slot.release()
                self._wake.set()  # telemetry waiting for a slot may go
            if done:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            if entry.dirty:
                self._wake.set()

    def _retry(
        self, entry: _StatusEntry, waiters: Sequence[asyncio.Future[None]], exc: BaseException
    ) -> None:
        delay = backoff_delay(entry.attempts, first=0.5, limit=30.0)
        entry.attempts += 1
        entry.waiters = [*waiters, *entry.waiters]
        entry.dirty = True
        entry.next_at = time.monotonic() + delay
        self._dirty.setdefault(f"{entry.namespace}/{entry.name}", None)
        log.warning(
            "kubernetes source: status of device %s/%s: %s; again in %.1f s",
            entry.namespace,
            entry.name,
            _error_text(exc),
            delay,
        )

    async def read_status(self, keys: Collection[str] | None = None) -> dict[str, DeviceStatusRecord]:
        held = self.status
        wanted = held if keys is None else [k for k in keys if k in held]
        return {key: held[key].record() for key in wanted}
