"""Conversions between twin values and BACnet values, and address parsing (property-based)."""

import math

from bacpypes3.basetypes import BinaryPV
from bacpypes3.primitivedata import CharacterString, Double, OctetString, Real, Unsigned
from hypothesis import given
from hypothesis import strategies as st

from kubeedge import Property
from kubeedge_mapper_bacnet.config import BacnetVisitor, bacnet_address, host_port
from kubeedge_mapper_bacnet.driver import decode, encode


def prop(kind: str, object_type: str = "analogValue", scale: float = 1.0) -> Property[BacnetVisitor]:
    visitor = BacnetVisitor.model_validate({"objectType": object_type, "objectInstance": 1, "scale": scale})
    return Property("p", kind, visitor)


scales = st.sampled_from([1.0, 0.1, 0.01, 10.0, 2.5])


@given(st.floats(-1e6, 1e6), scales)
def test_a_double_survives_the_round_trip_through_the_device(value: float, scale: float) -> None:
    p = prop("double", "largeAnalogValue", scale)
    assert math.isclose(decode(p, Double(encode(p, value))), value, rel_tol=1e-12, abs_tol=1e-9)


@given(st.floats(-1e4, 1e4), scales)
def test_a_float_survives_within_real_precision(value: float, scale: float) -> None:
    p = prop("float", scale=scale)
    assert math.isclose(decode(p, Real(encode(p, value))), value, rel_tol=1e-6, abs_tol=1e-3 * scale)


@given(st.integers(0, 2**32 - 1))
def test_an_int_survives_as_unsigned(value: int) -> None:
    p = prop("int", "multiStateValue")
    read = decode(p, Unsigned(encode(p, value)))
    assert read == value and type(read) is int


@given(st.booleans())
def test_a_boolean_is_active_or_inactive_on_a_binary_object(value: bool) -> None:
    p = prop("boolean", "binaryOutput")
    written = encode(p, value)
    assert written == ("active" if value else "inactive")
    assert decode(p, BinaryPV(written)) is value


@given(st.text(max_size=50), st.binary(max_size=50))
def test_text_and_bytes_pass_unchanged(text: str, data: bytes) -> None:
    assert decode(prop("string", "characterstringValue"), CharacterString(text)) == text
    read = decode(prop("bytes", "octetstringValue"), OctetString(encode(prop("bytes"), data)))
    assert read == data and type(read) is bytes


@given(st.ip_addresses(v=4), st.integers(1, 65535), st.one_of(st.none(), st.integers(0, 32)))
def test_addresses_parse_back(ip, port: int, prefix: int | None) -> None:
    text = f"{ip}" + (f"/{prefix}" if prefix is not None else "") + f":{port}"
    assert host_port(text) == (str(ip), port)
    assert bacnet_address(text) == text
    assert host_port(str(ip)) == (str(ip), 47808)
