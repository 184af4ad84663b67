import pytest

from kubeedge_mapper_virtual.conformance import VirtualSimulator


@pytest.fixture
async def mapper_simulator():
    simulator = VirtualSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()
