import pytest

from kubeedge_mapper_virtual import SIMULATOR


@pytest.fixture(autouse=True)
def _fresh_simulator():
    SIMULATOR.reset()
    yield
    SIMULATOR.reset()
