"""The Modbus driver on its own against a real pymodbus server: retries, timeouts, serial settings.

The runtime around it is tested through the full edge in ``test_modbus.py``; here the driver's
own promises are checked request by request, which the edge's polling would blur.
"""

import asyncio
import os
import termios

import pytest

from kubeedge import Device, DeviceModel, DeviceUnreachable, Property
from kubeedge_mapper_modbus.config import ModbusConfig, ModbusVisitor
from kubeedge_mapper_modbus.driver import LINKS, ModbusDriver
from kubeedge_mapper_modbus.simulator import ModbusSimulator

VALUE = Property("value", "int", ModbusVisitor.model_validate({"register": "HoldingRegister", "offset": 0}))


@pytest.fixture
async def server():
    simulator = await ModbusSimulator(units=(1, 2)).start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def connect():
    """``await connect(configData)``: a connected driver, closed after the test."""
    drivers: list[ModbusDriver] = []

    async def make(config: dict) -> ModbusDriver:
        device = Device.model_validate({"metadata": {"name": f"plc-{len(drivers)}"}})
        model = DeviceModel.model_validate({"metadata": {"name": "plc"}})
        driver = ModbusDriver(
            device, model, ModbusConfig.model_validate(config), ModbusDriver.settings_model()
        )
        drivers.append(driver)
        await driver.connect()
        return driver

    yield make
    for driver in drivers:
        await driver.close()


def tcp(server: ModbusSimulator, unit: int, **extra) -> dict:
    return {"ip": "127.0.0.1", "port": server.port, "slaveID": unit, "timeout": 200, **extra}


def sent(server: ModbusSimulator, unit: int) -> int:
    return server.requests[(unit, "ReadHoldingRegistersRequest")]


async def test_a_transient_silence_is_retried_retries_times(server, connect) -> None:
    await server.set(1, "HoldingRegister", 0, [7])
    patient = await connect(tcp(server, 1, retries=2))
    server.unanswered[1] = 2
    assert await patient.read(VALUE) == 7  # the third try is answered
    assert sent(server, 1) == 3

    impatient = await connect(tcp(server, 1, retries=1))
    server.unanswered[1] = 2
    with pytest.raises(
        DeviceUnreachable, match=r"timeout: no answer from unit 1 .* within 200 ms \(2 tries\)"
    ):
        await impatient.read(VALUE)
    assert sent(server, 1) == 5
    assert server.unanswered[1] == 0


async def test_devices_sharing_a_link_keep_their_own_timeout_and_retries(server, connect) -> None:
    # One gateway connection, two units: the settings of the device that opened it must not
    # become the other's.
    await server.set(2, "HoldingRegister", 0, [9])
    await connect(tcp(server, 1, retries=0, timeout=100))
    patient = await connect(tcp(server, 2, retries=2, timeout=300))
    assert server.connections == 1
    server.unanswered[2] = 2
    assert await patient.read(VALUE) == 9
    assert sent(server, 2) == 3


async def test_a_silent_unit_is_asked_again_on_connect(server, connect) -> None:
    # After a timeout the link is still up (the gateway answers for the other units), so a new
    # connection of the silent unit must ask it before calling it connected.
    await server.set(2, "HoldingRegister", 0, [4])
    await connect(tcp(server, 1))
    silent = await connect(tcp(server, 2))
    server.silent.add(2)
    with pytest.raises(DeviceUnreachable, match="timeout"):
        await silent.read(VALUE)
    await silent.close()
    before = sent(server, 2)
    with pytest.raises(DeviceUnreachable, match="timeout: no answer from unit 2"):
        await connect(tcp(server, 2))
    assert sent(server, 2) == before + 1  # the request that went unanswered, asked again

    server.silent.discard(2)
    back = await connect(tcp(server, 2))
    assert await back.read(VALUE) == 4
    reconnected = sent(server, 2)
    await back.close()
    await connect(tcp(server, 2))  # answered since: connecting costs no request again
    assert sent(server, 2) == reconnected


async def test_serial_settings_reach_the_serial_port(pty_pair, connect) -> None:
    device_side, edge_side = pty_pair
    simulator = await ModbusSimulator(units=(1,), serial_port=device_side).start()
    try:
        await simulator.set(1, "HoldingRegister", 0, [21])
        driver = await connect(
            {
                "communicateMode": "RTU",
                "serialPort": edge_side,
                "baudRate": 19200,
                "dataBits": 8,
                "parity": "none",
                "stopBits": 2,
                "timeout": 500,
            }
        )
        assert await driver.read(VALUE) == 21
        port = driver._link.connection.ctx.transport.sync_serial  # what pyserial opened
        assert (port.port, port.baudrate, port.bytesize, port.parity, port.stopbits) == (
            edge_side,
            19200,
            8,
            "N",
            2,
        )
        fd = os.open(edge_side, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            assert termios.tcgetattr(fd)[2] & termios.CSTOPB  # and the line itself has it
        finally:
            os.close(fd)
    finally:
        await simulator.stop()


@pytest.mark.parametrize(("data_bits", "parity"), [(5, "N"), (6, "O"), (7, "E"), (8, "N")])
async def test_data_bits_and_parity_reach_the_serial_client(data_bits: int, parity: str) -> None:
    # A pseudo-terminal refuses (EINVAL) or ignores anything but 8 data bits without parity, so
    # the other settings are checked on the client the driver opens for the line.
    config = ModbusConfig.model_validate(
        {"communicateMode": "RTU", "serialPort": "/dev/ttyUSB7", "dataBits": data_bits, "parity": parity}
    )
    link = await LINKS.acquire(config)
    try:
        params = link.connection.comm_params
        assert (params.host, params.bytesize, params.parity) == ("/dev/ttyUSB7", data_bits, parity)
    finally:
        await LINKS.pool.release(link)


async def test_a_read_cancelled_as_its_answer_arrives_ends_cancelled(server, connect) -> None:
    # The runtime stops a device by cancelling its task; an answer arriving in that same loop
    # iteration must not swallow the cancellation (asyncio.wait_for does on Python 3.11), or the
    # device keeps polling and its stop hangs.
    await server.set(1, "HoldingRegister", 0, [7])
    driver = await connect(tcp(server, 1))
    manager = driver._link.connection.ctx  # pymodbus' transaction manager: its pending answer
    reading = asyncio.create_task(driver.read(VALUE))
    await asyncio.sleep(0)  # the request is sent
    while not manager.response_future.done():  # the answer is in, the reader not resumed yet
        await asyncio.sleep(0)
    assert reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
