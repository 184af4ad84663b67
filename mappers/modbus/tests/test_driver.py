"""The Modbus driver on its own against a real pymodbus server: retries, timeouts, serial settings.

The runtime around it is tested through the full edge in ``test_modbus.py``; here the driver's
own promises are checked request by request, which the edge's polling would blur.
"""

import asyncio
import logging
import os
import termios

import pytest

from kubeedge import Device, DeviceError, DeviceModel, DeviceUnreachable, Property
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


# kubeedge/examples temperature-sensor-demo, its visitors as written there
TEMPERATURE = Property(
    "temperature",
    "float",
    ModbusVisitor.model_validate(
        {
            "dataType": "float",
            "register": "HoldingRegister",
            "offset": 0,
            "limit": 1,
            "scale": 0.1,
            "isSwap": False,
            "isRegisterSwap": False,
            "max": 100.0,
            "min": 1.0,
        }
    ),
)
SWITCH = Property(
    "temperature-switch",
    "int",
    ModbusVisitor.model_validate(
        {
            "dataType": "int",
            "register": "CoilRegister",
            "offset": 0,
            "limit": 1,
            "scale": 1,
            "isSwap": False,
            "isRegisterSwap": False,
        }
    ),
)


async def test_kubeedge_float_in_one_register_is_read_and_written_times_scale(server, connect) -> None:
    await server.set(1, "HoldingRegister", 0, [235])
    driver = await connect(tcp(server, 1))
    assert await driver.read(TEMPERATURE) == 23.5
    await driver.write(TEMPERATURE, 24.1)
    assert await server.get(1, "HoldingRegister", 0, 1) == [241]
    assert await driver.read(TEMPERATURE) == 24.1
    assert server.requests[(1, "ReadHoldingRegistersRequest")] == 2  # one register each time


async def test_a_value_beyond_one_unsigned_register_is_refused_naming_the_property(server, connect) -> None:
    setpoint = Property(
        "setpoint",
        "float",
        ModbusVisitor.model_validate(
            {"dataType": "float", "register": "HoldingRegister", "offset": 3, "limit": 1, "scale": 0.1}
        ),
    )
    await server.set(1, "HoldingRegister", 3, [200])
    driver = await connect(tcp(server, 1))
    for value, words in (
        (7000.0, "7000.0 does not fit in uint16 (0..65535); 70000 after scale 0.1"),
        (-5.0, "-5.0 does not fit in uint16 (0..65535); -50 after scale 0.1"),
    ):
        with pytest.raises(DeviceError) as info:
            await driver.write(setpoint, value)
        assert str(info.value) == (
            f"property setpoint: cannot write {value!r} to HoldingRegister 3 as uint16: {words}"
        )
    assert not any("Write" in name for _, name in server.requests)  # refused before the wire
    assert await server.get(1, "HoldingRegister", 3, 1) == [200]


async def test_a_kubeedge_int_coil_reads_and_writes_0_or_1(server, connect) -> None:
    driver = await connect(tcp(server, 1))
    await driver.write(SWITCH, 1)
    assert (await server.get(1, "CoilRegister", 0, 1))[0] is True
    assert await driver.read(SWITCH) is True  # the runtime reports it as "1" for an INT property
    await driver.write(SWITCH, 0)
    assert await driver.read(SWITCH) is False
    with pytest.raises(DeviceError, match=r"property temperature-switch: .* a CoilRegister holds 0 or 1"):
        await driver.write(SWITCH, 2)
    assert (await server.get(1, "CoilRegister", 0, 1))[0] is False


async def test_how_an_ambiguous_float_is_read_is_logged_once_per_device_and_property(
    server, connect, caplog
) -> None:
    await server.set(1, "HoldingRegister", 0, [235])
    unlimited = Property(
        "energy",
        "float",
        ModbusVisitor.model_validate({"dataType": "float", "register": "HoldingRegister", "offset": 4}),
    )
    device = Device.model_validate({"metadata": {"name": "thermo", "namespace": "plant"}})
    model = DeviceModel.model_validate({"metadata": {"name": "thermo", "namespace": "plant"}})
    config = ModbusConfig.model_validate(tcp(server, 1))
    with caplog.at_level(logging.INFO, logger="kubeedge_mapper_modbus.driver"):
        for _ in range(3):  # the runtime makes a new driver at every (re)connection
            driver = ModbusDriver(device, model, config, ModbusDriver.settings_model())
            await driver.connect()
            try:
                await driver.read_many([TEMPERATURE, unlimited, VALUE])
                await driver.read(TEMPERATURE)
            finally:
                await driver.close()
    notes = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert notes == [
        (
            logging.INFO,
            "device plant/thermo property temperature: dataType float with limit 1 read as one"
            " unsigned 16-bit register x scale 0.1 (KubeEdge mapper-framework convention);"
            " use limit 2 for IEEE float32",
        ),
        (
            logging.WARNING,
            "device plant/thermo property energy: dataType float without limit read as IEEE"
            " float32 in 2 registers (kubeedge/mappers-go convention); set limit: 1 to read one"
            " unsigned 16-bit register x scale (KubeEdge mapper-framework convention), or limit: 2"
            " to keep this reading",
        ),
    ]
