"""The bus client's own QoS 0 PUBLISH encoding is byte for byte what paho would send."""

import socket

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeedge.bus.client import BrokerAddress, _publish_packet
from kubeedge.errors import ConfigError


def paho_packet(topic: str, payload: bytes, retain: bool) -> bytes:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.on_socket_register_write = lambda *args: None  # queue only, never write
    client._sock = socket.socket()  # paho only queues a PUBLISH while it believes it is connected
    try:
        client._send_publish(0, topic.encode(), payload, 0, retain)
        return bytes(client._out_packet[0]["packet"])
    finally:
        client._sock.close()
        client._sock = None


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152])
def test_remaining_length_boundaries(size: int) -> None:
    payload = b"x" * size
    assert _publish_packet("$hw/events/device/ns/name/twin/update", payload, False) == paho_packet(
        "$hw/events/device/ns/name/twin/update", payload, False
    )


@given(
    topic=st.text(min_size=1, max_size=60).filter(lambda t: not {"\x00", "+", "#"} & set(t)),
    payload=st.binary(max_size=300),
    retain=st.booleans(),
)
def test_same_bytes_as_paho(topic: str, payload: bytes, retain: bool) -> None:
    assert _publish_packet(topic, payload, retain) == paho_packet(topic, payload, retain)


@pytest.mark.parametrize("topic", ["a/+", "a/#", "a\x00b", "", "\udc00", "x" * 65_536])
def test_topics_mqtt_cannot_carry_are_refused_by_name(topic: str) -> None:
    with pytest.raises(ValueError, match=r"wildcard|more than MQTT's 65,535|surrogates"):
        _publish_packet(topic, b"", False)


def test_broker_urls() -> None:
    assert BrokerAddress.parse("mqtt://127.0.0.1") == BrokerAddress("127.0.0.1", 1883, False)
    assert BrokerAddress.parse("mqtts://broker.example:9999") == BrokerAddress("broker.example", 9999, True)
    with pytest.raises(ConfigError, match="is not mqtt://host"):
        BrokerAddress.parse("http://x")


@pytest.mark.parametrize("listen", ["127.0.0.1:1883", "127.0.0.2:0", "localhost:1883", "LOCALHOST:1883"])
def test_the_embedded_broker_may_listen_on_any_loopback_address(listen: str) -> None:
    from kubeedge.config import BusConfig

    assert BusConfig.model_validate({"listen": listen}).listen_address[0] in {
        "127.0.0.1",
        "127.0.0.2",
        "localhost",
        "LOCALHOST",
    }


def test_listen_is_not_checked_when_the_broker_is_external() -> None:
    from kubeedge.config import BusConfig

    config = BusConfig.model_validate({"url": "mqtt://broker:1883", "listen": "0.0.0.0:1883"})
    assert config.client_url() == "mqtt://broker:1883"
    with pytest.raises(ValueError, match="is not a loopback address"):
        BusConfig.model_validate({"url": "embedded", "listen": "0.0.0.0:1883"})
