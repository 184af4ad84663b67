"""The Zigbee mapper through the full edge (bus, twin) against emulated devices.

The devices answer with ZDO/ZCL bytes packed from the specs; the coordinator is either the
in-process emulated radio (zigpy above ``send_packet``) or the unmodified zigpy-xbee radio library
talking API frames over TCP to the emulated XBee coordinator (``socket://``).
"""

import pytest

from kubeedge.testing import wait_for
from kubeedge_mapper_zigbee import testing
from kubeedge_mapper_zigbee.testing import EmulatedDevice
from kubeedge_mapper_zigbee.xbee_emulator import XBeeCoordinator

KEY = "lab/{}"
XBEES: dict[str, list[XBeeCoordinator]] = {}
"""The emulated XBee coordinators of a test's air (a test unplugs one and plugs in another)."""
IEEE = "00:0d:6f:00:0a:bc:de:f0"

TEMPERATURE = {"cluster": "temperature", "attribute": "measured_value", "scale": 0.01}
SWITCH = {
    "cluster": "on_off",
    "attribute": "on_off",
    "commands": {"true": "on", "false": "off"},
    "reporting": {"minInterval": 0, "maxInterval": 300},
}


def model(properties: dict[str, tuple[str, str]], name: str = "plug") -> dict:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": name, "namespace": "lab"},
        "spec": {
            "protocol": "zigbee",
            "properties": [
                {"name": prop, "type": kind, "accessMode": access}
                for prop, (kind, access) in properties.items()
            ],
        },
    }


def device(
    name: str, ieee: str, visitors: dict[str, dict], cycle: int = 200, model_name: str = "plug"
) -> dict:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "lab"},
        "spec": {
            "deviceModelRef": {"name": model_name},
            "protocol": {"protocolName": "zigbee", "configData": {"ieee": ieee}},
            "properties": [
                {"name": prop, "collectCycle": cycle, "visitors": {"protocolName": "zigbee", "configData": v}}
                for prop, v in visitors.items()
            ],
        },
    }


@pytest.fixture(params=["emulated", "xbee"])
async def radio(request, tmp_path):
    """Mapper settings for a coordinator, and the air its devices are on."""
    air = testing.air(f"{request.node.name}-{id(tmp_path)}")
    settings = {
        "database": str(tmp_path / "zigbee.db"),
        "requestTimeout": 2,
        "maxBackoff": 0.5,
        "readTimeout": 3,
    }
    xbee = None
    if request.param == "emulated":
        settings |= {"radio": "emulated", "path": f"emulated://{air.name}"}
    else:
        xbee = XBeeCoordinator(air)
        await xbee.start()
        XBEES[air.name] = [xbee]
        settings |= {"radio": "xbee", "path": f"socket://127.0.0.1:{xbee.port}"}
    yield settings, air
    if xbee is not None:
        await xbee.stop()
    for xbee in XBEES.pop(air.name, []):
        await xbee.stop()
    testing.AIRS.pop(air.name, None)


async def zigbee_edge(edge, radio, *devices: EmulatedDevice):
    """An edge whose coordinator's network already has the devices (paired, interviewed)."""
    settings, air = radio
    await testing.pair(settings, *devices, air_name=air.name)
    return await edge(mappers={"zigbee": settings})


