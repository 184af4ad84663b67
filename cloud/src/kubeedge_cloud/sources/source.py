"""The device source interface: where Devices and DeviceModels come from and status goes to.

A source is a cloud module that offers what a Kubernetes informer needs (list, then watch from
the listing's revision; a watch from a revision the source no longer remembers raises
:class:`Gone`, and the reader lists again, as client-go does on HTTP 410) plus status writes.
The files source implements it on a folder and SQLite; the Kubernetes source implements it on
the API server (list/watch Devices and DeviceModels, status through the status subresource).

Versions: every object carries one, compared for equality only. It must change when, and only
when, what the edge receives changes: the object without its status. (Kubernetes'
``resourceVersion`` also changes on status writes, so a Kubernetes source should version objects
by ``metadata.generation``, or a digest of what is sent, not by ``resourceVersion``.)
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from kubeedge.api.channel import NodeInfoContent, TwinStatus, object_resource
from kubeedge.api.device import Device, DeviceModel
from kubeedge_cloud.module import CloudModule


@dataclass(frozen=True)
class SourceObject:
    """A Device or DeviceModel as the source holds it, with its version."""

    obj: Device | DeviceModel
    version: str

    @property
    def kind(self) -> Literal["device", "devicemodel"]:
        return "device" if isinstance(self.obj, Device) else "devicemodel"

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return self.obj.key

    @property
    def resource(self) -> str:
        """The channel's name for it: ``device/ns/name`` or ``devicemodel/ns/name``."""
        return object_resource(self.kind, self.obj.namespace, self.obj.name)

    def content(self) -> dict[str, Any]:
        """What the edge receives: the object as given, without its status."""
        return sendable(self.obj)


def sendable(obj: Device | DeviceModel) -> dict[str, Any]:
    data = obj.to_dict()
    data.pop("status", None)
    return data


@dataclass(frozen=True)
class Listing:
    objects: list[SourceObject]
    revision: str
    """Watch from here to see every change after the listing."""


@dataclass(frozen=True)
class WatchEvent:
    type: Literal["put", "delete"]
    """put: added or changed (``object`` is the new version); delete: ``object`` is the last one."""
    object: SourceObject
    revision: str


class Gone(Exception):
    """The revision asked for is older than what the source remembers: list again."""


@dataclass
class DeviceStatusRecord:  # what read_status answers: a view for people and the CLI
    """A device's status as the cloud holds it (KubeEdge's ``status``, with the reporting node)."""

    node: str = ""
    state: str | None = None
    last_online_time: str | None = None
    twins: dict[str, TwinStatus] = field(default_factory=dict)
    updated_at: int = 0
    """When the cloud stored the last report (ms)."""


StatusChange = dict[str, Any]
"""A device's changes as a report carries them, in its JSON form with only the fields present:
``{"twins": {"temperature": {"reported": "21.5", "reported_at": 1754450000000}}, "state":
"online", "last_online_time": "..."}`` (``kubeedge.api.channel.DeviceReport``, validated by the
hub: ``kubeedge_cloud.hub.reports``). Plain
data, not models: this is the cloud's hottest path, merged and written thousands of times a
second."""


def merge_change(held: StatusChange, newer: StatusChange) -> None:
    """Fold ``newer`` into ``held``, field by field (a field present in ``newer`` wins): the
    coalescing of reports per device, and the merge of a report into a device's status."""
    for name, value in newer.items():
        if name == "twins":
            twins = held.setdefault("twins", {})
            for prop, fields in value.items():
                current = twins.get(prop)
                if current is None:
                    twins[prop] = dict(fields)
                else:
                    current.update(fields)
        elif value is not None or name not in held:
            # a state report that is not online leaves lastOnlineTime as it was (KubeEdge too)
            held[name] = value


class Source(CloudModule):
    """Base class of device sources (see the module's docstring for the contract)."""

    order: ClassVar[int] = 10
    overlapping_writes: ClassVar[bool] = False
    """Whether :meth:`write_status` may be called again before an earlier call returned (the
    source then applies batches in call order itself)."""

    async def open_view(self) -> None:
        """Open for reading only, instead of :meth:`start` (``device list --cloud``):
        :meth:`list` and :meth:`read_status` answer, nothing is written or followed."""
        await self.start()

    @abstractmethod
    async def list(self) -> Listing:
        """Every Device and DeviceModel the source holds now, and the revision to watch from."""

    @abstractmethod
    def watch(self, revision: str) -> AsyncIterator[WatchEvent]:
        """Every change after ``revision``, in order, for as long as the reader iterates; raises
        :class:`Gone` if the source no longer knows what happened since ``revision``."""

    @abstractmethod
    async def write_status(self, batch: Mapping[str, tuple[str, StatusChange]]) -> None:
        """Store the status of devices: device key -> (reporting node, its changes). Returns
        once stored (the edge's reports are acked then); one call is one write per device."""

    @abstractmethod
    async def read_status(self, keys: Collection[str] | None = None) -> dict[str, DeviceStatusRecord]:
        """The status held for the given devices (every device's when ``None``)."""

    def node_connected(self, node: str, address: str) -> None:
        """``node``'s edge connected to this cloud from ``address`` (the Kubernetes source keeps
        a Node and a Lease for it); by default nothing."""

    def node_disconnected(self, node: str) -> None:
        """``node``'s edge is no longer connected to this cloud; by default nothing."""

    def node_info(self, node: str, info: NodeInfoContent) -> None:
        """``node``'s edge (connected to this cloud) told its own facts (``hub/node``, validated:
        architecture, OS, kernel, capacity...), after each of its syncs; by default nothing."""
