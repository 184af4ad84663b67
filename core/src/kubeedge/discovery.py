"""Discovery: what a mapper finds on its network, written as Device and DeviceModel manifests.

A mapper that can list the devices its protocol reaches (Zigbee2MQTT's device list, Home
Assistant's MQTT discovery messages, BACnet's Who-Is) provides a :class:`Discoverer` through the
``kubeedge_register_discoverers`` hook. ``kubeedge mapper discover PROTOCOL`` validates the
options given on the command line with its ``options_model``, runs :meth:`Discoverer.discover`,
and turns what it found (:class:`FoundDevice`) into manifests with :func:`to_manifests`: one
DeviceModel per kind of device, one Device per device, with names made valid and unique, that
``kubeedge validate`` accepts as they are (the command checks them with the mapper's own models
before writing them).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

API_VERSION = "devices.kubeedge.io/v1beta1"
MAX_NAME = 63
OptionsT = TypeVar("OptionsT", bound=BaseModel)


@dataclass(frozen=True)
class FoundProperty:
    """One property of a kind of device."""

    name: str
    type: str
    """DeviceModel type: INT, FLOAT, DOUBLE, BOOLEAN, STRING or BYTES."""
    visitor: dict[str, Any] = field(default_factory=dict)
    """The property's ``visitors.configData`` (in the DeviceModel)."""
    writable: bool = False
    unit: str | None = None
    minimum: str | None = None
    maximum: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class FoundModel:
    """A kind of device: what becomes a DeviceModel."""

    name: str
    """A name to start from (a vendor and model number); made a valid manifest name."""
    properties: tuple[FoundProperty, ...]
    protocol_config: dict[str, Any] = field(default_factory=dict)
    """The model's ``protocolConfigData`` (what every device of the kind shares)."""
    description: str | None = None


@dataclass(frozen=True)
class FoundDevice:
    """One device found, and where."""

    name: str
    """Its name on the network (a friendly name); made a valid manifest name."""
    model: FoundModel
    protocol_config: dict[str, Any] = field(default_factory=dict)
    """The Device's ``spec.protocol.configData``."""
    source: str = ""
    """Where it was found (a topic, an address), kept as an annotation."""


class Discoverer(ABC, Generic[OptionsT]):
    """Finds the devices of one protocol; register it with ``kubeedge_register_discoverers``."""

    protocol: ClassVar[str]
    """The protocol (the mapper's entry point name) the devices are served by."""
    options_model: ClassVar[type[BaseModel]]
    """The ``-O key=value`` options of ``kubeedge mapper discover``; errors name the key."""
    default_seconds: ClassVar[float] = 3.0
    """How long to listen when the command line does not say."""

    @abstractmethod
    async def discover(self, options: OptionsT, seconds: float) -> list[FoundDevice]:
        """Look for devices for about ``seconds``; raise :class:`kubeedge.KubeEdgeError` (or
        ``OSError``) with the reason when the network cannot be reached."""


def manifest_name(text: str, fallback: str = "device") -> str:
    """A Kubernetes object name (RFC 1123 label, at most 63 characters) a person would keep:
    ``Living Room Lamp`` -> ``living-room-lamp``, ``0x00158d00`` -> ``0x00158d00``."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    name = name[:MAX_NAME].rstrip("-")
    return name or fallback


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate = name[: MAX_NAME - len(suffix)].rstrip("-") + suffix
        n += 1
    taken.add(candidate)
    return candidate


def to_manifests(found: list[FoundDevice], protocol: str, namespace: str = "default") -> list[dict[str, Any]]:
    """DeviceModels (one per distinct kind, in order of first use) then Devices, of ``protocol``."""
    models: dict[tuple[Any, ...], str] = {}
    model_docs: list[dict[str, Any]] = []
    device_docs: list[dict[str, Any]] = []
    model_names: set[str] = set()
    device_names: set[str] = set()
    for device in found:
        identity = _model_identity(device.model)
        model_name = models.get(identity)
        if model_name is None:
            model_name = _unique(manifest_name(device.model.name, "model"), model_names)
            models[identity] = model_name
            model_docs.append(_model_document(device.model, model_name, protocol, namespace))
        name = _unique(manifest_name(device.name), device_names)
        device_docs.append(_device_document(device, name, model_name, protocol, namespace))
    return model_docs + device_docs


def _model_identity(model: FoundModel) -> tuple[Any, ...]:
    return (model.name, repr(model.properties), repr(sorted(model.protocol_config.items())))


def _model_document(model: FoundModel, name: str, protocol: str, namespace: str) -> dict[str, Any]:
    properties = []
    for prop in model.properties:
        entry: dict[str, Any] = {"name": prop.name}
        if prop.description:
            entry["description"] = prop.description
        entry["type"] = prop.type
        entry["accessMode"] = "ReadWrite" if prop.writable else "ReadOnly"
        for key, value in (("unit", prop.unit), ("minimum", prop.minimum), ("maximum", prop.maximum)):
            if value is not None:
                entry[key] = value
        if prop.visitor:
            entry["visitors"] = {"protocolName": protocol, "configData": dict(prop.visitor)}
        properties.append(entry)
    spec: dict[str, Any] = {"protocol": protocol}
    if model.protocol_config:
        spec["protocolConfigData"] = dict(model.protocol_config)
    spec["properties"] = properties
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if model.description:
        metadata["annotations"] = {"kubeedge.io/description": model.description}
    return {"apiVersion": API_VERSION, "kind": "DeviceModel", "metadata": metadata, "spec": spec}


def _device_document(
    device: FoundDevice, name: str, model_name: str, protocol: str, namespace: str
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if device.source:
        metadata["annotations"] = {"kubeedge.io/discovered-at": device.source}
    return {
        "apiVersion": API_VERSION,
        "kind": "Device",
        "metadata": metadata,
        "spec": {
            "deviceModelRef": {"name": model_name},
            "protocol": {"protocolName": protocol, "configData": dict(device.protocol_config)},
            "properties": [{"name": p.name} for p in device.model.properties],
        },
    }
