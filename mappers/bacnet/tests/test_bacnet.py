"""The BACnet mapper through the full edge (bus, twin) against real bacpypes3 device applications.

Every device and the mapper's own application bind unique free UDP ports on loopback.
"""

import asyncio
from pathlib import Path

import pytest
import yaml

from kubeedge.testing import wait_for
from kubeedge_mapper_bacnet.simulator import BacnetDevice, free_udp_port

SETTINGS = {"readTimeout": 2, "maxBackoff": 1}
AV = ("analog-value", 1)
AI = ("analog-input", 1)
BO = ("binary-output", 1)
MSV = ("multi-state-value", 1)

POINTS = [
    {
        "name": "setpoint",
        "type": "FLOAT",
        "visitor": {"objectType": "analogValue", "objectInstance": 1, "priority": 8},
    },
    {"name": "temperature", "type": "FLOAT", "visitor": {"objectType": "analogInput", "objectInstance": 1}},
    {
        "name": "fan",
        "type": "BOOLEAN",
        "visitor": {"objectType": "binaryOutput", "objectInstance": 1, "priority": 5},
    },
    {"name": "mode", "type": "INT", "visitor": {"objectType": "multiStateValue", "objectInstance": 1}},
    {
        "name": "units",
        "type": "STRING",
        "visitor": {"objectType": "analogValue", "objectInstance": 1, "property": "units"},
    },
    {
        "name": "label",
        "type": "STRING",
        "visitor": {"objectType": "characterstringValue", "objectInstance": 1},
    },
    {"name": "energy", "type": "DOUBLE", "visitor": {"objectType": "largeAnalogValue", "objectInstance": 1}},
]


def model(properties: list[dict]) -> dict:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "ahu", "namespace": "plant"},
        "spec": {
            "protocol": "bacnet",
            "properties": [
                {"name": p["name"], "type": p["type"], "accessMode": p.get("access", "ReadWrite")}
                for p in properties
            ],
        },
    }


def device(name: str, properties: list[dict], config: dict, cycle: int = 100) -> dict:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "plant"},
        "spec": {
            "deviceModelRef": {"name": "ahu"},
            "protocol": {"protocolName": "bacnet", "configData": config},
            "properties": [
                {
                    "name": p["name"],
                    "collectCycle": p.get("cycle", cycle),
                    "visitors": {"protocolName": "bacnet", "configData": p["visitor"]},
                }
                for p in properties
            ],
        },
    }


def bacnet(simulated: BacnetDevice, local: int, **extra) -> dict:
    return {
        "deviceInstance": simulated.instance,
        "address": simulated.address,
        "localAddress": f"127.0.0.1:{local}",
        # patient enough for a loaded machine; a silent device is offline within readTimeout
        "apduTimeout": 800,
        "apduRetries": 1,
        **extra,
    }


@pytest.fixture
async def devices():
    """``await devices(n)``: n simulated devices (instances 1001...), stopped after the test."""
    started: list[BacnetDevice] = []

    async def make(count: int = 1, start: bool = True) -> list[BacnetDevice]:
        made = [BacnetDevice(instance=1001 + len(started) + i) for i in range(count)]
        for simulated in made:
            if start:
                await simulated.start()
            started.append(simulated)
        return made

    yield make
    for simulated in started:
        await simulated.stop()


@pytest.fixture
def local() -> int:
    """The mapper's own BACnet port for this test."""
    return free_udp_port()


async def test_reads_every_kind_of_value(edge, devices, local) -> None:
    (ahu,) = await devices()
    handle = await edge(mappers={"bacnet": SETTINGS})
    handle.write_manifest("ahu.yaml", model(POINTS), device("ahu-1", POINTS, bacnet(ahu, local)))
    expected = {
        "setpoint": "21.5",
        "temperature": "215",
        "fan": "false",
        "mode": "2",
        "units": "degrees-celsius",
        "label": "pump A",
        "energy": "1234.125",
    }
    for name, value in expected.items():
        await handle.wait_reported("plant/ahu-1", name, value)
    assert all(handle.error("plant/ahu-1", name) == "" for name in expected)


async def test_one_device_is_read_with_read_property_multiple(edge, devices, local) -> None:
    batched, single = await devices(2)
    handle = await edge(mappers={"bacnet": SETTINGS})
    handle.write_manifest(
        "ahu.yaml",
        model(POINTS),
        device("batched", POINTS, bacnet(batched, local), cycle=200),
        device("single", POINTS, bacnet(single, local, readMultiple=False), cycle=200),
    )
    await handle.wait_reported("plant/batched", "energy")
    await handle.wait_reported("plant/single", "energy")
    batched.received = single.received = 0
    await wait_for(lambda: batched.received >= 10, 10, what="ten cycles of the batched device")
    # seven properties: one ReadPropertyMultiple per cycle, against seven ReadProperty requests
    assert single.received >= 4 * batched.received, (single.received, batched.received)


