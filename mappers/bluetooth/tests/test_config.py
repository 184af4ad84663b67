"""Bluetooth configData and the codec: what is accepted, errors that name the field, decode rules
(struct formats, byte ranges, scale/offset, v1alpha2's dataConverter, dataWrite) and round trips."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kubeedge import DeviceError
from kubeedge_mapper_bluetooth.codec import DecodeError, convert_v1alpha2, decode, encode
from kubeedge_mapper_bluetooth.config import (
    BluetoothConfig,
    BluetoothSettings,
    BluetoothVisitor,
    DataConverter,
    Operation,
)

TEMP = "00002a6e-0000-1000-8000-00805f9b34fb"


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in error["loc"]) for error in exc.errors()}


def visitor(**config) -> BluetoothVisitor:
    return BluetoothVisitor.model_validate({"characteristicUUID": "2a6e", **config})


def test_a_device_is_found_by_address_or_by_what_it_advertises() -> None:
    config = BluetoothConfig.model_validate({"macAddress": "a4:c1:38:5e:21:07"})
    assert config.mac_address == "A4:C1:38:5E:21:07"
    assert (config.adapter, config.connect_timeout, config.stay_connected, config.pair) == (
        "hci0",
        10.0,
        None,
        False,
    )
    by_service = BluetoothConfig.model_validate({"serviceUUID": "0x181A", "adapter": "hci1"})
    assert by_service.service_uuid == "0000181a-0000-1000-8000-00805f9b34fb"


@pytest.mark.parametrize(
    ("config", "field", "text"),
    [
        ({}, "", "say which device"),
        ({"macAddress": "A4:C1:38"}, "macAddress", "not a Bluetooth address"),
        ({"name": "x", "connectTimeout": 0}, "connectTimeout", "greater than"),
        ({"serviceUUID": "zz"}, "serviceUUID", "not a Bluetooth UUID"),
        ({"name": "x", "ip": "10.0.0.1"}, "ip", "Extra inputs"),
    ],
)
def test_bad_protocol_config_names_the_field(config: dict, field: str, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        BluetoothConfig.model_validate(config)
    assert field in error_fields(info.value) or field == ""
    assert text in str(info.value)


def test_operations_follow_from_the_keys() -> None:
    assert visitor().operation is Operation.READ
    assert visitor(notify=True).operation is Operation.NOTIFY
    assert visitor().characteristic_uuid == TEMP
    advert = BluetoothVisitor.model_validate({"serviceDataUUID": "fcd2", "format": "<h", "byteOffset": 2})
    assert advert.operation is Operation.ADVERTISEMENT and advert.pushed
    assert visitor(operation="write-without-response").write_response is False


@pytest.mark.parametrize(
    ("config", "field", "text"),
    [
        ({"format": "<z"}, "format", "not a struct format"),
        ({"dataType": "int12"}, "dataType", "not one of int8"),
        ({"format": "<h", "dataType": "int16"}, "", "give one of them"),
        ({"scale": 0}, "scale", "must not be 0"),
        ({"operation": "read", "notify": True}, "", "contradicts"),
        ({"dataWrite": {"ON": [256]}}, "dataWrite", "0-255"),
        ({"dataWrite": {"ON": "0g"}}, "dataWrite", "not hex bytes"),
        (
            {"dataConverter": {"startIndex": 0, "endIndex": 1, "shiftLeft": 1, "shiftRight": 1}},
            "dataConverter",
            "one",
        ),
        (
            {
                "dataConverter": {
                    "startIndex": 0,
                    "endIndex": 1,
                    "orderOfOperations": [{"operationType": "Divide", "operationValue": 0}],
                }
            },
            "dataConverter.orderOfOperations.0",
            "Divide by 0",
        ),
        ({"dataConverter": {"startIndex": 0, "endIndex": 0}, "scale": 2}, "", "whole conversion"),
        ({"serviceDataUUID": "fcd2"}, "", "an advertised value has no characteristic"),
        ({"serviceDataUUID": "fcd2", "operation": "read"}, "", "belong to operation advertisement"),
        ({"characteristicUUID": None, "operation": "read"}, "", "characteristicUUID is required"),
        ({"byteOfset": 2}, "byteOfset", "Extra inputs"),
    ],
)
def test_bad_visitor_names_the_field(config: dict, field: str, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        visitor(**config)
    assert field == "" or field in error_fields(info.value)
    assert text in str(info.value)


def test_the_bumble_backend_needs_a_transport_per_adapter() -> None:
    with pytest.raises(ValidationError, match="give each adapter its HCI transport"):
        BluetoothSettings.model_validate({"backend": "bumble"})
    settings = BluetoothSettings.model_validate(
        {
            "backend": "bumble",
            "maxConnections": 5,
            "adapters": {"hci0": {"transport": "usb:0", "maxConnections": 7}, "hci1": {"transport": "usb:1"}},
        }
    )
    assert (settings.slots("hci0"), settings.slots("hci1"), settings.slots("hci9")) == (7, 5, 5)


def test_decode_rules() -> None:
    assert decode(visitor(format="<h", scale=0.01), "float", struct.pack("<h", -425)) == -4.25
    assert decode(visitor(dataType="uint16", byteOrder="big"), "int", b"\x01\x02") == 0x0102
    assert decode(visitor(dataType="uint8", byteOffset=2, offset=-40), "int", b"\x00\x00\x64") == 60
    assert decode(visitor(), "int", b"\x34\x12") == 0x1234  # no format: unsigned little-endian
    assert decode(visitor(byteOffset=1, byteLength=3), "string", b"\x00abc\x00") == "abc"
    assert decode(visitor(byteOffset=1), "bytes", b"\x00\x01\x02") == b"\x01\x02"
    assert decode(visitor(dataType="uint8"), "boolean", b"\x02") is True
    assert decode(visitor(dataWrite={"ON": [1], "OFF": [0]}), "string", b"\x00") == "OFF"
    with pytest.raises(DecodeError, match="format '<i' needs 4"):
        decode(visitor(format="<i"), "int", b"\x01\x02")
    with pytest.raises(DecodeError, match="not UTF-8"):
        decode(visitor(), "string", b"\xff\xfe")
    with pytest.raises(DecodeError, match="none of dataWrite's values"):
        decode(visitor(dataWrite={"ON": [1]}), "string", b"\x07")


def test_the_v1alpha2_converter_as_kubeedge_s_cc2650_samples_use_it() -> None:
    # IR temperature: bytes 1..0 (backwards: little-endian), >> 2, x 0.03125
    converter = DataConverter.model_validate(
        {
            "startIndex": 1,
            "endIndex": 0,
            "shiftRight": 2,
            "orderOfOperations": [{"operationType": "Multiply", "operationValue": 0.03125}],
        }
    )
    assert convert_v1alpha2(converter, bytes([0x0C, 0x0D])) == (0x0D0C >> 2) * 0.03125
    forward = DataConverter.model_validate(
        {
            "startIndex": 0,
            "endIndex": 1,
            "shiftLeft": 1,
            "orderOfOperations": [
                {"operationType": "Add", "operationValue": 2},
                {"operationType": "Divide", "operationValue": 4},
                {"operationType": "Subtract", "operationValue": 1},
            ],
        }
    )
    assert convert_v1alpha2(forward, bytes([0x01, 0x02])) == ((0x0102 << 1) + 2) / 4 - 1
    with pytest.raises(DecodeError, match="no byte 1"):
        convert_v1alpha2(forward, b"\x01")


def test_encode_rules() -> None:
    assert encode(visitor(format="<h", scale=0.01), "float", -4.25) == struct.pack("<h", -425)
    assert encode(visitor(dataType="uint8"), "boolean", True) == b"\x01"
    assert encode(visitor(), "string", "eco") == b"eco"
    assert encode(visitor(dataWrite={"ON": "01", "OFF": [0]}), "string", "ON") == b"\x01"
    with pytest.raises(DeviceError, match="not in dataWrite"):
        encode(visitor(dataWrite={"ON": [1]}), "string", "DIM")
    with pytest.raises(DeviceError, match="does not fit format"):
        encode(visitor(dataType="uint8"), "int", 300)
    with pytest.raises(DeviceError, match="only reads"):
        encode(visitor(dataConverter={"startIndex": 0, "endIndex": 0}), "int", 1)


@given(st.integers(-32768, 32767), st.sampled_from([0.01, 0.1, 0.5, 2.0]), st.sampled_from([0.0, -40.0, 3.5]))
def test_scaled_int16_round_trips(raw: int, scale: float, offset: float) -> None:
    rule = visitor(dataType="int16", scale=scale, offset=offset)
    value = decode(rule, "double", struct.pack("<h", raw))
    assert encode(rule, "double", value) == struct.pack("<h", raw)


@given(st.sampled_from(["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]), st.data())
def test_integers_round_trip_in_either_byte_order(data_type: str, data: st.DataObject) -> None:
    code = {
        "int8": "b",
        "uint8": "B",
        "int16": "h",
        "uint16": "H",
        "int32": "i",
        "uint32": "I",
        "int64": "q",
        "uint64": "Q",
    }[data_type]
    bits = struct.calcsize(code) * 8
    signed = code.islower()
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    number = data.draw(st.integers(low, high))
    order = data.draw(st.sampled_from(["little", "big"]))
    rule = visitor(dataType=data_type, byteOrder=order)
    raw = struct.pack(("<" if order == "little" else ">") + code, number)
    assert decode(rule, "int", raw) == number
    assert encode(rule, "int", number) == raw
