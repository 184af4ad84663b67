"""Edge nodes as Kubernetes ``Node`` objects, with a ``Lease`` heartbeat in ``kube-node-lease``.

What a kubelet does for its node, done by the cloud for each edge connected to it (KubeEdge's
cloudcore does the same for its edges): when an edge connects, its Node is created if missing
(labelled ``node-role.kubernetes.io/edge``, with the address it connected from) and marked Ready;
while it stays connected its Lease is renewed every ``renewSeconds``; when its link drops, the
Node is marked NotReady at once (reason ``EdgeDisconnected``) and the renewals stop.

The edge's own facts (``hub/node``: architecture, OS, kernel, OS image, machine and boot ids,
its version, CPUs, memory, no pods; its mappers) go into the Node's ``status.nodeInfo``,
``capacity`` and ``allocatable``, labels ``kubernetes.io/arch`` and ``kubernetes.io/os`` and
annotation ``kubeedge.io/mappers``: in the Ready patch, and in a patch of their own when they
arrive or change. Like the replica's annotation, the labels go through ``nodes/status`` (a Node's
status subresource keeps metadata changes), so the cloud needs no right to patch Nodes.

A Node a user deletes stays deleted while its edge is connected (heartbeats do not recreate it);
it comes back when the edge connects again, as a kubelet's node does when the kubelet restarts.

Each replica of the cloud keeps the Nodes of the edges connected to it, and records itself on
them (annotation ``kubeedge.io/cloud-replica``); nothing is shared between replicas but the API
server. A replica marks a Node NotReady only while the Node still names it: an edge that moved to
another replica (a network blip) is not made NotReady by the late disconnect on the old one (a
JSON patch whose ``test`` operation the API server checks atomically). What a vanished replica
can no longer do, :class:`NodeMonitor` does in the leader (:mod:`kubeedge_cloud.leader`): a Ready
edge Node whose Lease has not been renewed for its duration is marked NotReady
(``CloudReplicaLost``), as kube-controller-manager's node-lifecycle controller does for kubelets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kubeedge.api.channel import NodeInfoContent
from kubeedge_cloud import __version__
from kubeedge_cloud.leader import api_error, client_time

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
EDGE_ROLE = "node-role.kubernetes.io/edge"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
REPLICA_ANNOTATION = "kubeedge.io/cloud-replica"
"""On each edge's Node: the ``replica.id`` of the cloud replica its edge is connected to."""
MAPPERS_ANNOTATION = "kubeedge.io/mappers"
"""On each edge's Node: the protocols of its mappers, comma-separated (from ``hub/node``)."""
ARCH_LABEL = "kubernetes.io/arch"
OS_LABEL = "kubernetes.io/os"


class NodeSettings(BaseModel):
    """``source.nodes`` in cloud.yaml (Kubernetes source only)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = True
    """Keep a Node and a Lease for each connected edge."""
    lease_duration_seconds: int = Field(default=40, alias="leaseDurationSeconds", ge=1)
    """The Lease's ``leaseDurationSeconds`` (a kubelet's default: 40)."""
    renew_seconds: float = Field(default=10.0, alias="renewSeconds", gt=0)
    """How often a connected edge's Lease is renewed (a kubelet's default: a quarter of the duration)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


