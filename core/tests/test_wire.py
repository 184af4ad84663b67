"""Edge bus messages: KubeEdge's exact JSON parses, ours is what a KubeEdge mapper reads."""

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeedge.api import topics
from kubeedge.api.twin import (
    DeviceStateResult,
    DeviceStateUpdate,
    ErrorResult,
    MembershipGetResult,
    MembershipUpdate,
    MsgTwin,
    TwinDelta,
    TwinDocument,
    TwinUpdate,
    TwinValue,
    parse,
)
from kubeedge.api.values import format_value, parse_value
from kubeedge.errors import WireError

# Samples as KubeEdge's Go code produces them (kubeedge-reference.md section 2.2).
GO_MAPPER_UPDATE = (
    '{"event_id":"","timestamp":1754450000000,"twin":{"temperature":{"expected":{"value":"30","metadata":{}},'
    '"actual":{"value":"25.5","metadata":{}},"metadata":{"type":"float"}}}}'
)
EDGECORE_RESULT = (
    '{"event_id":"","timestamp":1754450000001,"twin":{"temperature":{"expected":{"value":"30","metadata":'
    '{"timestamp":1754450000001}},"actual":{"value":"25.5","metadata":{"timestamp":1754450000001}},'
    '"optional":true,"metadata":{"type":"float"}}}}'
)
EDGECORE_DELTA = (
    '{"event_id":"4d2a","timestamp":1754450000002,"twin":{"temperature":{"expected":{"value":"30"},'
    '"actual":{"value":"25.5"},"optional":true,"metadata":{"type":"float"}}},"delta":{"temperature":"30"}}'
)
EDGECORE_DOCUMENT = (
    '{"event_id":"","timestamp":1,"twin":{"temperature":{"last":null,"current":{"expected":{"value":"30"},'
    '"actual":{"value":"25.5"},"optional":true,"metadata":{"type":"float"}}}}}'
)
TO_CLOUD = (
    '{"event_id":"e","timestamp":1,"twin":{"temperature":{"expected":{"value":"30","metadata":{"timestamp":1}},'
    '"actual":{"value":"25.5","metadata":{"timestamp":1}},"optional":true,"metadata":{"type":"string"},'
    '"expected_version":{"cloud":0,"edge":1},"actual_version":{"cloud":0,"edge":1}}}}'
)


def test_go_mapper_twin_update_parses_unchanged() -> None:
    update = parse(TwinUpdate, GO_MAPPER_UPDATE)
    twin = update.twin["temperature"]
    assert twin.actual.value == "25.5"
    assert twin.expected.value == "30"
    assert twin.metadata.type == "float"
    assert update.timestamp == 1754450000000


def test_edgecore_messages_parse() -> None:
    result = parse(TwinUpdate, EDGECORE_RESULT)
    assert result.twin["temperature"].optional is True
    assert result.twin["temperature"].actual.metadata.timestamp == 1754450000001
    delta = parse(TwinDelta, EDGECORE_DELTA)
    assert delta.delta == {"temperature": "30"}
    document = parse(TwinDocument, EDGECORE_DOCUMENT)
    assert document.twin["temperature"].last is None
    assert document.twin["temperature"].current.actual.value == "25.5"
    versions = parse(TwinUpdate, TO_CLOUD).twin["temperature"]
    assert (versions.expected_version.edge, versions.actual_version.cloud) == (1, 0)


@pytest.mark.parametrize("sample", [EDGECORE_RESULT, EDGECORE_DELTA, TO_CLOUD])
def test_our_json_equals_go_json(sample: str) -> None:
    model = TwinDelta if "delta" in sample else TwinUpdate
    assert json.loads(parse(model, sample).to_json()) == json.loads(sample)


def test_document_keeps_null_last() -> None:
    assert json.loads(parse(TwinDocument, EDGECORE_DOCUMENT).to_json()) == json.loads(EDGECORE_DOCUMENT)


def test_deleted_twin_is_sent_as_null() -> None:
    update = TwinUpdate(
        event_id="x", timestamp=5, twin={"gone": None, "kept": MsgTwin(actual=TwinValue(value="1"))}
    )
    assert json.loads(update.to_json()) == {
        "event_id": "x",
        "timestamp": 5,
        "twin": {"gone": None, "kept": {"actual": {"value": "1"}}},
    }


def test_typed_values_may_come_as_json_numbers_and_booleans() -> None:
    update = parse(
        TwinUpdate,
        '{"twin":{"t":{"actual":{"value":25.5}},"b":{"actual":{"value":true}},"i":{"actual":{"value":7}}}}',
    )
    assert [update.twin[k].actual.value for k in "tbi"] == ["25.5", "true", "7"]


