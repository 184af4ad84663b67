"""Discovery: find BACnet devices (Who-Is), read their objects (object list, names, units) and
write Device and DeviceModel manifests a user can edit and apply.

Who-Is is broadcast when no address is given (on a BACnet/IP subnet, or through a BBMD the
mapper registers with as a foreign device), or sent to each given address (a device behind a
router that forwards unicast only, or on loopback, where a broadcast reaches nobody). Each device
that answers with I-Am is asked for its name and object list, then for each object's name (and
units, where it has them), with ReadPropertyMultiple. Objects of a kind a DeviceModel type can
hold become properties: inputs read-only (pushed by COV), outputs and values writable.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.app import Application
from bacpypes3.basetypes import ErrorType
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from kubeedge_mapper_bacnet.config import BACNET_PORT, MAX_INSTANCE, host_port

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
class FoundObject:
    object_type: str
    instance: int
    name: str | None = None
    units: str | None = None


@dataclass
class FoundDevice:
    instance: int
    address: str
    """``ip:port`` the device answered from."""
    vendor_id: int | None = None
    name: str | None = None
    objects: list[FoundObject] = field(default_factory=list)
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
) -> list[FoundDevice]:
    """Devices with an instance in ``low``-``high`` that answer Who-Is, with their objects."""
    host, port = host_port(local_address)
    app = Application.from_args(
        argparse.Namespace(
            name="kubeedge-discovery",
            instance=MAX_INSTANCE,
            address=f"{host}:{port}",
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
        devices: dict[int, FoundDevice] = {}
        for i_am in answers:
            instance = int(i_am.iAmDeviceIdentifier[1])
            source = i_am.pduSource
            devices.setdefault(
                instance,
                FoundDevice(instance, f"{source.addrTuple[0]}:{source.addrTuple[1]}", int(i_am.vendorID)),
            )
        found_devices = sorted(devices.values(), key=lambda d: d.instance)
        await asyncio.gather(*(_read_objects(app, d, timeout) for d in found_devices))
        return found_devices
    finally:
        app.close()


def _with_port(address: str) -> str:
    host, port = host_port(address)
    return f"{host}:{port}"


async def _read_objects(app: Application, device: FoundDevice, timeout: float) -> None:
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
    objects = [FoundObject(str(oid[0]), int(oid[1])) for oid in object_list if str(oid[0]) in KINDS]
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


# --------------------------------------------------------------------------- manifests


def _label(text: str, fallback: str) -> str:
    """A DNS-1123 label a user would keep: ``AHU-3 Supply Fan`` -> ``ahu-3-supply-fan``."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")
    return label or fallback


def _property_name(obj: FoundObject, taken: set[str]) -> str:
    fallback = f"{obj.object_type}-{obj.instance}"
    name = _label(obj.name or "", fallback)
    if name in taken:
        name = f"{name}-{obj.instance}" if f"{name}-{obj.instance}" not in taken else fallback
    taken.add(name)
    return name


def manifests(
    devices: Sequence[FoundDevice],
    namespace: str = "default",
    local_address: str | None = None,
    collect_cycle: int = 10_000,
) -> list[tuple[str, list[dict[str, Any]]]]:
    """One (file name, [DeviceModel, Device]) per device that has properties."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    names: set[str] = set()
    for found in devices:
        if not found.objects:
            continue
        name = _label(found.name or "", f"bacnet-{found.instance}")
        if name in names:
            name = f"{name}-{found.instance}"
        names.add(name)
        taken: set[str] = set()
        model_props: list[dict[str, Any]] = []
        device_props: list[dict[str, Any]] = []
        for obj in found.objects:
            kind, writable = KINDS[obj.object_type]
            prop_name = _property_name(obj, taken)
            model_prop: dict[str, Any] = {
                "name": prop_name,
                "type": kind,
                "accessMode": "ReadWrite" if writable else "ReadOnly",
            }
            if obj.units and obj.units != "no-units":
                model_prop["unit"] = obj.units
            if obj.name:
                model_prop["description"] = f"{obj.name} ({obj.object_type},{obj.instance})"
            model_props.append(model_prop)
            visitor: dict[str, Any] = {"objectType": obj.object_type, "objectInstance": obj.instance}
            device_prop: dict[str, Any] = {"name": prop_name}
            if writable:
                device_prop["collectCycle"] = collect_cycle
            else:
                visitor["cov"] = True  # inputs change by themselves: pushed, not polled
            device_prop["visitors"] = {"protocolName": "bacnet", "configData": visitor}
            device_props.append(device_prop)
        config: dict[str, Any] = {"deviceInstance": found.instance, "address": found.address}
        if local_address is not None:
            config["localAddress"] = local_address
        model = {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "DeviceModel",
            "metadata": {"name": f"{name}-model", "namespace": namespace},
            "spec": {"protocol": "bacnet", "properties": model_props},
        }
        device = {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "deviceModelRef": {"name": f"{name}-model"},
                "protocol": {"protocolName": "bacnet", "configData": config},
                "properties": device_props,
            },
        }
        out.append((f"{name}.yaml", [model, device]))
    return out