def _pointer(key: str) -> str:
    """``key`` as one JSON-pointer step (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _ready_condition(ready: bool, reason: str, message: str) -> dict[str, str]:
    now = _time(_now())
    return {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }


def _node_info(info: NodeInfoContent | None) -> dict[str, str]:
    """``status.nodeInfo`` from the edge's facts (what it did not tell is left out)."""
    if info is None:
        return {}
    fields = {
        "architecture": info.architecture,
        "operatingSystem": info.operating_system,
        "kernelVersion": info.kernel_version,
        "osImage": info.os_image,
        "machineID": info.machine_id,
        "bootID": info.boot_id,
        "kubeletVersion": info.version,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _labels(info: NodeInfoContent | None) -> dict[str, str]:
    """The well-known labels a kubelet sets from the facts (``kubectl get nodes -L kubernetes.io/arch``)."""
    if info is None:
        return {}
    labels = {ARCH_LABEL: info.architecture, OS_LABEL: info.operating_system}
    return {name: value for name, value in labels.items() if value}


def _info_patch(info: NodeInfoContent) -> dict[str, Any]:
    """A merge patch of ``nodes/status`` carrying the edge's facts (labels and annotation too)."""
    metadata: dict[str, Any] = {}
    if labels := _labels(info):
        metadata["labels"] = labels
    if info.mappers is not None:
        metadata["annotations"] = {MAPPERS_ANNOTATION: ",".join(info.mappers)}
    status: dict[str, Any] = {"nodeInfo": _node_info(info)}
    for name in ("capacity", "allocatable"):
        resources = getattr(info, name)
        if resources is not None:
            status[name] = resources.model_dump(exclude_none=True)
    return {"metadata": metadata, "status": status} if metadata else {"status": status}


@dataclass
class _Edge:
    address: str
    since: datetime = field(default_factory=_now)
    task: asyncio.Task[None] | None = None
    info: NodeInfoContent | None = None
    """The edge's facts as it last told them (``hub/node``)."""
    patched: NodeInfoContent | None = None
    """The facts the Node was last patched with (by this connection)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a status patch carrying the facts is made and sent: the last one sent is the newest."""


class NodeKeeper:
    """Keeps the Node and Lease of each edge connected to this cloud replica."""

    def __init__(self, api_client: Any, settings: NodeSettings, replica: str) -> None:
        from kubernetes.aio import client

        self._client = client
        self.settings = settings
        self.replica = replica
        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.edges: dict[str, _Edge] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._down: dict[str, asyncio.Task[None]] = {}
        """node -> its NotReady patch still on its way (a reconnection waits for it)."""

    def connected(self, node: str, address: str) -> None:
        """``node``'s edge is connected (again): Node made Ready, Lease renewed from now on."""
        if not self.settings.enabled:
            return
        previous = self.edges.pop(node, None)
        if previous is not None and previous.task is not None:
            previous.task.cancel()
        edge = self.edges[node] = _Edge(address)
        edge.task = asyncio.create_task(self._keep(node, edge), name=f"node-{node}")

    def info(self, node: str, info: NodeInfoContent) -> None:
        """``node``'s edge told its facts: onto its Node at once (or with the Ready patch, if
        that is still to come)."""
        edge = self.edges.get(node)
        if edge is None or edge.info == info:
            return
        edge.info = info
        self._spawn(self._set_info(node, edge), f"node-{node}-info")

    def disconnected(self, node: str) -> None:
        """``node``'s edge is gone: renewals stop, the Node is marked NotReady."""
        edge = self.edges.pop(node, None)
        if edge is None:
            return
        if edge.task is not None:
            edge.task.cancel()
        down = self._spawn(self._set_not_ready(node), f"node-{node}-down")
        self._down[node] = down
        down.add_done_callback(
            lambda task: self._down.pop(node, None) if self._down.get(node) is task else None
        )

    async def drain(self) -> None:
        """Wait for the NotReady patches on their way (the renewals go on)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        tasks = [e.task for e in self.edges.values() if e.task is not None] + list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, work: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _keep(self, node: str, edge: _Edge) -> None:
        """Create the Node if missing, mark it Ready, then renew the Lease until cancelled."""
        down = self._down.get(node)
        if down is not None:
            # the last disconnection's NotReady first: landing after this Ready, it would undo it
            await asyncio.gather(down, return_exceptions=True)
        await self._register(node, edge)
        failed = False
        while True:
            try:
                await self._renew(node)
                if failed:
                    # renewals failed for a while: the leader may have marked the Node NotReady
                    await self._set_ready(node, edge)
                elif edge.info != edge.patched:  # its own patch failed: again with the renewals
                    await self._set_info(node, edge)
                failed = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failed = True
                log.warning("node %s: Lease renewal failed: %s", node, api_error(exc))
            await asyncio.sleep(self.settings.renew_seconds)

    async def _register(self, node: str, edge: _Edge) -> None:
        while True:
            try:
                await self._ensure_node(node, edge)
                await self._set_ready(node, edge)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "node %s: could not register its Node (%s); again in %.0f s", node, api_error(exc), 5
                )
                await asyncio.sleep(5)

    async def _ensure_node(self, node: str, edge: _Edge) -> None:
        try:
            await self.core.read_node(node)
            return
        except Exception as exc:
            if _status(exc) != 404:
                raise
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node,
                "labels": {EDGE_ROLE: "", "kubernetes.io/hostname": node, **_labels(edge.info)},
                "annotations": {REPLICA_ANNOTATION: self.replica},
            },
        }
        try:
            await self.core.create_node(self._client.V1Node.from_dict(body))  # type: ignore[arg-type]
            log.info("node %s: Node created", node)
        except Exception as exc:
            if _status(exc) != 409:  # made meanwhile (another replica, an earlier connection)
                raise

    async def _set_ready(self, node: str, edge: _Edge) -> None:
        """Ready, this replica named on the Node (the status subresource of a Node keeps
        metadata changes, so ``patch nodes/status`` is the only right this needs), with the
        edge's facts if it told them already."""
        async with edge.lock:
            info = edge.info
            body: dict[str, Any] = _info_patch(info) if info is not None else {"status": {}}
            metadata = body.setdefault("metadata", {})
            metadata.setdefault("annotations", {})[REPLICA_ANNOTATION] = self.replica
            address = edge.address
            body["status"].update(
                {
                    "conditions": [_ready_condition(True, "EdgeConnected", f"edge connected from {address}")],
                    "addresses": [
                        {"type": "InternalIP", "address": address},
                        {"type": "Hostname", "address": node},
                    ],
                    "nodeInfo": {"kubeletVersion": f"kubeedge-py/{__version__}", **_node_info(info)},
                }
            )
            try:
                await self.core.patch_node_status(node, body, _content_type=MERGE_PATCH)
            except Exception as exc:
                if _status(exc) == 404:
                    log.info(
                        "node %s: its Node was deleted; it is made again when the edge connects again", node
                    )
                    return
                raise
            edge.patched = info

    async def _set_info(self, node: str, edge: _Edge) -> None:
        """The edge's facts onto its Node, unless a patch carried them already."""
        async with edge.lock:
            info = edge.info
            if info is None or info == edge.patched:
                return
            try:
                await self.core.patch_node_status(node, _info_patch(info), _content_type=MERGE_PATCH)
            except Exception as exc:
                if _status(exc) != 404:
                    log.warning("node %s: could not write its node info: %s", node, api_error(exc))
                    return  # tried again after the next Lease renewal
                # 404: not made yet (its Ready patch, still to come, carries them) or deleted by
                # a user (made again, with them, when the edge connects again)
            edge.patched = info
            log.debug("node %s: node info written", node)

    async def _set_not_ready(self, node: str) -> None:
        """NotReady, only if the Node still names this replica: the API server tests the
        annotation and applies the change in one step, so an edge that meanwhile connected to
        another replica keeps the Ready that replica gave it."""
        condition = _ready_condition(False, "EdgeDisconnected", f"edge disconnected from {self.replica}")
        patch: list[dict[str, Any]] = [
            {
                "op": "test",
                "path": f"/metadata/annotations/{_pointer(REPLICA_ANNOTATION)}",
                "value": self.replica,
            },
            {"op": "add", "path": "/status/conditions", "value": [condition]},
        ]
        try:
            await self.core.patch_node_status(node, patch, _content_type=JSON_PATCH)
        except Exception as exc:
            status = _status(exc)
            if status == 404:
                return
            if status == 422:  # the test failed: another replica serves the edge now
                log.info("node %s: served by another replica now; not marked NotReady", node)
                return
            log.warning("node %s: could not mark it NotReady: %s", node, api_error(exc))

    async def _renew(self, node: str) -> None:
        now = _micro_time(client_time(_now()))
        try:
            await self.coordination.patch_namespaced_lease(
                node, LEASE_NAMESPACE, {"spec": {"renewTime": now}}, _content_type=MERGE_PATCH
            )
            return
        except Exception as exc:
            if _status(exc) != 404:
                raise
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": node, "namespace": LEASE_NAMESPACE},
            "spec": {
                "holderIdentity": node,
                "leaseDurationSeconds": self.settings.lease_duration_seconds,
                "renewTime": now,
            },
        }
        try:
            await self.coordination.create_namespaced_lease(
                LEASE_NAMESPACE,
                self._client.V1Lease.from_dict(lease),  # type: ignore[arg-type]
            )
        except Exception as exc:
            if _status(exc) != 409:  # 409: made meanwhile (another replica)
                raise


