"""Pairing and discovery: ``kubeedge mapper discover zigbee -O permitJoin=60 -o manifests/``.

It starts the coordinator as the mapper would (the same options as ``mappers.zigbee``, the same
database), opens the network for ``permitJoin`` seconds, lets zigpy interview each device that
joins (its endpoints and clusters, its manufacturer and model from the Basic cluster), and
writes a Device per device in the network, joined now or before, and a DeviceModel per kind,
with a property for each cluster it knows (temperature, humidity, on/off, level, ...). Clusters
it does not know are left out: add them by hand, with the cluster and attribute names of zigpy.

Deleting a Device manifest leaves the device in the network (the coordinator's database keeps
it, and it may still send frames); the mapper just stops serving it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from pydantic import Field

from kubeedge import Discoverer, FoundDevice, FoundModel, FoundProperty
from kubeedge_mapper_zigbee.config import ZigbeeSettings

log = logging.getLogger(__name__)

REPORTED = {"minInterval": 10, "maxInterval": 600}
SWITCH = {"commands": {"true": "on", "false": "off"}, "reporting": {"minInterval": 0, "maxInterval": 600}}
LEVEL = {"command": "move_to_level_with_on_off", "args": {"level": "$value", "transition_time": 0}}
KNOWN: dict[int, list[tuple[str, str, str, dict[str, Any], dict[str, Any]]]] = {
    # cluster: [(property, DeviceModel type, attribute, visitor extras, property extras)]
    0x0001: [
        (
            "battery",
            "INT",
            "battery_percentage_remaining",
            {"scale": 0.5, "reporting": {**REPORTED, "maxInterval": 3600}},
            {"unit": "Percent"},
        )
    ],
    0x0006: [("switch", "BOOLEAN", "on_off", SWITCH, {"writable": True})],
    0x0008: [("level", "INT", "current_level", LEVEL, {"writable": True, "minimum": "0", "maximum": "254"})],
    0x0400: [("illuminance", "INT", "measured_value", {"reporting": REPORTED}, {})],
    0x0402: [
        (
            "temperature",
            "FLOAT",
            "measured_value",
            {"scale": 0.01, "reporting": {**REPORTED, "reportableChange": 10}},
            {"unit": "Celsius"},
        )
    ],
    0x0403: [("pressure", "FLOAT", "measured_value", {"reporting": REPORTED}, {"unit": "hPa"})],
    0x0405: [
        (
            "humidity",
            "FLOAT",
            "measured_value",
            {"scale": 0.01, "reporting": {**REPORTED, "reportableChange": 100}},
            {"unit": "Percent"},
        )
    ],
    0x0406: [
        ("occupancy", "BOOLEAN", "occupancy", {"reporting": {"minInterval": 0, "maxInterval": 600}}, {})
    ],
    0x0B04: [("power", "INT", "active_power", {"reporting": REPORTED}, {"unit": "W"})],
}
"""What a property of each known cluster's server side is made from."""


class ZigbeeDiscoveryOptions(ZigbeeSettings):
    """``-O key=value``: the coordinator, as in ``mappers.zigbee`` (stop the edge's Zigbee
    mapper first: one program at a time drives a radio), and how long the network is open."""

    permit_join: int = Field(default=0, ge=0, le=254)
    """Seconds the network accepts new devices (0: only list the devices already joined)."""


class ZigbeeDiscoverer(Discoverer[ZigbeeDiscoveryOptions]):
    protocol: ClassVar[str] = "zigbee"
    options_model: ClassVar[type[ZigbeeDiscoveryOptions]] = ZigbeeDiscoveryOptions
    default_seconds: ClassVar[float] = 3.0

    async def discover(self, options: ZigbeeDiscoveryOptions, seconds: float) -> list[FoundDevice]:
        from kubeedge_mapper_zigbee import coordinator

        app = await coordinator.start(options)
        try:
            interviewing: set[str] = set()

            class Listener:
                def device_joined(self, device: Any) -> None:
                    interviewing.add(str(device.ieee))

                def device_initialized(self, device: Any) -> None:
                    interviewing.discard(str(device.ieee))

                device_left = device_initialized

            app.add_listener(Listener())
            if options.permit_join:
                await app.permit(options.permit_join)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(seconds, options.permit_join)
            await asyncio.sleep(max(seconds, options.permit_join))
            while interviewing and loop.time() < deadline + 30:  # let a started interview finish
                await asyncio.sleep(0.1)
            return [found for device in list(app.devices.values()) if (found := _found(device)) is not None]
        finally:
            await app.shutdown()


def _found(device: Any) -> FoundDevice | None:
    if device.nwk == 0x0000 or not device.is_initialized:
        return None  # the coordinator, or a device whose interview did not finish
    properties: list[FoundProperty] = []
    endpoints = sorted((i, e) for i, e in device.endpoints.items() if i != 0)
    for endpoint_id, endpoint in endpoints:
        suffix = "" if endpoint_id == endpoints[0][0] else f"-{endpoint_id}"
        for cluster_id in sorted(endpoint.in_clusters):
            for name, kind, attribute, visitor, extra in KNOWN.get(cluster_id, []):
                config: dict[str, Any] = {"cluster": f"0x{cluster_id:04x}", "attribute": attribute}
                if endpoint_id != 1:
                    config["endpoint"] = endpoint_id
                config.update(visitor)
                properties.append(FoundProperty(name + suffix, kind, config, **extra))
    manufacturer = str(device.manufacturer or "unknown")
    model = str(device.model or "zigbee-device")
    ieee = str(device.ieee)
    return FoundDevice(
        name=f"{model}-{ieee.replace(':', '')[-4:]}",
        model=FoundModel(
            name=f"{manufacturer}-{model}",
            properties=tuple(properties),
            description=f"{manufacturer} {model}",
        ),
        protocol_config={"ieee": ieee},
        source=f"zigbee {ieee} nwk 0x{int(device.nwk):04x}",
    )