async def test_reads_reports_and_writes(edge, radio) -> None:
    plug = EmulatedDevice.thermo_plug(IEEE)
    handle = await zigbee_edge(edge, radio, plug)
    handle.write_manifest(
        "plug.yaml",
        model(
            {
                "temperature": ("FLOAT", "ReadOnly"),
                "switch": ("BOOLEAN", "ReadWrite"),
                "enabled": ("BOOLEAN", "ReadWrite"),
                "level": ("INT", "ReadWrite"),
            }
        ),
        device(
            "plug",
            IEEE,
            {
                "temperature": TEMPERATURE,
                "switch": SWITCH,
                "enabled": {"cluster": "basic", "attribute": "device_enabled"},
                "level": {
                    "cluster": "level",
                    "attribute": "current_level",
                    "command": "move_to_level",
                    "args": {"level": "$value", "transition_time": 0},
                },
            },
        ),
    )
    key = KEY.format("plug")
    await handle.wait_reported(key, "temperature", "21.5")
    await handle.wait_reported(key, "switch", "false")
    await handle.wait_reported(key, "enabled", "true")
    assert handle.state(key) == "online"
    assert (1, 0x0006, 0x0000) in plug.reporting  # reporting configured when assigned

    # a report reaches the twin without a poll: switch is not read again
    reads = len([r for r in plug.requests if r == "ZCL 1 0x0006 global 0x00"])
    plug.set(1, 0x0006, 0x0000, 1)
    await handle.wait_reported(key, "switch", "true")
    plug.set(1, 0x0402, 0x0000, -512)
    await handle.wait_reported(key, "temperature", "-5.12")
    assert reads == len([r for r in plug.requests if r == "ZCL 1 0x0006 global 0x00"])

    client = await handle.client()
    await client.set_desired(key, "switch", "false")  # by the Off command
    await wait_for(lambda: plug.clusters[1][0x0006][0x0000].value == 0, 10, what="the plug switched off")
    assert "ZCL 1 0x0006 cluster 0x00" in plug.requests
    await client.set_desired(key, "enabled", "false")  # by Write Attributes
    await wait_for(lambda: plug.clusters[1][0][0x0012].value == 0, 10, what="device_enabled written")
    await handle.wait_reported(key, "enabled", "false")
    await client.set_desired(key, "level", "128")  # Move to Level with its arguments
    await handle.wait_reported(key, "level", "128")
    assert plug.clusters[1][0x0008][0x0000].value == 128


async def test_zcl_errors_mark_the_property_not_the_device(edge, radio) -> None:
    plug = EmulatedDevice.thermo_plug(IEEE)
    handle = await zigbee_edge(edge, radio, plug)
    handle.write_manifest(
        "plug.yaml",
        model(
            {
                "temperature": ("FLOAT", "ReadOnly"),
                "humidity": ("DOUBLE", "ReadOnly"),
                "onoff": ("BOOLEAN", "ReadWrite"),
            }
        ),
        device(
            "plug",
            IEEE,
            {
                "temperature": TEMPERATURE,
                "humidity": {"cluster": "0x0405", "attribute": "0x0000", "scale": 0.01},
                "onoff": {"cluster": "on_off", "attribute": "on_off"},  # read-only attribute on the device
            },
        ),
    )
    key = KEY.format("plug")
    await handle.wait_reported(key, "humidity", "45.2")
    plug.clusters[1][0x0402][0x0000].failing = True
    await wait_for(lambda: "HARDWARE_FAILURE" in handle.error(key, "temperature"), 10, what="the ZCL status")
    assert "0xc0" in handle.error(key, "temperature")
    client = await handle.client()
    await client.set_desired(key, "onoff", "true")
    await wait_for(lambda: "READ_ONLY" in handle.error(key, "onoff"), 10, what="the refused write")
    assert handle.state(key) == "online"


