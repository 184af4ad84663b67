"""Discovery for ``kubeedge mapper discover bacnet``: find BACnet devices (Who-Is), read their
objects (object list, names, units) and describe them as :class:`kubeedge.FoundDevice`, which the
command writes as Device and DeviceModel manifests a user can edit and apply.

Who-Is is broadcast when no address is given (on a BACnet/IP subnet, or through a BBMD the
mapper registers with as a foreign device), or sent to each given address (a device behind a
router that forwards unicast only, or on loopback, where a broadcast reaches nobody). Each device
that answers with I-Am is asked for its name and object list, then for each object's name (and
units, where it has them), with ReadPropertyMultiple. Objects of a kind a DeviceModel type can
hold become properties: inputs read-only (pushed by COV), outputs and values writable. Devices
with the same model name and the same objects share one DeviceModel.

    kubeedge mapper discover bacnet -O range=1000-1999 -o manifests/
    kubeedge mapper discover bacnet -O address=10.0.0.5,10.0.0.6:47809 -O localAddress=10.0.0.2
    kubeedge mapper discover bacnet -O bbmdAddress=10.1.0.1 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.app import Application
from bacpypes3.basetypes import ErrorType
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from kubeedge import Discoverer, FoundDevice, FoundModel, FoundProperty, KubeEdgeError, manifest_name
from kubeedge_mapper_bacnet.config import BACNET_PORT, MAX_INSTANCE, bacnet_address, host_port

log = logging.getLogger(__name__)
KINDS: dict[str, tuple[str, bool]] = {
    "analog-input": ("FLOAT", False),
    "analog-output": ("FLOAT", True),
    "analog-value": ("FLOAT", True),
    "large-analog-value": ("DOUBLE", True),
    "binary-input": ("BOOLEAN", False),
    "binary-output": ("BOOLEAN", True),
    "binary-value": ("BOOLEAN", True),
    "multi-state-input": ("INT", False),
    "multi-state-output": ("INT", True),
    "multi-state-value": ("INT", True),
    "integer-value": ("INT", True),
    "positive-integer-value": ("INT", True),
    "accumulator": ("INT", False),
    "characterstring-value": ("STRING", True),
    "octetstring-value": ("BYTES", True),
}
"""Object type -> (DeviceModel type of its presentValue, writable). Other objects (schedules,
trend logs, notification classes, the device and network port objects) are not properties."""
WITH_UNITS = ("analog-input", "analog-output", "analog-value", "large-analog-value", "integer-value")
OBJECTS_PER_REQUEST = 8
"""Objects whose name (and units) one ReadPropertyMultiple asks for: the answer stays small
enough for devices that cannot segment."""


@dataclass
class BacnetObject:
    object_type: str
    instance: int
    name: str | None = None
    units: str | None = None


@dataclass
class BacnetDevice:
    """A device that answered Who-Is, and what it said about itself."""

    instance: int
    address: str
    """``ip:port`` the device answered from."""
    vendor_id: int | None = None
    name: str | None = None
    model_name: str | None = None
    objects: list[BacnetObject] = field(default_factory=list)
    problem: str | None = None
    """Why its objects could not be read (it answered Who-Is, then not a read)."""


async def discover(
    addresses: Sequence[str] = (),
    low: int = 0,
    high: int = MAX_INSTANCE,
    local_address: str = f"0.0.0.0:{BACNET_PORT}",
    bbmd_address: str | None = None,
    bbmd_ttl: int = 60,
    timeout: float = 3.0,
) -> list[BacnetDevice]:
    """Devices with an instance in ``low``-``high`` that answer Who-Is, with their objects."""
    if not addresses and bbmd_address is None and "/" not in local_address:
        raise KubeEdgeError(
            f"a broadcast Who-Is needs the local address with its subnet (localAddress {local_address!r}"
            " has none, e.g. 10.0.0.2/24), or a BBMD to register with (bbmdAddress), or the devices'"
            " addresses (address)"
        )
    app = Application.from_args(
        argparse.Namespace(
            name="kubeedge-discovery",
            instance=MAX_INSTANCE,
            address=bacnet_address(local_address),
            network=0,
            vendoridentifier=999,
            foreign=bbmd_address,
            ttl=bbmd_ttl,
            bbmd=None,
        )
    )
    try:
        if bbmd_address is not None:
            await asyncio.sleep(1.0)  # the foreign-device registration goes first
        answers: list[Any] = []
        if addresses:
            found = await asyncio.gather(
                *(app.who_is(low, high, Address(_with_port(a)), timeout) for a in addresses)
            )
            answers = [i_am for group in found for i_am in group]
        else:
            answers = list(await app.who_is(low, high, None, timeout))
        devices: dict[int, BacnetDevice] = {}
        for i_am in answers:
            instance = int(i_am.iAmDeviceIdentifier[1])
            source = i_am.pduSource
            devices.setdefault(
                instance,
                BacnetDevice(instance, f"{source.addrTuple[0]}:{source.addrTuple[1]}", int(i_am.vendorID)),
            )
        found_devices = sorted(devices.values(), key=lambda d: d.instance)
        await asyncio.gather(*(_read_objects(app, d, timeout) for d in found_devices))
        return found_devices
    finally:
        app.close()


def _with_port(address: str) -> str:
    host, port = host_port(address)
    return f"{host}:{port}"


async def _read_objects(app: Application, device: BacnetDevice, timeout: float) -> None:
    address = Address(device.address)
    device_id = ObjectIdentifier(("device", device.instance))
    try:
        device.name = str(
            await asyncio.wait_for(app.read_property(address, device_id, "object-name"), timeout)
        )
        object_list = await asyncio.wait_for(app.read_property(address, device_id, "object-list"), timeout)
    except (ErrorRejectAbortNack, TimeoutError) as exc:
        device.problem = f"its objects could not be read: {exc or 'timeout'}"
        return
    try:  # the vendor's model name: devices of one model share a DeviceModel
        model_name = await asyncio.wait_for(app.read_property(address, device_id, "model-name"), timeout)
        text = str(model_name).strip() if isinstance(model_name, str) else ""
        device.model_name = text if text.upper() not in ("", "N/A", "UNKNOWN") else None
    except (ErrorRejectAbortNack, TimeoutError):
        pass
    objects = [BacnetObject(str(oid[0]), int(oid[1])) for oid in object_list if str(oid[0]) in KINDS]
    for start in range(0, len(objects), OBJECTS_PER_REQUEST):
        chunk = objects[start : start + OBJECTS_PER_REQUEST]
        parameters: list[Any] = []
        for obj in chunk:
            parameters.append(ObjectIdentifier((obj.object_type, obj.instance)))
            parameters.append(["object-name", "units"] if obj.object_type in WITH_UNITS else ["object-name"])
        try:
            results = await asyncio.wait_for(app.read_property_multiple(address, parameters), timeout)
        except (ErrorRejectAbortNack, TimeoutError):
            continue  # the objects stay, named after their type and instance
        by_id = {(o.object_type, o.instance): o for o in chunk}
        for object_id, property_id, _, value in results or []:
            obj = by_id.get((str(object_id[0]), int(object_id[1])))
            if obj is None or value is None or isinstance(value, ErrorType):
                continue
            if str(property_id) == "object-name":
                obj.name = str(value)
            elif str(property_id) == "units":
                obj.units = str(value)
    device.objects = objects


# --------------------------------------------------------------------------- what the command writes


def _property_name(obj: BacnetObject, taken: set[str]) -> str:
    fallback = f"{obj.object_type}-{obj.instance}"
    name = manifest_name(obj.name or "", fallback)
    if name in taken:
        name = f"{name}-{obj.instance}" if f"{name}-{obj.instance}" not in taken else fallback
    taken.add(name)
    return name


def found_device(device: BacnetDevice, local_address: str | None = None) -> FoundDevice:
    """What the command writes for one device: inputs read-only and pushed by COV (they change by
    themselves), outputs and values writable and polled."""
    taken: set[str] = set()
    properties = []
    for obj in device.objects:
        kind, writable = KINDS[obj.object_type]
        visitor: dict[str, Any] = {"objectType": obj.object_type, "objectInstance": obj.instance}
        if not writable:
            visitor["cov"] = True
        properties.append(
            FoundProperty(
                name=_property_name(obj, taken),
                type=kind,
                visitor=visitor,
                writable=writable,
                unit=obj.units if obj.units and obj.units != "no-units" else None,
                description=f"{obj.name} ({obj.object_type},{obj.instance})" if obj.name else None,
            )
        )
    name = device.name or f"bacnet-{device.instance}"
    config: dict[str, Any] = {"deviceInstance": device.instance, "address": device.address}
    if local_address is not None:
        config["localAddress"] = local_address
    return FoundDevice(
        name=name,
        model=FoundModel(
            name=device.model_name or f"{name}-model",
            properties=tuple(properties),
            description=f"BACnet vendor {device.vendor_id}" if device.vendor_id is not None else None,
        ),
        protocol_config=config,
        source=f"bacnet://{device.address}/device,{device.instance}",
    )


class BacnetDiscoveryOptions(BaseModel):
    """``kubeedge mapper discover bacnet -O key=value``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    range: str | None = None
    """Device instances to look for: ``1000-1999`` or one instance (default: all)."""
    address: str | None = None
    """Comma-separated ``ip[:port]`` to send Who-Is to, instead of broadcasting it."""
    local_address: str | None = None
    """Where discovery binds (``ip[/prefix][:port]``, default ``0.0.0.0:47808``; a broadcast needs
    the prefix); written into the Devices when given: the mapper binds there too."""
    bbmd_address: str | None = None
    """Register with this BBMD as a foreign device and broadcast through it."""
    bbmd_ttl: int = Field(default=60, ge=5, le=65535)

    @field_validator("local_address", "bbmd_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            host_port(value)
        return value

    @field_validator("address")
    @classmethod
    def _addresses(cls, value: str | None) -> str | None:
        for part in (value or "").split(","):
            if part.strip():
                host_port(part.strip())
        return value

    @field_validator("range")
    @classmethod
    def _range(cls, value: str | None) -> str | None:
        _limits(value)
        return value

    def limits(self) -> tuple[int, int]:
        return _limits(self.range)

    def addresses(self) -> list[str]:
        return [part.strip() for part in (self.address or "").split(",") if part.strip()]


def _limits(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, MAX_INSTANCE
    low, sep, high = text.partition("-")
    try:
        limits = (int(low), int(high) if sep else int(low))
    except ValueError:
        raise ValueError(f"{text!r} is not INSTANCE or LOW-HIGH") from None
    if not 0 <= limits[0] <= limits[1] <= MAX_INSTANCE:
        raise ValueError(f"{text!r} must lie within 0-{MAX_INSTANCE}, low first")
    return limits


class BacnetDiscoverer(Discoverer[BacnetDiscoveryOptions]):
    protocol: ClassVar[str] = "bacnet"
    options_model: ClassVar[type[BaseModel]] = BacnetDiscoveryOptions
    default_seconds: ClassVar[float] = 3.0

    async def discover(self, options: BacnetDiscoveryOptions, seconds: float) -> list[FoundDevice]:
        low, high = options.limits()
        local = options.local_address or f"0.0.0.0:{BACNET_PORT}"
        found = await discover(
            options.addresses(), low, high, local, options.bbmd_address, options.bbmd_ttl, seconds
        )
        for device in found:
            if device.problem or not device.objects:
                log.warning(
                    "device %d at %s answered Who-Is; left out: %s",
                    device.instance,
                    device.address,
                    device.problem or "it has no object a DeviceModel type can hold",
                )
        return [found_device(d, options.local_address) for d in found if d.objects]
