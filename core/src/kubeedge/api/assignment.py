"""Device assignment to mappers over the bus (our protocol, version 1; docs/wire.md).

A mapper, in the edge process or in its own, learns which devices it serves (each with its model
defaults merged in, and its model) from the edge:

* ``$ke/edge/{node}/status`` (retained; the edge's will sets it offline): :class:`EdgeStatus`.
  A new ``instance`` means the edge restarted: a mapper says hello again.
* ``$ke/edge/{node}/mappers/{protocol}/hello`` (mapper → edge): :class:`MapperHello`.
* ``$ke/edge/{node}/mappers/{protocol}/assignments`` (edge → mappers, QoS 1, in order):
  :class:`AssignmentMessage`, a ``snapshot`` (all devices of the protocol, in parts) after each
  hello, then ``upsert`` / ``delete`` as devices change.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from kubeedge.api.twin import WireModel

ASSIGNMENT_VERSION = 1
SNAPSHOT_PART_SIZE = 200


class EdgeStatus(WireModel):
    version: int = ASSIGNMENT_VERSION
    state: Literal["online", "offline"]
    instance: str
    """A new value on every edge start."""
    timestamp: int = 0
    mappers: list[str] = Field(default_factory=list)
    """Protocols whose mapper runs inside the edge process (another one would serve twice)."""
    problems: list[str] = Field(default_factory=list)
    """What is wrong inside the edge (a task that failed and was restarted, or the reason it
    stopped); empty when healthy. Our addition, for ``kubeedge edge status``."""


class MapperHello(WireModel):
    version: int = ASSIGNMENT_VERSION
    instance: str
    """The mapper process's own id, new on every start."""
    name: str = ""
    distribution: str = ""
    distribution_version: str = ""


class MapperGoodbye(WireModel):
    """A mapper's last word: published when it stops, and left with the broker as its MQTT will,
    which the broker publishes when the mapper's connection drops without a goodbye (a crash,
    ``kill -9``, a lost link)."""

    version: int = ASSIGNMENT_VERSION
    instance: str
    """The ``instance`` of the hello it ends: an older instance's goodbye ends nothing."""
    reason: Literal["stopped", "connection lost"] = "stopped"


class Assignment(WireModel):
    """One device to serve: the Device (model defaults merged in) and its DeviceModel, as JSON."""

    device: dict[str, Any]
    model: dict[str, Any]


class AssignmentMessage(WireModel):
    version: int = ASSIGNMENT_VERSION
    kind: Literal["snapshot", "upsert", "delete"]
    instance: str = ""
    """The edge instance that sent it."""
    part: int = 1
    parts: int = 1
    devices: list[Assignment] = Field(default_factory=list)
    keys: list[str] = Field(default_factory=list)
    """``namespace/name`` of the devices a ``delete`` removes."""
