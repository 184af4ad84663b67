"""The conformance suite's device: an emulated thermometer plug, already paired, on the in-process
emulated radio (the fast coordinator), with the network in a temporary database."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from kubeedge.testing.conformance import BadConfig, DeviceSimulator, Point
from kubeedge_mapper_zigbee import testing

IEEE = "00:0d:6f:00:0a:bc:de:f0"
ADDRESSES = {
    # point: (cluster, attribute, scale): addresses unlike the names, a scale other than 1
    "temperature": (0x0402, 0x0000, 0.01),
    "humidity": (0x0405, 0x0000, 0.01),
    "on-time": (0x0006, 0x4001, 1.0),
    "enabled": (0x0000, 0x0012, 1.0),
    "location": (0x0000, 0x0010, 1.0),
}
_names = itertools.count(1)


class ZigbeeConformanceSimulator(DeviceSimulator):
    protocol: ClassVar[str] = "zigbee"
    unsupported_types: ClassVar[dict[str, str]] = {
        "BYTES": "the ZCL clusters zigpy defines carry no octet-string attribute a device commonly has"
    }
    point_error: ClassVar[str | None] = "HARDWARE_FAILURE"

    def __init__(self) -> None:
        self.air = testing.air(f"conformance-{next(_names)}")
        self.device = testing.EmulatedDevice.thermo_plug(IEEE)
        self.folder = Path(tempfile.mkdtemp(prefix="zigbee-conformance-"))
        self.mapper_settings = {  # type: ignore[misc]  (per simulator: its own air and database)
            "radio": "emulated",
            "path": f"emulated://{self.air.name}",
            "database": str(self.folder / "zigbee.db"),
            "requestTimeout": 1,
        }

    async def start(self) -> None:
        await testing.pair(self.mapper_settings, self.device)

    async def stop(self) -> None:
        testing.AIRS.pop(self.air.name, None)
        shutil.rmtree(self.folder, ignore_errors=True)

    def protocol_config(self) -> dict[str, Any]:
        return {"ieee": IEEE}

    def points(self) -> list[Point]:
        temperature = {"cluster": "temperature", "attribute": 0, "scale": 0.01}
        humidity = {"cluster": "0x0405", "attribute": "measured_value", "scale": 0.01}
        return [
            Point("temperature", "FLOAT", temperature, 21.5, changed=22.0),
            Point("humidity", "DOUBLE", humidity, 45.2),
            Point(
                "on-time", "INT", {"cluster": "on_off", "attribute": "on_time"}, 0, writable=True, changed=30
            ),
            Point(
                "enabled",
                "BOOLEAN",
                {"cluster": "basic", "attribute": "device_enabled"},
                True,
                writable=True,
                changed=False,
            ),
            Point(
                "location",
                "STRING",
                {"cluster": 0, "attribute": "location_desc"},
                "kitchen",
                writable=True,
                changed="cellar",
            ),
        ]

    def _attribute(self, point: str) -> tuple[testing.Attribute, float]:
        cluster, attribute, scale = ADDRESSES[point]
        return self.device.clusters[1][cluster][attribute], scale

    async def device_value(self, point: str) -> Any:
        attr, scale = self._attribute(point)
        if attr.kind == testing.BOOL:
            return bool(attr.value)
        if attr.kind == testing.CHAR_STRING:
            return attr.value
        return attr.value * scale if scale != 1.0 else attr.value

    async def set_device_value(self, point: str, value: Any) -> None:
        cluster, attribute, scale = ADDRESSES[point]
        attr, _ = self._attribute(point)
        raw = value if attr.kind == testing.CHAR_STRING else round(value / scale)
        self.device.set(1, cluster, attribute, raw)

    async def fail_point(self, point: str, failing: bool) -> None:
        self._attribute(point)[0].failing = failing

    async def set_reachable(self, reachable: bool) -> None:
        if reachable:
            self.air.add(self.device, announce=False)  # back in range; it never left the network
        else:
            self.air.remove(self.device)

    def open_connections(self) -> int:
        """1 while the coordinator is running: the radio is closed with the last device."""
        return 0 if self.air.link is None else 1

    def bad_configs(self) -> list[BadConfig]:
        return [
            BadConfig({"ieee": "00:0d:6f"}, "spec.protocol.configData.ieee"),
            BadConfig(
                {"cluster": "temperature", "attribute": "measured"},
                "spec.properties[0].visitors.configData.attribute",
                point="temperature",
            ),
        ]
