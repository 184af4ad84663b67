import pytest

from kubeedge_mapper_bacnet.simulator import BacnetConformanceSimulator


@pytest.fixture
async def mapper_simulator():
    simulator = BacnetConformanceSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()
