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


def test_an_int_property_without_data_type_takes_its_size_from_limit() -> None:
    visitor = ModbusVisitor.model_validate({"register": "HoldingRegister", "offset": 0, "limit": 1})
    assert layout(visitor, "int").data_type == "int16"


# --- KubeEdge's float and double: the limit picks the wire form


def kubeedge(data_type: str | None, twin: str = "float", register: str = "HoldingRegister", **extra):
    visitor = {"register": register, "offset": 0, **extra}
    if data_type is not None:
        visitor["dataType"] = data_type
    return layout(ModbusVisitor.model_validate(visitor), twin)


def test_the_temperature_sensor_demo_visitor_reads_one_register_times_scale() -> None:
    # kubeedge/examples temperature-sensor-demo: 23.5 °C is stored as 235
    where_ = kubeedge("float", limit=1, scale=0.1, isSwap=False, isRegisterSwap=False, max=100.0, min=1.0)
    assert (where_.data_type, where_.count) == ("uint16", 1)
    assert decode(where_, [235]) == 23.5
    assert decode(where_, [0xFFFF]) == 6553.5  # unsigned, as KubeEdge's mapper reads it
    assert encode(where_, 24.1) == [241]
    assert encode(where_, 0.7) == [7]  # KubeEdge's mapper truncates 6.999... to 6
    assert where_.note == (
        "dataType float with limit 1 read as one unsigned 16-bit register x scale 0.1"
        " (KubeEdge mapper-framework convention); use limit 2 for IEEE float32"
    )


def test_one_register_keeps_byte_order_and_value_offset() -> None:
    swapped = kubeedge("float", limit=1, scale=0.1, isSwap=True, isRegisterSwap=True)
    assert decode(swapped, [0xEB00]) == 23.5
    assert encode(swapped, 23.5) == [0xEB00]
    assert "bytes swapped (isSwap)" in swapped.note
    offset = kubeedge("double", twin="double", limit=1, scale=0.5, valueOffset=-40)
    assert decode(offset, [100]) == 10.0
    assert encode(offset, 10.0) == [100]
    assert "x scale 0.5 + valueOffset -40" in offset.note and "use limit 4 for IEEE float64" in offset.note


@pytest.mark.parametrize(
    ("data_type", "twin", "limit", "form", "count", "noted"),
    [
        ("float", "float", 1, "uint16", 1, True),
        ("float", "float", 2, "float32", 2, False),
        ("float", "float", 4, "float64", 4, True),
        ("float", "float", None, "float32", 2, True),
        ("double", "double", 1, "uint16", 1, True),
        ("double", "double", 2, "float32", 2, True),
        ("double", "double", 4, "float64", 4, False),
        ("double", "double", None, "float64", 4, True),
        # no dataType: the model type says float or double; without a limit, our default, unnoted
        (None, "float", None, "float32", 2, False),
        (None, "float", 1, "uint16", 1, True),
        (None, "double", None, "float64", 4, False),
        ("float32", "float", None, "float32", 2, False),
        ("float64", "double", None, "float64", 4, False),
        ("uint16", "float", None, "uint16", 1, False),
    ],
)
def test_the_limit_picks_the_wire_form(data_type, twin, limit, form, count, noted) -> None:
    extra = {} if limit is None else {"limit": limit}
    where_ = kubeedge(data_type, twin=twin, **extra)
    assert (where_.data_type, where_.count, where_.note is not None) == (form, count, noted)


def test_float_without_limit_says_how_it_was_read() -> None:
    assert kubeedge("float").note == (
        "dataType float without limit read as IEEE float32 in 2 registers (kubeedge/mappers-go"
        " convention); set limit: 1 to read one unsigned 16-bit register x scale (KubeEdge"
        " mapper-framework convention), or limit: 2 to keep this reading"
    )


def test_a_limit_that_gives_float_no_form_is_refused() -> None:
    with pytest.raises(
        ValueError, match="limit 3 does not fit a DOUBLE property without dataType: limit 1 reads one"
    ):
        kubeedge(None, twin="double", limit=3)


