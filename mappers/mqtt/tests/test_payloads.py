"""Payload extraction, command templates, presets and configData rules, without a broker."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kubeedge_mapper_mqtt.config import MqttConfig, MqttVisitor, render
from kubeedge_mapper_mqtt.payloads import BadPayload, coerce, decode_raw, encode_command, lookup, parse_path
from kubeedge_mapper_mqtt.routes import plan_routes


def test_paths_json_pointer_and_dotted() -> None:
    assert parse_path("/a/0/b") == ("a", 0, "b")
    assert parse_path("/a~1b/c~0d") == ("a/b", "c~d")
    assert parse_path("ENERGY.Power") == ("ENERGY", "Power")
    for bad in ("", "a..b", ".a", "a."):
        with pytest.raises(ValueError, match="empty"):
            parse_path(bad)
    document = {"a": [{"b": 5}], "x.y": 1}
    assert lookup(document, parse_path("/a/0/b"), "/a/0/b") == 5
    assert lookup(document, parse_path("/x.y"), "/x.y") == 1
    with pytest.raises(BadPayload, match=r"^missing: no value at 'a.1.b'"):
        lookup(document, parse_path("a.1.b"), "a.1.b")


def test_templates_fill_known_placeholders_and_keep_json_braces() -> None:
    assert render('{"{key}": {json}}', {"key": "state", "json": '"ON"'}) == '{"state": "ON"}'
    assert render("{other}/{name}", {"name": "lamp"}) == "{other}/lamp"
    with pytest.raises(ValidationError, match=r"unknown placeholder \{vaule\}"):
        MqttVisitor.model_validate({"commandPayload": "{vaule}"})
    with pytest.raises(ValidationError, match="cannot contain the wildcards"):
        MqttVisitor.model_validate({"commandTopic": "a/+/set"})


def test_every_kind_of_bad_payload() -> None:
    with pytest.raises(BadPayload, match=r"^oversized: 11 bytes, more than maxPayload 10$"):
        decode_raw("int", b"12345678901", 10)
    with pytest.raises(BadPayload, match=r"^not UTF-8"):
        decode_raw("string", b"\xff", 100)
    with pytest.raises(BadPayload, match=r"^wrong type: expected a number, got 'hot'"):
        coerce("float", "hot")
    with pytest.raises(BadPayload, match=r"^wrong type: expected a boolean"):
        coerce("boolean", "maybe")
    with pytest.raises(BadPayload, match=r"^wrong type: expected a whole number"):
        coerce("int", 2.5)
    with pytest.raises(BadPayload, match=r"^wrong type: expected a number"):
        coerce("int", True)  # JSON true is not 1
    with pytest.raises(BadPayload, match=r"^wrong type: expected text"):
        coerce("string", {"a": 1})
    assert decode_raw("bytes", b"\xff\x00", 100) == b"\xff\x00"
    assert coerce("boolean", "OFF") is False
    assert coerce("boolean", "Unlocked", payload_on="Locked", payload_off="Unlocked") is False


@given(st.integers(-(2**53), 2**53))
def test_ints_round_trip_through_a_json_command(value: int) -> None:
    payload = encode_command('{"v": {json}}', "int", value, {})
    assert coerce("int", json.loads(payload)["v"]) == value


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_doubles_round_trip_through_a_json_command(value: float) -> None:
    payload = encode_command('{"v": {json}}', "double", value, {})
    assert coerce("double", json.loads(payload)["v"]) == value


@given(st.text(max_size=50))
def test_text_round_trips_through_a_json_command_with_quotes_and_braces(value: str) -> None:
    payload = encode_command('{"note": {json}}', "string", value, {})
    assert coerce("string", json.loads(payload)["note"]) == value


@given(st.integers(-10_000, 10_000))
def test_a_scaled_value_is_written_divided_and_read_multiplied(raw: int) -> None:
    value = raw / 10
    payload = encode_command("{value}", "float", value, {}, scale=0.1)
    assert coerce("float", payload.decode(), scale=0.1) == pytest.approx(value)


@given(st.binary(max_size=64))
def test_bytes_go_raw_or_base64(value: bytes) -> None:
    assert encode_command("{value}", "bytes", value, {}) == value
    document = json.loads(encode_command('{"b": {json}}', "bytes", value, {}))
    assert coerce("bytes", document["b"]) == value


def test_booleans_use_the_device_s_words() -> None:
    assert encode_command("{value}", "boolean", True, {}, payload_on="ON", payload_off="OFF") == b"ON"
    assert (
        encode_command('{"s": {json}}', "boolean", False, {}, payload_on="ON", payload_off="OFF")
        == b'{"s": "OFF"}'
    )
    assert encode_command('{"s": {json}}', "boolean", True, {}) == b'{"s": true}'


def routes(config: dict, visitors: dict[str, dict], kind: str = "boolean"):
    return plan_routes(
        MqttConfig.model_validate(config),
        "home",
        "lamp-device",
        [(name, kind, MqttVisitor.model_validate(v)) for name, v in visitors.items()],
    )


def test_the_zigbee2mqtt_preset() -> None:
    planned = routes({"preset": "zigbee2mqtt", "deviceTopic": "Kitchen Lamp"}, {"state": {}})
    route = planned.routes["state"]
    assert route.state_topics == ("zigbee2mqtt/Kitchen Lamp",)
    assert route.command_topic == "zigbee2mqtt/Kitchen Lamp/set"
    assert encode_command(route.command_payload, "boolean", True, route.fields, **route.coerce_options()) == (
        b'{"state": "ON"}'
    )
    assert planned.availability_topic == "zigbee2mqtt/Kitchen Lamp/availability"
    assert (planned.payload_available, planned.payload_not_available) == ("online", "offline")
    # the device's name on the broker defaults to the Device's name; the base topic can change
    other = routes({"preset": "zigbee2mqtt", "baseTopic": "z2m"}, {"state": {}}).routes["state"]
    assert other.state_topics == ("z2m/lamp-device",)


def test_the_tasmota_preset() -> None:
    planned = routes({"preset": "tasmota", "deviceTopic": "plug-1"}, {"power": {"path": "POWER"}})
    route = planned.routes["power"]
    assert route.state_topics == ("tele/plug-1/STATE", "tele/plug-1/SENSOR", "stat/plug-1/RESULT")
    assert route.skips_missing
    assert route.command_topic == "cmnd/plug-1/POWER"
    assert (
        encode_command(route.command_payload, "boolean", False, route.fields, **route.coerce_options())
        == b"OFF"
    )
    assert planned.availability_topic == "tele/plug-1/LWT"
    assert (planned.payload_available, planned.payload_not_available) == ("Online", "Offline")


def test_a_property_with_nothing_to_read_or_write_is_named() -> None:
    planned = routes({}, {"state": {}})
    assert "neither stateTopic nor commandTopic" in planned.problems["state"]


def test_credentials_never_inline_and_never_in_the_connection_key(tmp_path) -> None:
    with pytest.raises(ValidationError, match="passwordFile"):
        MqttConfig.model_validate({"username": "u", "password": "hunter2"})
    with pytest.raises(ValidationError, match="credentials do not go in the URL"):
        MqttConfig.model_validate({"broker": "mqtt://u:hunter2@host"})
    with pytest.raises(ValidationError, match="a password needs a username"):
        MqttConfig.model_validate({"passwordEnv": "X"})
    config = MqttConfig.model_validate({"username": "u", "passwordFile": str(tmp_path / "p")})
    assert "hunter2" not in repr(config.link())


def test_kubeedge_mqtt_mapper_keys_are_understood() -> None:
    config = MqttConfig.model_validate({"ip": "10.0.0.5", "port": "1883"})
    assert (config.host, config.port) == ("10.0.0.5", 1883)
    visitor = MqttVisitor.model_validate(
        {"topic": "greenhouse/{name}/state", "jsonPath": "$.climate.sensors[1].t", "writeTopic": "g/set"}
    )
    assert (visitor.state_topic, visitor.path, visitor.command_topic) == (
        "greenhouse/{name}/state",
        "climate.sensors.1.t",
        "g/set",
    )
    with pytest.raises(ValidationError, match="connection settings belong to the device"):
        MqttVisitor.model_validate({"topic": "t", "clientId": "c", "keepAlive": 60})


topic_level = st.sampled_from(["a", "b", "$SYS", "", "x y", "+", "#"])


@given(
    st.lists(topic_level, min_size=1, max_size=4),
    st.lists(topic_level.filter(lambda s: s not in "+#"), min_size=1, max_size=4),
)
def test_wildcard_filters_match_as_paho_says(filter_levels: list[str], topic_levels: list[str]) -> None:
    import paho.mqtt.client as mqtt

    from kubeedge_mapper_mqtt.broker import filter_pattern

    if "#" in filter_levels[:-1]:
        return  # not a valid filter
    topic_filter, topic = "/".join(filter_levels), "/".join(topic_levels)
    assert bool(filter_pattern(topic_filter).match(topic)) == mqtt.topic_matches_sub(topic_filter, topic)
