import pytest

from kubeedge_mapper_modbus.simulator import ModbusConformanceSimulator


@pytest.fixture
async def mapper_simulator():
    simulator = ModbusConformanceSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()
