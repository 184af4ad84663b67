"""The Bluetooth mapper through the full edge (bus, twin) against emulated peripherals.

The peripherals are Bumble GATT servers on an emulated air in the test's process; the mapper runs
``backend: bumble`` with its adapter's HCI port on loopback TCP, so bleak, both Bumble host stacks
and real HCI packets are between the twin and the emulated device.
"""

import struct

import pytest

from kubeedge.testing import wait_for
from kubeedge_mapper_bluetooth.testing import (
    THERMOMETER_POINTS,
    AdvertisingSensor,
    EmulatedAir,
    EmulatedPeripheral,
    GattPoint,
    Thermometer,
)

KEY = "lab/{}"
THRESHOLD = THERMOMETER_POINTS["threshold"]
LED = THERMOMETER_POINTS["led"]

TEMPERATURE = {"characteristicUUID": "2a6e", "format": "<h", "scale": 0.01}
BATTERY = {"characteristicUUID": "2a19", "dataType": "uint8"}


def model(name: str, properties: dict[str, tuple[str, str]]) -> dict:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": name, "namespace": "lab"},
        "spec": {
            "protocol": "bluetooth",
            "properties": [
                {"name": prop, "type": kind, "accessMode": access}
                for prop, (kind, access) in properties.items()
            ],
        },
    }


def device(name: str, model_name: str, config: dict, visitors: dict[str, dict], cycle: int = 200) -> dict:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "lab"},
        "spec": {
            "deviceModelRef": {"name": model_name},
            "protocol": {"protocolName": "bluetooth", "configData": config},
            "properties": [
                {
                    "name": prop,
                    "collectCycle": cycle,
                    "visitors": {"protocolName": "bluetooth", "configData": visitor},
                }
                for prop, visitor in visitors.items()
            ],
        },
    }


THERMO_MODEL = model(
    "thermo",
    {
        "temperature": ("FLOAT", "ReadOnly"),
        "battery": ("INT", "ReadOnly"),
        "threshold": ("FLOAT", "ReadWrite"),
        "led": ("STRING", "ReadWrite"),
    },
)


@pytest.fixture
async def air():
    emulated = EmulatedAir()
    yield emulated
    await emulated.close()


async def bluetooth_edge(edge, air: EmulatedAir, **settings):
    transport = await air.open_adapter("hci0")
    mapper = {
        "backend": "bumble",
        "adapters": {"hci0": {"transport": transport}},
        "readTimeout": 3,
        "maxBackoff": 0.5,
        **settings,
    }
    return await edge(mappers={"bluetooth": mapper})


async def thermometers(air: EmulatedAir, count: int) -> list[Thermometer]:
    made = [
        Thermometer(f"Thermo-{i}", f"F0:F0:F0:F0:F0:{i:02X}", temperature=20 + i) for i in range(1, count + 1)
    ]
    for thermo in made:
        await thermo.start(air)
    return made


async def test_reads_notifies_and_writes(edge, air) -> None:
    (thermo,) = await thermometers(air, 1)
    handle = await bluetooth_edge(edge, air)
    visitors = {
        "temperature": {**TEMPERATURE, "operation": "notify"},
        "battery": BATTERY,
        "threshold": {"characteristicUUID": THRESHOLD, "dataType": "int16", "scale": 0.01},
        "led": {
            "characteristicUUID": LED,
            "operation": "write-without-response",
            "dataWrite": {"on": [1], "off": "00"},
        },
    }
    handle.write_manifest(
        "thermo.yaml", THERMO_MODEL, device("fridge", "thermo", {"macAddress": thermo.address}, visitors)
    )
    await handle.wait_reported(KEY.format("fridge"), "temperature", "21")
    await handle.wait_reported(KEY.format("fridge"), "battery", "87")
    await handle.wait_reported(KEY.format("fridge"), "threshold", "8")
    assert handle.state(KEY.format("fridge")) == "online"

    # a notification reaches the twin as it arrives (no poll: temperature is pushed)
    await thermo.set_temperature(-4.25)
    await handle.wait_reported(KEY.format("fridge"), "temperature", "-4.25")

    client = await handle.client()
    await client.set_desired(KEY.format("fridge"), "threshold", "6.5")
    await handle.wait_reported(KEY.format("fridge"), "threshold", "6.5")
    assert thermo.points[THRESHOLD].writes[-1] == struct.pack("<h", 650)  # the device's own bytes
    await client.set_desired(KEY.format("fridge"), "led", "on")
    await wait_for(
        lambda: thermo.points[LED].writes == [b"\x01"], 10, what="the LED written without response"
    )


