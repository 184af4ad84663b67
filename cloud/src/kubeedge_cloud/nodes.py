"""Edge nodes as Kubernetes ``Node`` objects, with a ``Lease`` heartbeat in ``kube-node-lease``.

What a kubelet does for its node, done by the cloud for each edge connected to it (KubeEdge's
cloudcore does the same for its edges): when an edge connects, its Node is created if missing
(labelled ``node-role.kubernetes.io/edge``, with the address it connected from) and marked Ready;
while it stays connected its Lease is renewed every ``renewSeconds``; when its link drops, the
Node is marked NotReady at once (reason ``EdgeDisconnected``) and the renewals stop.

A Node a user deletes stays deleted while its edge is connected (heartbeats do not recreate it);
it comes back when the edge connects again, as a kubelet's node does when the kubelet restarts.
Each replica of the cloud keeps the Nodes of the edges connected to it; nothing here is shared
between replicas but the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kubeedge_cloud import __version__

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
EDGE_ROLE = "node-role.kubernetes.io/edge"
MERGE_PATCH = "application/merge-patch+json"


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


@dataclass
class _Edge:
    address: str
    since: datetime = field(default_factory=_now)
    task: asyncio.Task[None] | None = None


class NodeKeeper:
    """Keeps the Node and Lease of each edge connected to this cloud replica."""

    def __init__(self, api_client: Any, settings: NodeSettings) -> None:
        from kubernetes.aio import client

        self._client = client
        self.settings = settings
        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.edges: dict[str, _Edge] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def connected(self, node: str, address: str) -> None:
        """``node``'s edge is connected (again): Node made Ready, Lease renewed from now on."""
        if not self.settings.enabled:
            return
        previous = self.edges.pop(node, None)
        if previous is not None and previous.task is not None:
            previous.task.cancel()
        edge = self.edges[node] = _Edge(address)
        edge.task = asyncio.create_task(self._keep(node, edge), name=f"node-{node}")

    def disconnected(self, node: str) -> None:
        """``node``'s edge is gone: renewals stop, the Node is marked NotReady."""
        edge = self.edges.pop(node, None)
        if edge is None:
            return
        if edge.task is not None:
            edge.task.cancel()
        self._spawn(self._set_ready(node, edge.address, ready=False), f"node-{node}-down")

    async def stop(self) -> None:
        tasks = [e.task for e in self.edges.values() if e.task is not None] + list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep(self, node: str, edge: _Edge) -> None:
        """Create the Node if missing, mark it Ready, then renew the Lease until cancelled."""
        while True:
            try:
                await self._ensure_node(node, edge.address)
                await self._set_ready(node, edge.address, ready=True)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node %s: could not register its Node (%s); again in %.0f s", node, exc, 5)
                await asyncio.sleep(5)
        while True:
            try:
                await self._renew(node)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node %s: Lease renewal failed: %s", node, exc)
            await asyncio.sleep(self.settings.renew_seconds)

    async def _ensure_node(self, node: str, address: str) -> None:
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
                "labels": {EDGE_ROLE: "", "kubernetes.io/hostname": node},
            },
        }
        try:
            await self.core.create_node(self._client.V1Node.from_dict(body))  # type: ignore[arg-type]
            log.info("node %s: Node created", node)
        except Exception as exc:
            if _status(exc) != 409:  # made meanwhile (another replica, an earlier connection)
                raise

    async def _set_ready(self, node: str, address: str, *, ready: bool) -> None:
        now = _time(_now())
        condition = {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": "EdgeConnected" if ready else "EdgeDisconnected",
            "message": f"edge connected from {address}" if ready else "edge disconnected from the cloud",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        body = {
            "status": {
                "conditions": [condition],
                "addresses": [
                    {"type": "InternalIP", "address": address},
                    {"type": "Hostname", "address": node},
                ],
                "nodeInfo": {"kubeletVersion": f"kubeedge-py/{__version__}"},
            }
        }
        try:
            await self.core.patch_node_status(node, body, _content_type=MERGE_PATCH)
        except Exception as exc:
            if _status(exc) == 404:
                log.info("node %s: its Node was deleted; it is made again when the edge connects again", node)
                return
            if ready:
                raise
            log.warning("node %s: could not mark it NotReady: %s", node, exc)

    async def _renew(self, node: str) -> None:
        now = _micro_time(_now())
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
        with contextlib.suppress(Exception):
            await self.coordination.create_namespaced_lease(
                LEASE_NAMESPACE,
                self._client.V1Lease.from_dict(lease),  # type: ignore[arg-type]
            )
