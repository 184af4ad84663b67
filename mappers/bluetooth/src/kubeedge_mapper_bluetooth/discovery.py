"""``kubeedge mapper discover bluetooth``: scan, connect to each device found, list its services and
characteristics, and describe them as Device/DeviceModel manifests.

A characteristic becomes a property: named and decoded by the Bluetooth SIG's assigned number where
it is a known one (temperature ``2a6e`` as ``<h`` x 0.01, battery level ``2a19`` as ``uint8``...),
else named after its UUID and kept as bytes; ``notify`` where it notifies, writable where it can be
written. A device that cannot be connected but advertises service data becomes an
advertisement-only device (a property per service data UUID, as bytes). Devices of one advertised
name (without a trailing number) and one characteristic set share a DeviceModel.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from kubeedge import Discoverer, FoundDevice, FoundModel, FoundProperty, KubeEdgeError
from kubeedge_mapper_bluetooth.config import DEFAULT_ADAPTER

log = logging.getLogger(__name__)

GENERIC_SERVICES = {
    "00001800-0000-1000-8000-00805f9b34fb",  # Generic Access
    "00001801-0000-1000-8000-00805f9b34fb",  # Generic Attribute
}


@dataclass(frozen=True)
class Known:
    name: str
    type: str
    visitor: dict[str, Any]
    unit: str | None = None


def _sig(short: str) -> str:
    return f"0000{short}-0000-1000-8000-00805f9b34fb"


KNOWN: dict[str, Known] = {
    _sig("2a6e"): Known("temperature", "FLOAT", {"format": "<h", "scale": 0.01}, "Celsius"),
    _sig("2a1f"): Known("temperature", "FLOAT", {"format": "<h", "scale": 0.1}, "Celsius"),
    _sig("2a6f"): Known("humidity", "FLOAT", {"format": "<H", "scale": 0.01}, "percent"),
    _sig("2a6d"): Known("pressure", "FLOAT", {"format": "<I", "scale": 0.1}, "Pa"),
    _sig("2a19"): Known("battery", "INT", {"dataType": "uint8"}, "percent"),
    _sig("2a29"): Known("manufacturer", "STRING", {}),
    _sig("2a24"): Known("model-number", "STRING", {}),
    _sig("2a25"): Known("serial-number", "STRING", {}),
    _sig("2a26"): Known("firmware-revision", "STRING", {}),
}
"""Assigned numbers of the Bluetooth SIG this discovery names and decodes (GATT Specification
Supplement); others are kept as bytes."""


class BluetoothDiscoveryOptions(BaseModel):
    """``-O key=value`` options of ``kubeedge mapper discover bluetooth``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    backend: Literal["bleak", "bumble"] = "bleak"
    adapter: str = DEFAULT_ADAPTER
    transport: str | None = None
    """With ``backend=bumble``: the adapter's HCI transport (``usb:0``, ``tcp-client:host:port``)."""
    connect: bool = True
    """Connect to each device to list its characteristics (off: advertisements only)."""
    connect_timeout: float = Field(default=10.0, gt=0)
    name: str | None = None
    """Only devices whose advertised name starts with this."""

    @model_validator(mode="after")
    def _transport(self) -> BluetoothDiscoveryOptions:
        if self.backend == "bumble" and not self.transport:
            raise ValueError("backend=bumble: give the adapter's HCI transport (-O transport=usb:0)")
        return self


def _model_name(advertised: str | None, address: str) -> str:
    if not advertised:
        return f"ble-{address.replace(':', '').lower()}"
    return re.sub(r"[-_ ]*\d+$", "", advertised) or advertised


def _property_name(uuid: str, taken: set[str]) -> str:
    known = KNOWN.get(uuid)
    base = known.name if known else f"char-{uuid[:8].lstrip('0') or '0'}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