async def test_a_gatt_error_and_a_decode_failure_mark_the_property_not_the_device(edge, air) -> None:
    (thermo,) = await thermometers(air, 1)
    handle = await bluetooth_edge(edge, air)
    visitors = {
        "battery": BATTERY,
        "threshold": {"characteristicUUID": THRESHOLD, "format": "<i"},  # 2 bytes on the device: too short
        "temperature": TEMPERATURE,
    }
    handle.write_manifest(
        "thermo.yaml", THERMO_MODEL, device("fridge", "thermo", {"macAddress": thermo.address}, visitors)
    )
    await handle.wait_reported(KEY.format("fridge"), "battery", "87")
    await wait_for(
        lambda: "format '<i' needs 4" in handle.error(KEY.format("fridge"), "threshold"),
        10,
        what="the decode error",
    )
    assert "2003" in handle.error(KEY.format("fridge"), "threshold")  # the bytes received are named
    thermo.fail("2a19", True)
    await wait_for(
        lambda: "application error" in handle.error(KEY.format("fridge"), "battery"), 10, what="the ATT error"
    )
    assert "0x80" in handle.error(KEY.format("fridge"), "battery")
    assert handle.state(KEY.format("fridge")) == "online"
    await thermo.set_temperature(5.5)
    await handle.wait_reported(KEY.format("fridge"), "temperature", "5.5")


async def test_an_advertisement_only_sensor_is_read_without_connecting(edge, air) -> None:
    sensor = AdvertisingSensor("Cellar", "F0:F0:F0:F0:F1:07")
    await sensor.start(air)
    handle = await bluetooth_edge(edge, air)
    handle.write_manifest(
        "cellar.yaml",
        model("bthome", {"temperature": ("FLOAT", "ReadOnly"), "humidity": ("FLOAT", "ReadOnly")}),
        device(
            "cellar",
            "bthome",
            {"name": "Cellar", "advertisementTimeout": 2},
            {
                "temperature": {"serviceDataUUID": "fcd2", "format": "<h", "byteOffset": 2, "scale": 0.01},
                "humidity": {"serviceDataUUID": "fcd2", "format": "<H", "byteOffset": 5, "scale": 0.01},
            },
        ),
    )
    await handle.wait_reported(KEY.format("cellar"), "temperature", "20")
    await handle.wait_reported(KEY.format("cellar"), "humidity", "50")
    await sensor.report(12.5, 81.25)
    await handle.wait_reported(KEY.format("cellar"), "temperature", "12.5")
    await handle.wait_reported(KEY.format("cellar"), "humidity", "81.25")
    assert air.connections_made == 0
    # silent for longer than advertisementTimeout: offline with the reason, back when it returns
    await sensor.stop()
    await handle.wait_state(KEY.format("cellar"), "offline")
    reason = handle.twin.devices[KEY.format("cellar")].state_reason or ""
    assert "no advertisement for 2s" in reason or "not advertising" in reason, reason
    await sensor.start()
    await sensor.report(13.0, 80.0)
    await handle.wait_state(KEY.format("cellar"), "online")
    await handle.wait_reported(KEY.format("cellar"), "temperature", "13")


async def test_polled_devices_share_the_adapter_s_slots(edge, air) -> None:
    devices = await thermometers(air, 6)
    handle = await bluetooth_edge(edge, air, maxConnections=2)
    handle.write_manifest(
        "thermo.yaml",
        THERMO_MODEL,
        *[
            device(
                f"t{i}",
                "thermo",
                {"macAddress": t.address, "connectTimeout": 20},
                {"temperature": TEMPERATURE},
                100,
            )
            for i, t in enumerate(devices, 1)
        ],
    )
    for i in range(1, 7):
        await handle.wait_reported(KEY.format(f"t{i}"), "temperature", f"{20 + i:g}")
    for thermo in devices:
        await thermo.set_temperature(30.5)
    for i in range(1, 7):
        await handle.wait_reported(KEY.format(f"t{i}"), "temperature", "30.5", timeout=20)
    # six devices polled every 100 ms through two slots: never more than two connections at once
    assert air.peak_connections == 2
    assert air.connections_made >= 12  # connected per poll, slot let go after each


