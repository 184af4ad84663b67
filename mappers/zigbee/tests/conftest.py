import pytest

from kubeedge_mapper_zigbee.simulator import ZigbeeConformanceSimulator


@pytest.fixture
async def mapper_simulator():
    simulator = ZigbeeConformanceSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()