async def test_a_device_leaving_goes_offline_and_comes_back_when_it_rejoins(edge, radio) -> None:
    _, air = radio
    plug = EmulatedDevice.thermo_plug(IEEE)
    other = EmulatedDevice.thermo_plug("00:0d:6f:00:0a:bc:de:01", nwk=0x2222)
    handle = await zigbee_edge(edge, radio, plug, other)
    visitors = {"temperature": TEMPERATURE, "switch": SWITCH}
    properties = {"temperature": ("FLOAT", "ReadOnly"), "switch": ("BOOLEAN", "ReadWrite")}
    handle.write_manifest(
        "plugs.yaml", model(properties), device("plug", IEEE, visitors), device("other", other.ieee, visitors)
    )
    await handle.wait_reported(KEY.format("plug"), "temperature", "21.5")
    await handle.wait_reported(KEY.format("other"), "temperature", "21.5")

    air.leave(plug)
    await handle.wait_state(KEY.format("plug"), "offline")
    # the other device is not held up
    other.set(1, 0x0006, 0x0000, 1)
    await handle.wait_reported(KEY.format("other"), "switch", "true")

    air.add(plug)  # rejoins (Device_annce)
    await handle.wait_state(KEY.format("plug"), "online")
    plug.set(1, 0x0006, 0x0000, 1)  # reporting configured again after the rejoin
    await handle.wait_reported(KEY.format("plug"), "switch", "true")


async def unplug(settings: dict, air: testing.Air) -> None:
    if settings["radio"] == "emulated":
        air.lose_radio()
    else:
        for xbee in XBEES[air.name]:
            await xbee.stop()


async def plug_in(settings: dict, air: testing.Air) -> None:
    if settings["radio"] == "emulated":
        air.restore_radio()
    else:
        xbee = XBeeCoordinator(air, port=int(settings["path"].rsplit(":", 1)[1]))
        await xbee.start()
        XBEES[air.name].append(xbee)


async def test_a_lost_radio_takes_every_device_offline_with_the_reason_and_reconnects(edge, radio) -> None:
    settings, air = radio
    plug = EmulatedDevice.thermo_plug(IEEE)
    handle = await zigbee_edge(edge, radio, plug)
    handle.write_manifest(
        "plug.yaml",
        model({"switch": ("BOOLEAN", "ReadWrite"), "temperature": ("FLOAT", "ReadOnly")}),
        device("plug", IEEE, {"switch": SWITCH, "temperature": TEMPERATURE}),
    )
    key = KEY.format("plug")
    await handle.wait_reported(key, "switch", "false")
    await unplug(settings, air)
    await handle.wait_state(key, "offline")
    reason = handle.twin.devices[key].state_reason or ""
    assert "radio" in reason, reason
    await plug_in(settings, air)
    await handle.wait_state(key, "online")
    plug.set(1, 0x0006, 0x0000, 1)  # reporting works on the new connection
    await handle.wait_reported(key, "switch", "true")


async def test_a_device_that_does_not_answer_holds_up_no_other(edge, radio) -> None:
    settings, air = radio
    sleepy = EmulatedDevice.thermo_plug(IEEE)
    awake = EmulatedDevice.thermo_plug("00:0d:6f:00:0a:bc:de:02", nwk=0x2222)
    await testing.pair(settings, sleepy, awake, air_name=air.name)
    # a long request timeout: were the awake device's reads queued behind the sleepy one's, its
    # value would not arrive within the wait below
    handle = await edge(mappers={"zigbee": {**settings, "requestTimeout": 60, "readTimeout": 120}})
    properties = {"temperature": ("FLOAT", "ReadOnly")}
    handle.write_manifest(
        "plugs.yaml",
        model(properties),
        device("sleepy", sleepy.ieee, {"temperature": TEMPERATURE}),
        device("awake", awake.ieee, {"temperature": TEMPERATURE}),
    )
    await handle.wait_reported(KEY.format("sleepy"), "temperature", "21.5")
    await handle.wait_reported(KEY.format("awake"), "temperature", "21.5")
    sleepy.asleep = True
    await wait_for(lambda: "dropped while asleep" in sleepy.requests, 10, what="a request left unanswered")
    for value in (2200, 2300, 2400):  # several polls of the awake device while the other's read hangs
        awake.set(1, 0x0402, 0x0000, value)
        await handle.wait_reported(
            KEY.format("awake"), "temperature", str(value / 100).rstrip("0").rstrip(".")
        )
    assert sleepy.requests.count("dropped while asleep") == 1  # still waiting for that one answer
