"""The virtual mapper's side of the conformance suite: its simulated device, driven through SIMULATOR."""

from __future__ import annotations

from typing import Any, ClassVar

from kubeedge.testing.conformance import BadConfig, DeviceSimulator, Point
from kubeedge_mapper_virtual.simulator import SIMULATOR

DEVICES = ("conformance/conformance-device",)


class VirtualSimulator(DeviceSimulator):
    """The virtual device has no wire and no addresses: its values are Python values, and a write
    of the wrong type is refused (``simulator.check_written``), as a real device refuses a wrong
    wire form; ``device_value`` reads the simulated device, not the driver."""

    protocol: ClassVar[str] = "virtual"
    point_error: ClassVar[str | None] = "simulated device error"

    async def start(self) -> None:
        SIMULATOR.reset()

    async def stop(self) -> None:
        SIMULATOR.reset()

    def protocol_config(self) -> dict[str, Any]:
        return {"seed": 1}

    def points(self) -> list[Point]:
        return [
            Point("count", "INT", {"value": 7}, 7, writable=True, changed=9),
            Point("temperature", "FLOAT", {"value": 21.5}, 21.5, changed=22.5),
            Point("energy", "DOUBLE", {"value": 1234.125}, 1234.125, writable=True, changed=99.5),
            Point("label", "STRING", {"value": "a b {c}"}, "a b {c}", writable=True, changed="d e"),
            Point("on", "BOOLEAN", {"value": False}, False, writable=True, changed=True),
            Point("blob", "BYTES", {"value": "AAEC"}, b"\x00\x01\x02", writable=True, changed=b"\xff"),
        ]

    def _device(self) -> Any:
        return SIMULATOR.device(DEVICES[0])

    async def device_value(self, point: str) -> Any:
        return self._device().properties[point].value

    async def set_device_value(self, point: str, value: Any) -> None:
        prop = self._device().properties[point]
        prop.value = value
        prop.written = True

    async def fail_point(self, point: str, failing: bool) -> None:
        SIMULATOR.fail(DEVICES[0], point, "simulated device error" if failing else None)

    async def set_reachable(self, reachable: bool) -> None:
        SIMULATOR.set_reachable(DEVICES[0], reachable)

    def open_connections(self) -> int:
        return self._device().open_connections

    def bad_configs(self) -> list[BadConfig]:
        return [
            BadConfig({"latencyMs": "slow"}, "spec.protocol.configData.latencyMs"),
            BadConfig({"genrator": "sine"}, "spec.properties[0].visitors.configData.genrator", point="count"),
        ]
