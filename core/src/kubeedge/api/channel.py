"""The cloud-edge channel's messages (version 1): what the cloud hub and the edge hub say.

One websocket per edge node (TLS; the node's token in the upgrade request). Every frame is one
JSON message in the spirit of KubeEdge's beehive ``model.Message``: a header (id, parent id,
timestamp, resource version), a route (source, group, operation, resource) and content. The
field names follow beehive's (``msg_id``, ``parent_msg_id``, ``resourceversion``); ``v`` is ours.
docs/wire.md ("Cloud-edge channel") has the conversation; this module has the shapes, shared by
``kubeedge_cloud`` and the edge's ``edgehub`` module (the edge never imports the cloud).

Resources are ``device/{namespace}/{name}`` and ``devicemodel/{namespace}/{name}``. A resource
version is opaque: the two sides only ever compare versions for equality (Kubernetes'
``metadata.resourceVersion`` and the files source's counter both work).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubeedge.api.twin import now_ms
from kubeedge.errors import WireError

CHANNEL_VERSION = 1
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest frame either side accepts (a Device with its model is a few KB; a report batch of a
busy node a few hundred KB)."""
CHANNEL_PATH = "/v1/nodes/{node}/events"
"""The websocket path on the cloud hub; the token in ``Authorization: Bearer`` must name ``node``."""

# groups
HUB = "hub"
"""The conversation itself: sync, synced, ack, error, keepalive, node."""
RESOURCE = "resource"
"""Objects the cloud sends down: insert, update, delete (acked)."""
TWIN = "twin"
"""What the edge reports up: report (acked)."""

# operations
SYNC = "sync"
"""edge -> cloud, first message after connecting: the versions it holds (``SyncContent``)."""
SYNCED = "synced"
"""cloud -> edge: every change since the edge's versions has been sent (``SyncedContent``)."""
INSERT, UPDATE, DELETE = "insert", "update", "delete"
REPORT = "report"
"""edge -> cloud: status of devices (``ReportContent``)."""
ACK = "ack"
"""either way: ``parent_msg_id`` names the message taken (stored) by the other side."""
ERROR = "error"
"""either way: ``parent_msg_id`` names the refused message; content is ``ErrorContent``."""
KEEPALIVE = "keepalive"
NODE = "node"
"""edge -> cloud, after each ``hub/synced`` that said ``node_info``: the edge's own facts
(``NodeInfoContent``); not answered unless refused (``hub/error``)."""

