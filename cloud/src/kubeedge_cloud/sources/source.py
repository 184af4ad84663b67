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

from kubeedge.api.channel import DeviceReport, TwinStatus, object_resource
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
class DeviceStatusRecord:
    """A device's status as the cloud holds it (KubeEdge's ``status``, with the reporting node)."""

    node: str = ""
    state: str | None = None
    last_online_time: str | None = None
    twins: dict[str, TwinStatus] = field(default_factory=dict)
    updated_at: int = 0
    """When the cloud stored the last report (ms)."""

    def merge(self, report: DeviceReport) -> None:
        """Take a report's changes: each field present in it replaces the one held."""
        if report.state is not None:
            self.state = report.state
        if report.last_online_time is not None:
            self.last_online_time = report.last_online_time
        for name, twin in report.twins.items():
            held = self.twins.get(name)
            if held is None:
                self.twins[name] = twin.model_copy()
                continue
            self.twins[name] = held.model_copy(update={f: getattr(twin, f) for f in twin.model_fields_set})


def merge_reports(older: DeviceReport, newer: DeviceReport) -> DeviceReport:
    """One report with the changes of both (``newer`` wins field by field): status coalescing."""
    twins = dict(older.twins)
    for name, twin in newer.twins.items():
        held = twins.get(name)
        twins[name] = (
            twin
            if held is None
            else held.model_copy(update={f: getattr(twin, f) for f in twin.model_fields_set})
        )
    merged = older.model_copy(update={"twins": twins})
    if newer.state is not None:
        merged.state = newer.state
    if newer.last_online_time is not None:
        merged.last_online_time = newer.last_online_time
    return merged


class Source(CloudModule):
    """Base class of device sources (see the module's docstring for the contract)."""

    order: ClassVar[int] = 10

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
    async def write_status(self, batch: Mapping[str, tuple[str, DeviceReport]]) -> None:
        """Store the status of devices: device key -> (reporting node, its changes). Returns
        once stored (the edge's reports are acked then); one call is one write per device."""

    @abstractmethod
    async def read_status(self, keys: Collection[str] | None = None) -> dict[str, DeviceStatusRecord]:
        """The status held for the given devices (every device's when ``None``)."""