async def test_a_desired_value_is_commanded_at_its_priority(edge, devices, local) -> None:
    (ahu,) = await devices()
    handle = await edge(mappers={"bacnet": SETTINGS})
    handle.write_manifest("ahu.yaml", model(POINTS), device("ahu-1", POINTS, bacnet(ahu, local)))
    await handle.wait_reported("plant/ahu-1", "setpoint", "21.5")
    client = await handle.client()
    await client.set_desired("plant/ahu-1", "setpoint", "24.5")
    await client.set_desired("plant/ahu-1", "fan", "true")
    await client.set_desired("plant/ahu-1", "mode", "4")
    await handle.wait_reported("plant/ahu-1", "setpoint", "24.5")
    await handle.wait_reported("plant/ahu-1", "fan", "true")
    await handle.wait_reported("plant/ahu-1", "mode", "4")
    assert ahu.priority_slot(*AV, 8) == 24.5
    assert ahu.priority_slot(*AV, 16) is None  # not the default priority
    assert str(ahu.priority_slot(*BO, 5)) == "active"
    assert str(ahu.get(*BO).presentValue) == "active"
    # an operator commanding a higher priority wins; the twin shows what the device does
    ahu.set_value(*AV, 19.0, priority=3)
    await handle.wait_reported("plant/ahu-1", "setpoint", "19")


async def test_emptying_the_desired_value_in_the_manifest_relinquishes_the_priority_slot(
    edge, devices, local
) -> None:
    """desired 24.5 commands priority 8; desired "" (as `kubectl patch` leaves it) writes Null
    there once, so the relinquish default (or a lower priority) takes over again."""
    (ahu,) = await devices()
    handle = await edge(mappers={"bacnet": SETTINGS})

    def manifest(desired: str | None) -> None:
        dev = device("ahu-1", POINTS[:1], bacnet(ahu, local))
        if desired is not None:
            dev["spec"]["properties"][0]["desired"] = {"value": desired}
        handle.write_manifest("ahu.yaml", model(POINTS[:1]), dev)

    manifest("")  # empty from the start: no desired value, nothing written
    await handle.wait_reported("plant/ahu-1", "setpoint", "21.5")
    assert ahu.priority_slot(*AV, 8) is None and ahu.priority_slot(*AV, 16) is None
    manifest("24.5")
    await handle.wait_reported("plant/ahu-1", "setpoint", "24.5")
    assert ahu.priority_slot(*AV, 8) == 24.5
    manifest("")
    await handle.wait_reported("plant/ahu-1", "setpoint", "20")  # the relinquish default
    assert ahu.priority_slot(*AV, 8) is None
    assert handle.error("plant/ahu-1", "setpoint") == ""
    manifest("24.5")  # the same value again is a change again
    await handle.wait_reported("plant/ahu-1", "setpoint", "24.5")


async def test_a_device_error_names_class_and_code_and_other_devices_go_on(edge, devices, local) -> None:
    ahu, gone = await devices(2)
    await gone.stop()  # silent: never answers
    handle = await edge(mappers={"bacnet": SETTINGS})
    handle.write_manifest(
        "ahu.yaml",
        model(POINTS),
        device("ahu-1", POINTS, bacnet(ahu, local)),
        device("gone", POINTS, bacnet(gone, local, apduTimeout=300, apduRetries=0)),
    )
    await handle.wait_reported("plant/ahu-1", "mode", "2")
    ahu.hide(*AI, True)
    await wait_for(
        lambda: "BACnet error object: unknown-object" in handle.error("plant/ahu-1", "temperature"),
        10,
        what="the device's error on temperature",
    )
    assert "analog-input,1 present-value" in handle.error("plant/ahu-1", "temperature")
    assert handle.state("plant/ahu-1") == "online"
    await handle.wait_state("plant/gone", "offline")
    assert "timeout: no answer from device 1002" in handle.error("plant/gone", "mode")
    # the silent device does not hold up the other one
    ahu.set_value(*MSV, 3)
    await handle.wait_reported("plant/ahu-1", "mode", "3", timeout=3)
    assert handle.error("plant/ahu-1", "mode") == ""
    ahu.hide(*AI, False)
    await wait_for(lambda: handle.error("plant/ahu-1", "temperature") == "", 10, what="the error to clear")