def test_values_with_spaces_and_json_pass_through() -> None:
    text = 'Irrigation paused: {"until": "18:00"}'
    update = TwinUpdate(twin={"note": MsgTwin(actual=TwinValue(value=text))})
    assert parse(TwinUpdate, update.to_json()).twin["note"].actual.value == text


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ("not json", "not valid JSON"),
        ('{"event_id":"x"}', "key twin does not exist"),
        ('{"twin":{"t":{"actual":{"value":{"a":1}}}}}', "twin.t.actual.value"),
        ('{"twin":[1,2]}', "twin"),
        ('{"twin":{"t":{"actual":{"value":"1"}}},"timestamp":"yesterday"}', "timestamp"),
    ],
)
def test_malformed_payloads_give_a_reason(payload: str, words: str) -> None:
    with pytest.raises(WireError) as info:
        parse(TwinUpdate, payload)
    assert words in info.value.reason
    assert info.value.code == 400


def test_state_messages_both_spellings() -> None:
    assert parse(DeviceStateUpdate, '{"event_id":"","timestamp":1,"state":"online"}').state == "online"
    # KubeEdge's DMI path builds the payload from a Go struct without json tags
    assert parse(DeviceStateUpdate, '{"event_id":"","timestamp":1,"State":"ok"}').state == "ok"
    result = DeviceStateResult(
        event_id="e",
        timestamp=1,
        device={"name": "s", "state": "online", "lastOnlineTime": "2026-08-06T07:00:00Z"},
    )
    assert json.loads(result.to_json())["device"] == {
        "name": "s",
        "state": "online",
        "lastOnlineTime": "2026-08-06T07:00:00Z",
    }


def test_membership_and_errors() -> None:
    update = parse(
        MembershipUpdate,
        '{"event_id":"u","timestamp":1,"added_devices":[{"id":"default/sensor-01","name":"sensor-01"}],"removed_devices":null}',
    )
    assert update.added_devices[0].id == "default/sensor-01"
    assert update.removed_devices is None
    assert parse(MembershipGetResult, '{"event_id":"","timestamp":1,"devices":[]}').devices == []
    error = ErrorResult(
        event_id="", timestamp=1, code=404, reason="Device default/x not found while getting twin"
    )
    assert json.loads(error.to_json()) == {
        "event_id": "",
        "timestamp": 1,
        "code": 404,
        "reason": "Device default/x not found while getting twin",
    }


def test_topics() -> None:
    assert (
        topics.device_topic("default", "sensor-01", topics.TWIN_UPDATE)
        == "$hw/events/device/default/sensor-01/twin/update"
    )
    parsed = topics.parse_topic("$hw/events/device/device/events/twin/update/delta")
    assert (parsed.namespace, parsed.name, parsed.action) == ("device", "events", "twin/update/delta")
    node = topics.parse_topic("$hw/events/node/edge-1/membership/get")
    assert (node.node, node.action) == ("edge-1", "membership/get")
    for bad in (
        "$hw/events/device/only-ns",
        "$hw/events/device//x/twin/update",
        "plain/topic",
        "$hw/events/node/",
    ):
        with pytest.raises(WireError):
            topics.parse_topic(bad)


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


@given(ns=names, name=names, action=st.sampled_from(sorted(topics.INBOUND_DEVICE_ACTIONS)))
def test_topic_round_trip(ns: str, name: str, action: str) -> None:
    parsed = topics.parse_topic(topics.device_topic(ns, name, action))
    assert (parsed.namespace, parsed.name, parsed.action) == (ns, name, action)


@given(st.integers(-(2**63), 2**63 - 1))
def test_int_values_round_trip(number: int) -> None:
    assert parse_value("int", format_value("int", number)) == number


@given(st.floats(allow_nan=False))
def test_double_values_round_trip(number: float) -> None:
    assert parse_value("double", format_value("double", number)) == number


@given(st.floats(width=32, allow_nan=False))
def test_float_values_round_trip_as_32_bit(number: float) -> None:
    text = format_value("float", number)
    # the text names the same 32-bit float (written to a float32 register, it is the same bits)
    assert struct.pack("<f", parse_value("float", text)) == struct.pack("<f", number)


@given(st.binary(max_size=64))
def test_bytes_values_round_trip(data: bytes) -> None:
    assert parse_value("bytes", format_value("bytes", data)) == data


@given(st.booleans())
def test_boolean_values_round_trip(flag: bool) -> None:
    assert parse_value("boolean", format_value("boolean", flag)) is flag


@given(st.text(max_size=200))
def test_string_values_round_trip(text: str) -> None:
    assert parse_value("string", format_value("string", text)) == text


@pytest.mark.parametrize(
    ("type_name", "text"),
    [
        ("int", "1.5"),
        ("int", "1_000"),
        ("int", " 3"),
        ("int", str(2**63)),
        ("float", "abc"),
        ("double", "1,5"),
        ("boolean", "True"),
        ("boolean", "1"),
        ("bytes", "not base64!"),
        ("rgb", "x"),
    ],
)
def test_values_that_do_not_fit_their_type(type_name: str, text: str) -> None:
    with pytest.raises(ValueError, match=r"not|fit|type"):
        parse_value(type_name, text)


def test_float32_is_shortest() -> None:
    assert format_value("float", 21.5) == "21.5"
    assert format_value("float", 0.10000000149011612) == "0.1"
    assert format_value("double", 0.1) == "0.1"
    assert format_value("double", 3.0) == "3"
    assert parse_value("integer", "12") == 12
