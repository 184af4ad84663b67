"""The conformance suite's simulated device: an emulated BLE peripheral on an emulated air.

``python -m kubeedge_mapper_bluetooth.simulator`` is not offered: the emulated air lives in the
process of whoever runs it (a test, the benchmark), and a mapper reaches it through the HCI port
:meth:`kubeedge_mapper_bluetooth.testing.EmulatedAir.open_adapter` serves.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from kubeedge.testing.conformance import BadConfig, DeviceSimulator, Point
from kubeedge_mapper_bluetooth.testing import EmulatedAir, EmulatedPeripheral, GattPoint

BASE = "7e1a{:04x}-5c3b-4f2a-9d8e-0c1b2a394857"
"""Custom 128-bit characteristics (not the property names: a mix-up shows)."""
UUIDS = {
    "temperature": "2a6e",
    "setpoint": BASE.format(1),
    "count": BASE.format(2),
    "on": BASE.format(3),
    "label": BASE.format(4),
    "blob": BASE.format(5),
}
FORMATS = {"temperature": "<h", "setpoint": "<d", "count": "<H", "on": "<B"}
"""How the device itself keeps each value (its own rules, not the driver's codec)."""


class BluetoothSimulator(DeviceSimulator):
    protocol: ClassVar[str] = "bluetooth"
    point_error: ClassVar[str | None] = "application error"

    def __init__(self) -> None:
        self.air = EmulatedAir()
        self.peripheral = EmulatedPeripheral(
            "Conformance-1",
            "F0:F0:F0:F0:F0:42",
            [
                GattPoint("2a6e", struct.pack("<h", 2150), notify=True),
                GattPoint(UUIDS["setpoint"], struct.pack("<d", 21.0), writable=True, size=8, service="ffe0"),
                GattPoint(UUIDS["count"], struct.pack("<H", 3), writable=True, size=2, service="ffe0"),
                GattPoint(UUIDS["on"], b"\x01", writable=True, size=1, service="ffe0"),
                GattPoint(UUIDS["label"], b"eco", writable=True, service="ffe0"),
                GattPoint(UUIDS["blob"], b"\x01\x02", writable=True, service="ffe0"),
            ],
        )
        self.mapper_settings = {}  # type: ignore[misc]  # the port is known once started

    async def start(self) -> None:
        transport = await self.air.open_adapter("hci0")
        self.mapper_settings = {"backend": "bumble", "adapters": {"hci0": {"transport": transport}}}  # type: ignore[misc]
        await self.peripheral.start(self.air)

    async def stop(self) -> None:
        await self.air.close()

    def protocol_config(self) -> dict[str, Any]:
        return {"macAddress": self.peripheral.address, "connectTimeout": 2}

    def points(self) -> list[Point]:
        return [
            Point(
                "setpoint",
                "DOUBLE",
                {"characteristicUUID": UUIDS["setpoint"], "dataType": "float64"},
                21.0,
                writable=True,
                changed=23.5,
            ),
            Point(
                "count",
                "INT",
                {"characteristicUUID": UUIDS["count"], "dataType": "uint16"},
                3,
                writable=True,
                changed=4,
            ),
            Point(
                "on",
                "BOOLEAN",
                {"characteristicUUID": UUIDS["on"], "dataType": "uint8"},
                True,
                writable=True,
                changed=False,
            ),
            Point(
                "label",
                "STRING",
                {"characteristicUUID": UUIDS["label"]},
                "eco",
                writable=True,
                changed="comfort",
            ),
            Point(
                "blob",
                "BYTES",
                {"characteristicUUID": UUIDS["blob"]},
                b"\x01\x02",
                writable=True,
                changed=b"\x03\x04\x05",
            ),
            Point(
                "temperature",
                "FLOAT",
                {"characteristicUUID": "2a6e", "format": "<h", "scale": 0.01, "notify": True},
                21.5,
                changed=22.0,
            ),
        ]

    def _point(self, name: str) -> GattPoint:
        uuid = UUIDS[name]
        return self.peripheral.points[uuid]

    async def device_value(self, point: str) -> Any:
        raw = self._point(point).value
        if point == "temperature":
            return struct.unpack("<h", raw)[0] / 100
        if point == "on":
            return raw != b"\x00"
        if point in FORMATS:
            return struct.unpack(FORMATS[point], raw)[0]
        if point == "label":
            return raw.decode()
        return raw

    async def set_device_value(self, point: str, value: Any) -> None:
        if point == "temperature":
            raw = struct.pack("<h", round(value * 100))
        elif point == "on":
            raw = b"\x01" if value else b"\x00"
        elif point in FORMATS:
            raw = struct.pack(FORMATS[point], value)
        elif point == "label":
            raw = str(value).encode()
        else:
            raw = bytes(value)
        await self.peripheral.set(UUIDS[point], raw)

    async def fail_point(self, point: str, failing: bool) -> None:
        self.peripheral.fail(UUIDS[point], failing)

    async def set_reachable(self, reachable: bool) -> None:
        await (self.peripheral.start() if reachable else self.peripheral.stop())

    def open_connections(self) -> int:
        return len(self.peripheral.connections)

    def bad_configs(self) -> list[BadConfig]:
        return [
            BadConfig({"macAddress": "F0:F0:F0"}, "spec.protocol.configData.macAddress"),
            BadConfig(
                {"characteristicUUID": UUIDS["count"], "format": "<z"},
                "spec.properties[1].visitors.configData.format",
                point="count",
            ),
        ]