async def test_a_device_that_disappears_goes_offline_and_the_others_go_on(edge, air) -> None:
    gone, staying = await thermometers(air, 2)
    handle = await bluetooth_edge(edge, air)
    handle.write_manifest(
        "thermo.yaml",
        THERMO_MODEL,
        device(
            "gone",
            "thermo",
            {"macAddress": gone.address, "connectTimeout": 1},
            {"temperature": {**TEMPERATURE, "notify": True}},
        ),
        device(
            "staying",
            "thermo",
            {"macAddress": staying.address, "connectTimeout": 1},
            {"temperature": TEMPERATURE},
        ),
    )
    await handle.wait_reported(KEY.format("gone"), "temperature", "21")
    await handle.wait_reported(KEY.format("staying"), "temperature", "22")
    await gone.stop()
    await handle.wait_state(KEY.format("gone"), "offline")
    reason = handle.twin.devices[KEY.format("gone")].state_reason or ""
    assert "disconnected" in reason or "not advertising" in reason, reason
    # the gone device's reconnect attempts do not hold up the other device's polls
    for value in (23.5, 24.5, 25.5):
        await staying.set_temperature(value)
        await handle.wait_reported(KEY.format("staying"), "temperature", f"{value:g}", timeout=5)
    await gone.start()
    await gone.set_temperature(19.0)
    await handle.wait_state(KEY.format("gone"), "online", timeout=15)
    await handle.wait_reported(KEY.format("gone"), "temperature", "19")


async def test_the_v1alpha2_data_converter_and_data_write(edge, air) -> None:
    (thermo,) = await thermometers(air, 1)
    # a CC2650-style raw value in the threshold characteristic: 0x0C 0x0D -> 0x0D0C >> 2 * 0.03125
    thermo.points[THRESHOLD].value = bytes([0x0C, 0x0D])
    handle = await bluetooth_edge(edge, air)
    visitors = {
        "threshold": {
            "characteristicUUID": THRESHOLD,
            "dataConverter": {
                "startIndex": 1,
                "endIndex": 0,
                "shiftRight": 2,
                "orderOfOperations": [{"operationType": "Multiply", "operationValue": 0.03125}],
            },
        },
        "led": {
            "characteristicUUID": LED,
            "operation": "write-without-response",
            "dataWrite": {"ON": [1], "OFF": [0]},
        },
    }
    handle.write_manifest(
        "thermo.yaml", THERMO_MODEL, device("tag", "thermo", {"macAddress": thermo.address}, visitors)
    )
    expected = (0x0D0C >> 2) * 0.03125
    await handle.wait_reported(KEY.format("tag"), "threshold", str(expected))
    client = await handle.client()
    await handle.wait_reported(KEY.format("tag"), "led", "OFF")  # b"\x00" read back through the table
    await client.set_desired(KEY.format("tag"), "led", "ON")
    await wait_for(lambda: thermo.points[LED].writes == [b"\x01"], 10, what="ON written as [1]")
    await handle.wait_reported(KEY.format("tag"), "led", "ON")


async def test_a_device_back_with_another_attribute_table_is_discovered_again(edge, air) -> None:
    """Polls reuse the attribute table found at the first connection; a device that went away may
    come back with new firmware, its handles moved: the table is discovered again."""
    thermo, other = await thermometers(air, 2)
    handle = await bluetooth_edge(edge, air)
    handle.write_manifest(
        "thermo.yaml",
        THERMO_MODEL,
        device("fridge", "thermo", {"macAddress": thermo.address, "connectTimeout": 1}, {"battery": BATTERY}),
        # keeps the adapter (and what it remembers) open while the fridge is away
        device("other", "thermo", {"macAddress": other.address}, {"battery": BATTERY}),
    )
    await handle.wait_reported(KEY.format("fridge"), "battery", "87")
    await thermo.stop()
    await handle.wait_state(KEY.format("fridge"), "offline")
    # new firmware: where the battery level was, another characteristic (read there, it says 99)
    updated = EmulatedPeripheral(
        thermo.name,
        thermo.address,
        [
            GattPoint("2a6e", b"\x00\x00", notify=True),
            GattPoint("2a1a", bytes([99]), service="180f"),
            GattPoint(THRESHOLD, b"\x00\x00", writable=True),
            GattPoint(LED, b"\x00", write_without_response=True),
            GattPoint("2a19", bytes([42]), service="ffe0"),
        ],
    )
    await updated.start(air)
    await handle.wait_reported(KEY.format("fridge"), "battery", "42")
    assert handle.error(KEY.format("fridge"), "battery") == ""


async def test_the_native_backend_without_bluez_says_so(edge) -> None:
    """bleak's platform backend, as in production: here (no kernel Bluetooth, no D-Bus) the device
    is offline with the reason, and the edge goes on."""
    handle = await edge(mappers={"bluetooth": {"readTimeout": 3, "maxBackoff": 0.5}})
    handle.write_manifest(
        "thermo.yaml",
        THERMO_MODEL,
        device(
            "fridge", "thermo", {"macAddress": "A4:C1:38:5E:21:07", "connectTimeout": 1}, {"battery": BATTERY}
        ),
    )
    await handle.wait_state(KEY.format("fridge"), "offline")
    reason = handle.twin.devices[KEY.format("fridge")].state_reason or ""
    # on a machine with BlueZ, the device is simply not there
    assert "no D-Bus system bus, so no BlueZ" in reason or "not advertising" in reason, reason