Operation = Literal[
    "sync", "synced", "insert", "update", "delete", "report", "ack", "error", "keepalive", "node"
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Header(_Model):
    msg_id: str = Field(default_factory=lambda: uuid.uuid4().hex, max_length=128)
    parent_msg_id: str = Field(default="", max_length=128)
    timestamp: int = Field(default_factory=now_ms)
    resourceversion: str = Field(default="", max_length=128)


class Route(_Model):
    source: str = Field(max_length=64)
    group: Literal["hub", "resource", "twin"]
    operation: Operation
    resource: str = Field(default="", max_length=512)


class Message(_Model):
    v: int = CHANNEL_VERSION
    header: Header = Field(default_factory=Header)
    route: Route
    content: Any = None

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @property
    def id(self) -> str:
        return self.header.msg_id


def parse_message(frame: bytes | str) -> Message:
    """A frame from the other side; :class:`WireError` (code 400) names what is wrong."""
    size = len(frame)
    if size > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit", 413)
    try:
        message = Message.model_validate_json(frame)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise WireError(f"{where}: {first['msg']}") from None
    if message.v != CHANNEL_VERSION:
        raise WireError(f"channel version {message.v} is not understood (this side speaks {CHANNEL_VERSION})")
    return message


def object_resource(kind: str, namespace: str, name: str) -> str:
    """``device/{ns}/{name}`` or ``devicemodel/{ns}/{name}`` (``kind`` is ``Device`` or ``DeviceModel``)."""
    return f"{kind.lower()}/{namespace}/{name}"


def split_resource(resource: str) -> tuple[str, str, str]:
    """``(kind, namespace, name)`` of a resource; kind is ``device`` or ``devicemodel``."""
    parts = resource.split("/")
    if len(parts) != 3 or parts[0] not in ("device", "devicemodel") or not all(parts):
        raise WireError(
            f"resource {resource[:80]!r} is not device/NAMESPACE/NAME or devicemodel/NAMESPACE/NAME"
        )
    return parts[0], parts[1], parts[2]


class SyncContent(_Model):
    """What the edge holds, sent on every (re)connect: resource -> resource version."""

    instance: str = Field(max_length=64)
    """The edge process's id (a new one per start)."""
    versions: dict[str, str] = Field(default_factory=dict)


class SyncedContent(_Model):
    sent: int
    """Objects (inserts, updates, deletes) the cloud sent for this sync."""
    priority: bool = False
    """The cloud takes priority reports (``ReportContent.priority``): the edge may then keep one
    of them in flight besides its one ordinary report. A cloud that does not say so gets one
    report at a time (an edge ignores keys of ``hub/synced`` it does not know, so saying it is
    safe towards older edges)."""
    node_info: bool = False
    """The cloud takes ``hub/node`` (``NodeInfoContent``): the edge then sends its facts after
    each ``hub/synced``. A cloud that does not say so never gets one (its strict route shape
    would refuse the operation)."""


LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
"""A Kubernetes label value (architecture and operating system become the Node's
``kubernetes.io/arch`` and ``kubernetes.io/os`` labels)."""
MAPPER_NAME = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"
"""A mapper's protocol name as ``hub/node`` carries it."""
QUANTITY = r"^[0-9]{1,18}(\.[0-9]{1,9})?(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?$"
"""A Kubernetes resource quantity, in the plain forms an edge uses (``2``, ``500m``, ``16318440Ki``)."""


class NodeResources(_Model):
    """What a Node offers (``status.capacity`` / ``status.allocatable``), as quantities."""

    cpu: str | None = Field(default=None, max_length=32, pattern=QUANTITY)
    memory: str | None = Field(default=None, max_length=32, pattern=QUANTITY)
    pods: str | None = Field(default=None, max_length=32, pattern=QUANTITY)
    """``0`` from these edges: they run no pods, so the scheduler must never place one there."""


class NodeInfoContent(_Model):
    """edge -> cloud (``hub/node``): the edge's own facts, as a kubelet puts them in its Node's
    ``status.nodeInfo``, ``capacity`` and ``allocatable``. Every field is optional (an edge
    that cannot tell leaves it out); lengths are bounded."""

    architecture: str | None = Field(default=None, max_length=63, pattern=LABEL_VALUE)
    """Go's GOARCH naming: ``amd64``, ``arm64``, ``arm``."""
    operating_system: str | None = Field(default=None, max_length=63, pattern=LABEL_VALUE)
    """Go's GOOS naming: ``linux``."""
    kernel_version: str | None = Field(default=None, max_length=256)
    os_image: str | None = Field(default=None, max_length=256)
    """``PRETTY_NAME`` of the edge's os-release."""
    machine_id: str | None = Field(default=None, max_length=128)
    boot_id: str | None = Field(default=None, max_length=128)
    version: str | None = Field(default=None, max_length=128)
    """``kubeedge-py/VERSION``: the Node's ``kubeletVersion``."""
    capacity: NodeResources | None = None
    allocatable: NodeResources | None = None
    mappers: list[Annotated[str, Field(max_length=63, pattern=MAPPER_NAME)]] | None = Field(
        default=None, max_length=64
    )
    """The protocols this edge's in-process mappers speak (``modbus``, ``virtual``)."""


class TwinStatus(_Model):
    """One property's status as the cloud keeps it (KubeEdge's ``status.twins[]``)."""

    reported: str | None = None
    reported_at: int | None = None
    """When the value was read (ms)."""
    observed_desired: str | None = None
    observed_desired_at: int | None = None
    type: str = "string"
    error: str | None = None


class DeviceReport(_Model):
    """A device's changes since the last report: only what changed is present."""

    twins: dict[str, TwinStatus] = Field(default_factory=dict)
    state: str | None = None
    last_online_time: str | None = None


class ReportContent(_Model):
    """edge -> cloud: ``device key`` (``ns/name``) -> its report. Acked once the cloud stored it."""

    devices: dict[str, DeviceReport]
    priority: bool = False
    """Every change in it answers a user (:func:`answers_desired`) or is a change of a device's
    state: the cloud writes it ahead of telemetry and acks it on its own. Sent only to a cloud
    whose ``hub/synced`` said ``priority``."""


def answers_desired(
    old_desired: str | None, old_reported: str | None, desired: str | None, reported: str | None
) -> bool:
    """Whether a property's status, going from (``old_desired``, ``old_reported``) to
    (``desired``, ``reported``), answers a user's desired value: the observed-desired value
    changed, or the reported value has just reached it (the device took it). Such changes, and
    changes of a device's state, travel in priority reports; everything else is telemetry."""
    if desired != old_desired:
        return True
    return desired is not None and reported == desired and old_reported != desired


class ErrorContent(_Model):
    code: int
    reason: str = Field(max_length=4096)