class BluetoothDiscoverer(Discoverer[BluetoothDiscoveryOptions]):
    protocol = "bluetooth"
    options_model = BluetoothDiscoveryOptions
    default_seconds = 10.0

    async def discover(self, options: BluetoothDiscoveryOptions, seconds: float) -> list[FoundDevice]:
        backend_kwargs: dict[str, Any] = {}
        client_backend: Any = None
        scanner_backend: Any = None
        radio: Any = None
        if options.backend == "bumble":
            from kubeedge_mapper_bluetooth.bumble_backend import BumbleClient, BumbleRadio, BumbleScanner

            radio = BumbleRadio(transport=options.transport)
            backend_kwargs = {"radio": radio}
            client_backend, scanner_backend = BumbleClient, BumbleScanner
        else:
            backend_kwargs = {"bluez": {"adapter": options.adapter}}
        heard: dict[str, tuple[BLEDevice, AdvertisementData]] = {}

        def on_advertisement(device: BLEDevice, data: AdvertisementData) -> None:
            name = data.local_name or device.name
            if options.name is None or (name or "").startswith(options.name):
                previous = heard.get(device.address)
                if previous is None or data.local_name or not previous[1].local_name:
                    heard[device.address] = (device, data)

        try:
            scanner = BleakScanner(on_advertisement, backend=scanner_backend, **backend_kwargs)
            try:
                await scanner.start()
            except FileNotFoundError as exc:
                raise KubeEdgeError(
                    f"cannot scan on adapter {options.adapter}: no D-Bus system bus, so no BlueZ ({exc});"
                    " run bluetoothd, or give -O backend=bumble -O transport=usb:0"
                ) from exc
            except BleakError as exc:
                raise KubeEdgeError(f"cannot scan on adapter {options.adapter}: {exc}") from exc
            await asyncio.sleep(seconds)  # listening is the point: advertisements come at their own pace
            await scanner.stop()
            found = []
            for address, (device, data) in sorted(heard.items()):
                described = None
                if options.connect:
                    described = await self._connected(device, data, options, client_backend, backend_kwargs)
                if described is None:
                    described = self._advertised(device, data)
                if described is not None:
                    found.append(described)
                else:
                    log.warning(
                        "%s (%s): nothing to read (no connection, no service data)", address, data.local_name
                    )
            return found
        finally:
            if radio is not None:
                await radio.close()

    async def _connected(
        self,
        device: BLEDevice,
        data: AdvertisementData,
        options: BluetoothDiscoveryOptions,
        backend: Any,
        backend_kwargs: dict[str, Any],
    ) -> FoundDevice | None:
        client = BleakClient(device, timeout=options.connect_timeout, backend=backend, **backend_kwargs)
        try:
            await client.connect()
        except (BleakError, OSError, TimeoutError) as exc:
            log.info("%s: not connectable (%s): described from its advertisement", device.address, exc)
            return None
        try:
            properties: list[FoundProperty] = []
            taken: set[str] = set()
            for service in client.services:
                if service.uuid in GENERIC_SERVICES:
                    continue
                for char in service.characteristics:
                    flags = set(char.properties)
                    readable, notify = "read" in flags, "notify" in flags
                    write, quiet_write = "write" in flags, "write-without-response" in flags
                    if not (readable or notify or write or quiet_write):
                        continue
                    known = KNOWN.get(char.uuid)
                    visitor: dict[str, Any] = {"characteristicUUID": char.uuid, "serviceUUID": service.uuid}
                    if notify:
                        visitor["operation"] = "notify"
                    elif quiet_write and not write and not readable:
                        visitor["operation"] = "write-without-response"
                    visitor.update(known.visitor if known else {})
                    properties.append(
                        FoundProperty(
                            name=_property_name(char.uuid, taken),
                            type=known.type if known else "BYTES",
                            visitor=visitor,
                            writable=write or quiet_write,
                            unit=known.unit if known else None,
                            description=char.description if char.description != "Unknown" else None,
                        )
                    )
        finally:
            await client.disconnect()
        if not properties:
            return None
        name = data.local_name or device.name
        return FoundDevice(
            name=name or device.address,
            model=FoundModel(name=_model_name(name, device.address), properties=tuple(properties)),
            protocol_config={"macAddress": device.address.upper()},
            source=device.address,
        )

    def _advertised(self, device: BLEDevice, data: AdvertisementData) -> FoundDevice | None:
        if not data.service_data:
            return None
        taken: set[str] = set()
        properties = tuple(
            FoundProperty(
                name=_property_name(uuid, taken).replace("char-", "service-data-"),
                type="BYTES",
                visitor={"serviceDataUUID": uuid},
            )
            for uuid in sorted(data.service_data)
        )
        name = data.local_name or device.name
        return FoundDevice(
            name=name or device.address,
            model=FoundModel(name=_model_name(name, device.address) + "-broadcast", properties=properties),
            protocol_config={"macAddress": device.address.upper()},
            source=device.address,
        )