COV_POINTS = [
    {
        "name": "temperature",
        "type": "FLOAT",
        "access": "ReadOnly",
        "cycle": 3_600_000,  # an hour: a value that arrives sooner was pushed
        "visitor": {"objectType": "analogInput", "objectInstance": 1, "cov": True, "covLifetime": 4},
    },
    {
        "name": "fan",
        "type": "BOOLEAN",
        "cycle": 3_600_000,
        "visitor": {"objectType": "binaryOutput", "objectInstance": 1, "cov": True, "covLifetime": 4},
    },
    {"name": "mode", "type": "INT", "visitor": {"objectType": "multiStateValue", "objectInstance": 1}},
]


async def test_cov_notifications_become_twin_updates_without_polling(edge, devices, local) -> None:
    (ahu,) = await devices()
    handle = await edge(mappers={"bacnet": SETTINGS})
    handle.write_manifest(
        "ahu.yaml", model(COV_POINTS), device("ahu-1", COV_POINTS, bacnet(ahu, local), cycle=3_600_000)
    )
    await handle.wait_reported("plant/ahu-1", "temperature", "215")  # the first notification
    await handle.wait_reported("plant/ahu-1", "fan", "false")
    for value in (216.5, 218.0, 17.25):
        ahu.set_value(*AI, value)
        await handle.wait_reported("plant/ahu-1", "temperature", f"{value:g}", timeout=3)
    ahu.set_value(*BO, "active")
    await handle.wait_reported("plant/ahu-1", "fan", "true", timeout=3)
    assert handle.state("plant/ahu-1") == "online"


async def test_cov_is_renewed_and_re_established_after_a_device_restart(edge, devices, local) -> None:
    (ahu,) = await devices()
    points = [dict(p, visitor={**p["visitor"], "covLifetime": 2}) for p in COV_POINTS[:1]]
    handle = await edge(mappers={"bacnet": SETTINGS})
    handle.write_manifest("ahu.yaml", model(points), device("ahu-1", points, bacnet(ahu, local)))
    await handle.wait_reported("plant/ahu-1", "temperature", "215")
    # past the lifetime: only a renewal keeps notifications coming
    await asyncio.sleep(3)
    ahu.set_value(*AI, 220.0)
    await handle.wait_reported("plant/ahu-1", "temperature", "220", timeout=3)
    # a restart forgets every subscription; the next renewal (within a second) makes a new one
    await ahu.stop()
    await ahu.start()
    ahu.set_value(*AI, 230.0)
    await handle.wait_reported("plant/ahu-1", "temperature", "230", timeout=10)
    ahu.set_value(*AI, 231.0)
    await handle.wait_reported("plant/ahu-1", "temperature", "231", timeout=3)


async def test_a_refused_subscription_marks_its_property_and_the_others_go_on(edge, devices, local) -> None:
    (ahu,) = await devices()
    points = [
        *COV_POINTS[:1],
        {
            "name": "missing",
            "type": "FLOAT",
            "cycle": 3_600_000,
            "visitor": {"objectType": "analogValue", "objectInstance": 99, "cov": True, "covLifetime": 4},
        },
    ]
    handle = await edge(mappers={"bacnet": SETTINGS})
    handle.write_manifest("ahu.yaml", model(points), device("ahu-1", points, bacnet(ahu, local)))
    await wait_for(
        lambda: "object: unknown-object" in handle.error("plant/ahu-1", "missing"),
        10,
        what="the refused subscription's error",
    )
    assert "subscribing to analog-value,99" in handle.error("plant/ahu-1", "missing")
    ahu.set_value(*AI, 222.0)
    await handle.wait_reported("plant/ahu-1", "temperature", "222", timeout=3)


async def test_the_readme_example_works_as_written(edge, devices, local) -> None:
    """examples/ahu.yaml (the README's example), with the ports of this test."""
    (ahu,) = await devices()
    text = (Path(__file__).parents[1] / "examples" / "ahu.yaml").read_text()
    text = text.replace("127.0.0.1:47809", ahu.address).replace("127.0.0.1:47808", f"127.0.0.1:{local}")
    handle = await edge(mappers={"bacnet": SETTINGS})
    handle.write_manifest("ahu.yaml", *yaml.safe_load_all(text))
    await handle.wait_reported("default/ahu-1", "supply-temperature", "21.5")
    await handle.wait_reported("default/ahu-1", "setpoint", "22.5")  # the manifest's desired value
    assert ahu.priority_slot(*AV, 8) == 22.5
    await handle.wait_reported("default/ahu-1", "setpoint-units", "degrees-celsius")
    ahu.set_value(*AI, 230.0)
    await handle.wait_reported("default/ahu-1", "supply-temperature", "23", timeout=3)
