import pytest

from kubeedge_mapper_mqtt.simulator import MqttConformanceSimulator


@pytest.fixture
async def mapper_simulator(mosquitto_url):
    """The conformance suite's device: custom firmware on a real Mosquitto broker (the edge's own
    bus is another broker, the embedded one, as a device's broker usually is)."""
    simulator = MqttConformanceSimulator(mosquitto_url)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture(params=["embedded", "mosquitto"])
def device_broker(request: pytest.FixtureRequest) -> str:
    """The broker the devices are on: each test runs on both."""
    return str(request.getfixturevalue("embedded_url" if request.param == "embedded" else "mosquitto_url"))
