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