class NodeMonitor:
    """The leader's chore: edge Nodes left Ready by a replica that vanished are marked NotReady.

    As kube-controller-manager's node-lifecycle controller does for kubelets: every
    ``replica.nodeMonitorPeriodSeconds`` it lists the Nodes labelled ``node-role.kubernetes.io/edge``
    and the Leases in ``kube-node-lease``, and notes when it saw each Lease's ``renewTime``
    change, on its own monotonic clock (never comparing another machine's timestamps with its
    own). A Ready Node whose Lease has not changed for the Lease's ``leaseDurationSeconds`` is
    marked NotReady (reason ``CloudReplicaLost``, naming the replica from its annotation). A
    replica that serves the edge renews its Lease every ``nodes.renewSeconds``, so only an edge
    whose replica is gone (killed, cut off from the API server) and that has not reconnected to
    another is marked. The patch is conditional on the Node's ``resourceVersion`` as listed: a
    Node changed meanwhile (its edge reconnected and was marked Ready) is left alone. A new leader
    starts observing afresh, so it marks nothing before a whole lease duration has passed.
    """

    def __init__(self, api_client: Any, period: float) -> None:
        from kubernetes.aio import client

        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.period = period
        self.marked = 0
        """Nodes this monitor marked NotReady (for tests)."""
        self._observed: dict[str, tuple[Any, float]] = {}
        """node -> (its Lease's renewTime as last seen, when that was first seen: monotonic)."""

    async def run(self) -> None:
        """Check every period until cancelled (while this replica leads)."""
        self._observed.clear()
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node monitor: could not check the edge Nodes: %s", api_error(exc))
            await asyncio.sleep(self.period)

    async def check(self) -> None:
        nodes: Any = await self.core.list_node(label_selector=EDGE_ROLE)
        leases: Any = await self.coordination.list_namespaced_lease(LEASE_NAMESPACE)
        renewed = {lease.metadata.name: lease.spec for lease in leases.items if lease.spec is not None}
        now = time.monotonic()
        seen: set[str] = set()
        for item in nodes.items:
            name = item.metadata.name
            conditions = (item.status.conditions if item.status else None) or []
            if not any(c.type == "Ready" and c.status == "True" for c in conditions):
                continue
            seen.add(name)
            spec = renewed.get(name)
            stamp = spec.renew_time if spec is not None else None
            duration = (spec.lease_duration_seconds if spec is not None else None) or 40
            observed = self._observed.get(name)
            if observed is None or observed[0] != stamp:
                self._observed[name] = (stamp, now)
                continue
            if now - observed[1] < duration:
                continue
            await self._mark(name, item, duration)
        for name in set(self._observed) - seen:
            del self._observed[name]

    async def _mark(self, name: str, item: Any, duration: int) -> None:
        replica = (item.metadata.annotations or {}).get(REPLICA_ANNOTATION, "unknown")
        condition = _ready_condition(
            False,
            "CloudReplicaLost",
            f"the cloud replica {replica} serving this edge stopped renewing its Lease "
            f"(not renewed for {duration} s)",
        )
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": item.metadata.resource_version},
            {"op": "add", "path": "/status/conditions", "value": [condition]},
        ]
        try:
            await self.core.patch_node_status(name, patch, _content_type=JSON_PATCH)
        except Exception as exc:
            if _status(exc) in (404, 409, 422):  # deleted, or changed since it was listed
                return
            raise
        self.marked += 1
        self._observed.pop(name, None)
        log.info("node %s: marked NotReady: its cloud replica %s is gone (Lease not renewed)", name, replica)
