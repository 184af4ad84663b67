"""Register codec: every data type and byte/word order round-trips; known layouts decode right."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeedge_mapper_modbus.codec import decode, encode, layout
from kubeedge_mapper_modbus.config import ModbusVisitor


def where(data_type: str | None = None, twin: str = "double", **extra):
    visitor = ModbusVisitor.model_validate(
        {"register": "HoldingRegister", "offset": 0, "dataType": data_type, **extra}
    )
    return layout(visitor, twin)


# 3.14159 as float32 big-endian is 0x40490FD0: ABCD = [0x4049, 0x0FD0]
@pytest.mark.parametrize(
    ("swap", "register_swap", "registers"),
    [
        (False, False, [0x4049, 0x0FD0]),
        (False, True, [0x0FD0, 0x4049]),
        (True, False, [0x4940, 0xD00F]),
        (True, True, [0xD00F, 0x4940]),
    ],
    ids=["ABCD", "CDAB", "BADC", "DCBA"],
)
def test_float32_byte_and_word_orders(swap: bool, register_swap: bool, registers: list[int]) -> None:
    layout_ = where("float32", isSwap=swap, isRegisterSwap=register_swap)
    assert decode(layout_, registers) == pytest.approx(3.14159, rel=1e-6)
    assert encode(layout_, 3.14159) == registers


def test_signed_scaled_and_offset() -> None:
    assert decode(where("int16"), [0xFB2E]) == -1234
    assert decode(where("int16", scale=0.1), [215]) == pytest.approx(21.5)
    assert decode(where("uint16", scale=0.5, valueOffset=-40), [100]) == pytest.approx(10.0)
    assert encode(where("uint16", scale=0.5, valueOffset=-40), 10.0) == [100]
    with pytest.raises(ValueError, match="does not fit in int16"):
        encode(where("int16"), 40000)


def test_bits_strings_and_defaults_from_the_model_type() -> None:
    assert decode(where(twin="boolean", bit=3), [0b1000]) is True
    assert decode(where("string", limit=3), [0x4142, 0x4300, 0]) == "ABC"
    assert encode(where("string", limit=3), "AB") == [0x4142, 0, 0]
    assert (
        layout(
            ModbusVisitor.model_validate({"register": "HoldingRegister", "offset": 0, "limit": 2}), "int"
        ).data_type
        == "int32"
    )
    assert (
        layout(ModbusVisitor.model_validate({"register": "InputRegister", "offset": 0}), "float").data_type
        == "float32"
    )
    assert (
        layout(ModbusVisitor.model_validate({"register": "CoilRegister", "offset": 4}), "int").data_type
        == "bool"
    )
    # KubeEdge's names
    assert (
        layout(
            ModbusVisitor.model_validate({"register": "HoldingRegister", "offset": 0, "dataType": "float"}),
            "float",
        ).data_type
        == "float32"
    )


INTS = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


@given(data=st.data(), kind=st.sampled_from(sorted(INTS)), swap=st.booleans(), register_swap=st.booleans())
def test_integers_round_trip(data, kind: str, swap: bool, register_swap: bool) -> None:
    value = data.draw(st.integers(*INTS[kind]))
    layout_ = where(kind, isSwap=swap, isRegisterSwap=register_swap)
    registers = encode(layout_, value)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode(layout_, registers) == value


@given(
    value=st.floats(allow_nan=False, allow_infinity=False), swap=st.booleans(), register_swap=st.booleans()
)
def test_float64_round_trip(value: float, swap: bool, register_swap: bool) -> None:
    layout_ = where("float64", isSwap=swap, isRegisterSwap=register_swap)
    assert decode(layout_, encode(layout_, value)) == value


@given(value=st.floats(width=32, allow_nan=False), swap=st.booleans(), register_swap=st.booleans())
def test_float32_round_trip(value: float, swap: bool, register_swap: bool) -> None:
    layout_ = where("float32", isSwap=swap, isRegisterSwap=register_swap)
    got = decode(layout_, encode(layout_, value))
    assert got == value or (math.isinf(value) and got == value)


@given(
    text=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20), swap=st.booleans()
)
def test_strings_round_trip(text: str, swap: bool) -> None:
    layout_ = where("string", limit=10, isSwap=swap)
    assert decode(layout_, encode(layout_, text)) == text


@given(data=st.binary(min_size=8, max_size=8), swap=st.booleans(), register_swap=st.booleans())
def test_bytes_round_trip(data: bytes, swap: bool, register_swap: bool) -> None:
    layout_ = where("bytes", twin="bytes", limit=4, isSwap=swap, isRegisterSwap=register_swap)
    assert decode(layout_, encode(layout_, data)) == data


def test_bytes_are_the_registers_in_wire_order_and_exactly_their_length() -> None:
    assert decode(where("bytes", twin="bytes", limit=2), [0x0102, 0x0304]) == b"\x01\x02\x03\x04"
    assert encode(where("bytes", twin="bytes", limit=1), b"\xab\xcd") == [0xABCD]
    with pytest.raises(ValueError, match=r"needs exactly 2 bytes \(1 registers\), got 3"):
        encode(where("bytes", twin="bytes", limit=1), b"abc")
    with pytest.raises(ValueError, match="needs exactly 4 bytes"):
        encode(where("bytes", twin="bytes", limit=2), b"\x01")  # would read back padded


def test_bytes_and_the_bytes_type_go_together() -> None:
    with pytest.raises(ValueError, match="dataType bytes goes with a BYTES property"):
        where("bytes", twin="int", limit=2)
    with pytest.raises(ValueError, match="dataType bytes goes with a BYTES property"):
        where("uint16", twin="bytes")


def test_a_boolean_in_a_whole_register() -> None:
    layout_ = where("bool", twin="boolean")
    assert encode(layout_, True) == [1]
    assert encode(layout_, False) == [0]
    assert decode(layout_, [1]) is True


def test_a_limit_too_small_for_the_model_type_is_refused() -> None:
    visitor = ModbusVisitor.model_validate({"register": "HoldingRegister", "offset": 0, "limit": 1})
    with pytest.raises(ValueError, match="limit 1 is too small for float32"):
        layout(visitor, "float")
    assert layout(visitor, "int").data_type == "int16"