def test_an_explicit_type_is_not_reinterpreted() -> None:
    with pytest.raises(ValueError, match="limit 1 is too small for dataType float32"):
        kubeedge("float32", limit=1)
    assert decode(kubeedge("int16", scale=0.1), [0xFFFF]) == -0.1  # int16 stays signed


@pytest.mark.parametrize("register", ["CoilRegister", "DiscreteInputRegister"])
def test_a_bit_as_a_kubeedge_float_is_0_or_1_times_scale(register: str) -> None:
    where_ = kubeedge("float", register=register, limit=1, scale=0.5)
    assert (where_.data_type, where_.count) == ("uint16", 1)
    assert (decode(where_, [True]), decode(where_, [False])) == (0.5, 0.0)
    assert "read as its bit (0 or 1) x scale 0.5" in where_.note
    assert encode(where_, 0.5) is True
    assert encode(where_, 0) is False
    with pytest.raises(ValueError, match=rf"a {register} holds 0 or 1 \(false or true\), not 1.0 \(2 after"):
        encode(where_, 1.0)


def test_a_coil_as_a_kubeedge_int_is_0_or_1() -> None:
    # the demo's temperature-switch: dataType int, limit 1, scale 1 on a coil
    where_ = kubeedge("int", twin="int", register="CoilRegister", limit=1, scale=1)
    assert where_.data_type == "bool" and where_.note is None
    assert decode(where_, [True]) is True  # reported "1" for an INT property
    assert (encode(where_, 1), encode(where_, 0), encode(where_, "true")) == (True, False, True)
    with pytest.raises(ValueError, match="a CoilRegister holds 0 or 1"):
        encode(where_, 2)  # would read back as 1, never as 2


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (6553.6, r"6553.6 does not fit in uint16 \(0..65535\); 65536 after scale 0.1"),
        (-0.1, r"-0.1 does not fit in uint16 \(0..65535\); -1 after scale 0.1"),
        ("warm", "'warm' is not a number"),
        (math.inf, "inf is not a number the device can hold"),
    ],
)
def test_a_write_outside_one_unsigned_register_is_refused(value, words: str) -> None:
    where_ = kubeedge("float", limit=1, scale=0.1)
    assert encode(where_, 6553.5) == [65535]
    assert encode(where_, 0) == [0]
    with pytest.raises(ValueError, match=words):
        encode(where_, value)


def test_integers_scale_in_decimal() -> None:
    assert decode(where("int16", scale=0.1), [3]) == 0.3  # not 0.30000000000000004
    assert decode(where("uint16", scale=0.01), [2999]) == 29.99
    assert encode(where("uint16", scale=0.01), 29.99) == [2999]


def test_scale_0_means_unscaled_as_in_kubeedge() -> None:
    # Go cannot tell `scale: 0` from no scale; KubeEdge's mappers read both as unscaled
    assert decode(kubeedge("float", limit=1, scale=0), [235]) == 235
    assert encode(kubeedge("float", limit=1, scale=0), 235) == [235]


SCALES = st.sampled_from([0.1, 0.01, 0.001, 0.5, 2.0, 10.0, -0.1, 0.25, 1.0]) | st.floats(
    min_value=1e-4, max_value=1e4
)


@given(raw=st.integers(0, 0xFFFF), scale=SCALES, swap=st.booleans())
def test_one_register_times_scale_round_trips(raw: int, scale: float, swap: bool) -> None:
    where_ = kubeedge("float", limit=1, scale=scale, isSwap=swap)
    assert encode(where_, decode(where_, _from(raw, swap))) == _from(raw, swap)


@given(data=st.data(), scale=SCALES)
def test_a_written_value_reads_back_to_the_nearest_step(data, scale: float) -> None:
    where_ = kubeedge("float", limit=1, scale=scale)
    low, high = sorted((0.0, 65535 * scale))
    value = data.draw(st.floats(min_value=low, max_value=high))
    (word,) = encode(where_, value)
    assert 0 <= word <= 0xFFFF
    assert abs(decode(where_, [word]) - value) <= abs(scale) / 2 * (1 + 1e-9)


def _from(raw: int, swap: bool) -> list[int]:
    """The register that holds ``raw`` (bytes swapped when the visitor says isSwap)."""
    return [((raw & 0xFF) << 8) | (raw >> 8)] if swap else [raw]
