"""The BACnet driver on its own against real bacpypes3 devices: relinquish, per-device APDU settings
on a shared application, errors. The runtime around it is tested through the edge in test_bacnet.py.
"""

import asyncio

import pytest

from kubeedge import Device, DeviceError, DeviceModel, DeviceUnreachable, Property
from kubeedge_mapper_bacnet.config import BacnetConfig, BacnetSettings, BacnetVisitor
from kubeedge_mapper_bacnet.driver import APPS, BacnetDriver
from kubeedge_mapper_bacnet.simulator import BacnetDevice, free_udp_port

SETPOINT = Property(
    "setpoint",
    "float",
    BacnetVisitor.model_validate({"objectType": "analogValue", "objectInstance": 1, "priority": 8}),
)


@pytest.fixture
async def ahu():
    simulated = await BacnetDevice(1001).start()
    yield simulated
    await simulated.stop()


@pytest.fixture
async def connect():
    """``await connect(configData)``: a connected driver, closed after the test."""
    drivers: list[BacnetDriver] = []

    async def make(config: dict, connect: bool = True) -> BacnetDriver:
        driver = BacnetDriver(
            Device.model_validate({"metadata": {"name": f"ahu-{len(drivers)}"}}),
            DeviceModel.model_validate({"metadata": {"name": "ahu"}}),
            BacnetConfig.model_validate(config),
            BacnetSettings(),
        )
        drivers.append(driver)
        if connect:
            await driver.connect()
        return driver

    yield make
    for driver in drivers:
        await driver.close()
    assert len(APPS.pool) == 0, "a local application outlived its last device"


class Mute(asyncio.DatagramProtocol):
    """A UDP port that takes every request and never answers: counts the tries."""

    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1


async def test_an_empty_value_relinquishes_the_priority_slot(ahu, connect) -> None:
    driver = await connect(
        {"deviceInstance": 1001, "address": ahu.address, "localAddress": f"127.0.0.1:{free_udp_port()}"}
    )
    await driver.write(SETPOINT, 25.0)
    assert ahu.priority_slot("analog-value", 1, 8) == 25.0
    assert await driver.read(SETPOINT) == 25.0
    await driver.write(SETPOINT, None)
    assert ahu.priority_slot("analog-value", 1, 8) is None
    assert await driver.read(SETPOINT) == 20.0  # the relinquish default


async def test_errors_name_bacnet_class_and_code(ahu, connect) -> None:
    driver = await connect(
        {"deviceInstance": 1001, "address": ahu.address, "localAddress": f"127.0.0.1:{free_udp_port()}"}
    )
    missing = Property(
        "x", "float", BacnetVisitor.model_validate({"objectType": "analogValue", "objectInstance": 7})
    )
    with pytest.raises(
        DeviceError, match=r"BACnet error object: unknown-object reading analog-value,7 present-value"
    ):
        await driver.read(missing)
    with pytest.raises(DeviceError, match=r"writing 1.0 to analog-value,7 present-value") as info:
        await driver.write(missing, 1.0)
    assert info.value.code == "object: unknown-object"
    # in a ReadPropertyMultiple, the refused property fails alone
    good, bad = await driver.read_many([SETPOINT, missing])
    assert good == 21.5
    assert isinstance(bad, DeviceError) and "unknown-object" in str(bad)


async def test_a_wrong_device_instance_is_not_connected(ahu, connect) -> None:
    driver = await connect(
        {"deviceInstance": 1009, "address": ahu.address, "localAddress": f"127.0.0.1:{free_udp_port()}"},
        connect=False,
    )
    with pytest.raises(
        DeviceUnreachable, match=r"device 1009 at .* is not that device: BACnet error object: unknown-object"
    ):
        await driver.connect()


async def test_devices_sharing_a_local_application_keep_their_own_timeout_and_retries(connect) -> None:
    loop = asyncio.get_running_loop()
    port = free_udp_port()
    transport, mute = await loop.create_datagram_endpoint(Mute, local_addr=("127.0.0.1", port))
    try:
        local = f"127.0.0.1:{free_udp_port()}"
        config = {
            "deviceInstance": 1001,
            "address": f"127.0.0.1:{port}",
            "localAddress": local,
            "apduTimeout": 200,
        }
        hasty = await connect({**config, "apduRetries": 0}, connect=False)
        patient = await connect({**config, "apduRetries": 2}, connect=False)
        results = await asyncio.gather(hasty.connect(), patient.connect(), return_exceptions=True)
        assert len(APPS.pool) == 1  # one local application, one socket
    finally:
        transport.close()
    assert [type(r) for r in results] == [DeviceUnreachable, DeviceUnreachable]
    assert "within 200 ms (1 try)" in str(results[0])
    assert "within 200 ms (3 tries)" in str(results[1])
    assert mute.received == 1 + 3


async def test_a_local_address_this_host_does_not_have_is_refused(connect) -> None:
    driver = await connect(
        {"deviceInstance": 1, "address": "127.0.0.1:47809", "localAddress": "192.0.2.77:47900"}, connect=False
    )
    with pytest.raises(
        DeviceUnreachable, match=r"cannot bind the local BACnet application to 192\.0\.2\.77:47900"
    ):
        await asyncio.wait_for(driver.connect(), 5)


async def test_a_stopped_subscription_is_cancelled_on_the_device(ahu, connect) -> None:
    driver = await connect(
        {"deviceInstance": 1001, "address": ahu.address, "localAddress": f"127.0.0.1:{free_udp_port()}"}
    )
    temperature = Property(
        "t",
        "float",
        BacnetVisitor.model_validate({"objectType": "analogInput", "objectInstance": 1, "cov": True}),
    )
    received: list[tuple[str, object]] = []
    first = asyncio.Event()

    def emit(name: str, value: object) -> None:
        received.append((name, value))
        first.set()

    task = asyncio.create_task(driver.subscribe([temperature], emit))
    await asyncio.wait_for(first.wait(), 5)
    assert received[0] == ("t", 215.0)
    assert ahu.subscriptions() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the device stops notifying at once, rather than until the lifetime (300 s) ends
    assert ahu.subscriptions() == 0


async def test_a_foreign_device_registration_reaches_the_device_through_its_bbmd(connect) -> None:
    bbmd = await BacnetDevice(1005, bbmd=True).start()
    try:
        driver = await connect(
            {
                "deviceInstance": 1005,
                "address": bbmd.address,
                "localAddress": f"127.0.0.1:{free_udp_port()}",
                "bbmdAddress": bbmd.address,
                "bbmdTtl": 30,
            }
        )
        assert await driver.read(SETPOINT) == 21.5
    finally:
        await bbmd.stop()


async def test_a_device_without_read_property_multiple_is_read_one_by_one(connect) -> None:
    small = BacnetDevice(1006)
    small.read_multiple = False
    await small.start()
    try:
        driver = await connect(
            {"deviceInstance": 1006, "address": small.address, "localAddress": f"127.0.0.1:{free_udp_port()}"}
        )
        mode = Property(
            "mode",
            "int",
            BacnetVisitor.model_validate({"objectType": "multiStateValue", "objectInstance": 1}),
        )
        assert await driver.read_many([SETPOINT, mode]) == [21.5, 2]  # refused, then read one by one
        requests = driver.requests
        assert await driver.read_many([SETPOINT, mode]) == [21.5, 2]
        assert driver.requests - requests == 2  # no more ReadPropertyMultiple tries
    finally:
        await small.stop()
