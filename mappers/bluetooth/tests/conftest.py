import pytest

from kubeedge_mapper_bluetooth.simulator import BluetoothSimulator


@pytest.fixture
async def mapper_simulator():
    simulator = BluetoothSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()
