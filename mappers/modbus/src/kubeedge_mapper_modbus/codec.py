"""Registers to values and back: data types, byte order, word order, scale and offset.

Registers are 16-bit words; a multi-register value is big-endian by default (high word first,
high byte first), as the Modbus specification and most devices lay it out. ``isRegisterSwap``
reverses the word order (CDAB for a 32-bit value), ``isSwap`` swaps the bytes within each word
(BADC); both together give DCBA.

KubeEdge's ``float`` and ``double`` take their wire form from ``limit`` (``FLOAT_FORMS``): one
unsigned 16-bit register x scale (limit 1, KubeEdge's mapper-framework Modbus mapper; a coil or
discrete input as its bit), IEEE float32 (limit 2) or float64 (limit 4, kubeedge/mappers-go).
Where a manifest leaves that open, the reading chosen is described in :attr:`Layout.note`.

Integer registers are scaled in decimal (3 x 0.1 is 0.3, not 0.30000000000000004), and a
written value is unscaled the same way and rounded to the nearest integer (halves to even).
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kubeedge_mapper_modbus.config import (
    BIT_REGISTERS,
    DEFAULT_FLOAT_LIMIT,
    FLOAT_FORMS,
    KUBEEDGE_FLOATS,
    REGISTER_COUNT,
    ModbusVisitor,
    check_float_limit,
)

_STRUCT = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "int64": ">q",
    "uint64": ">Q",
    "float32": ">f",
    "float64": ">d",
}


@dataclass(frozen=True)
class Layout:
    """How one property sits on the device."""

    register: str
    offset: int
    count: int
    data_type: str
    """The wire form: one of ``REGISTER_COUNT``, ``string`` or ``bytes``; on a coil or discrete
    input ``bool``, or ``uint16`` for the bit as a number (0 or 1) x scale."""
    visitor: ModbusVisitor
    note: str | None = None
    """How an ambiguous manifest was read (KubeEdge's ``float`` with limit 1, or without a
    limit), for the driver to log once."""

    @property
    def is_bits(self) -> bool:
        return self.register in BIT_REGISTERS


_TWIN_DATA_TYPES = {
    "float": "float",
    "double": "double",
    "boolean": "bool",
    "string": "string",
    "bytes": "bytes",
}
_FORM_NAMES = {"uint16": "", "float32": "IEEE float32", "float64": "IEEE float64"}


def layout(visitor: ModbusVisitor, twin_type: str) -> Layout:
    """The data type and register count of a property; the DeviceModel type fills what the
    visitor leaves open (an INT property without dataType is int16, int32 or int64 by limit, a
    FLOAT one is KubeEdge's ``float``)."""
    written = visitor.data_type
    if visitor.register_type in BIT_REGISTERS:
        if written in KUBEEDGE_FLOATS or (written is None and twin_type in KUBEEDGE_FLOATS):
            note = None
            if written is not None:
                note = (
                    f"dataType {written} on a {visitor.register_type} read as its bit (0 or 1)"
                    f"{_scaling(visitor)} (KubeEdge mapper-framework convention)"
                )
            return Layout(visitor.register_type, visitor.offset, 1, "uint16", visitor, note)
        return Layout(visitor.register_type, visitor.offset, 1, "bool", visitor)
    data_type = written
    if visitor.bit is not None:
        data_type = "bool"
    elif data_type is None:
        if twin_type == "int":
            data_type = {1: "int16", 2: "int32", 4: "int64"}.get(visitor.limit or 1, "int16")
        else:
            data_type = _TWIN_DATA_TYPES.get(twin_type, "uint16")
    if (data_type == "bytes") != (twin_type == "bytes"):
        raise ValueError(
            "dataType bytes goes with a BYTES property, and a BYTES property with dataType bytes"
        )
    note = None
    if data_type in KUBEEDGE_FLOATS:
        data_type, note = _float_form(data_type, visitor, explicit=written is not None)
    needed = REGISTER_COUNT.get(data_type, 1)
    count = visitor.limit or needed
    if count < needed:
        raise ValueError(f"limit {count} is too small for {data_type} ({needed} registers)")
    return Layout(visitor.register_type, visitor.offset, count, data_type, visitor, note)


def _float_form(name: str, visitor: ModbusVisitor, explicit: bool) -> tuple[str, str | None]:
    """KubeEdge's ``float``/``double`` as a wire form (by limit), and a note if that was a choice."""
    limit = visitor.limit
    if limit is None:
        limit = DEFAULT_FLOAT_LIMIT[name]
        form = FLOAT_FORMS[limit]
        if not explicit:  # a FLOAT/DOUBLE property without dataType: our documented default
            return form, None
        return form, (
            f"dataType {name} without limit read as {_FORM_NAMES[form]} in {limit} registers"
            " (kubeedge/mappers-go convention); set limit: 1 to read one unsigned 16-bit register"
            f" x scale (KubeEdge mapper-framework convention), or limit: {limit} to keep this reading"
        )
    check_float_limit(name, limit, explicit)
    form = FLOAT_FORMS[limit]
    if form == "uint16":
        swapped = ", bytes swapped (isSwap)," if visitor.is_swap else ""
        ieee = DEFAULT_FLOAT_LIMIT[name]
        return form, (
            f"dataType {name} with limit 1 read as one unsigned 16-bit register{swapped}"
            f"{_scaling(visitor)} (KubeEdge mapper-framework convention);"
            f" use limit {ieee} for {_FORM_NAMES[FLOAT_FORMS[ieee]]}"
        )
    if limit != DEFAULT_FLOAT_LIMIT[name]:
        return form, f"dataType {name} with limit {limit} read as {_FORM_NAMES[form]} in {limit} registers"
    return form, None


def _scaling(visitor: ModbusVisitor) -> str:
    text = f" x scale {visitor.scale:g}"
    if visitor.value_offset:
        text += f" + valueOffset {visitor.value_offset:g}"
    return text


def _to_bytes(registers: list[int], visitor: ModbusVisitor) -> bytes:
    if visitor.is_register_swap:
        registers = registers[::-1]
    data = b"".join(struct.pack(">H", r & 0xFFFF) for r in registers)
    if visitor.is_swap:
        data = b"".join(data[i + 1 : i + 2] + data[i : i + 1] for i in range(0, len(data), 2))
    return data


def _from_bytes(data: bytes, visitor: ModbusVisitor) -> list[int]:
    if len(data) % 2:
        data += b"\x00"
    if visitor.is_swap:
        data = b"".join(data[i + 1 : i + 2] + data[i : i + 1] for i in range(0, len(data), 2))
    registers = [struct.unpack(">H", data[i : i + 2])[0] for i in range(0, len(data), 2)]
    return registers[::-1] if visitor.is_register_swap else registers


def decode(where: Layout, words: list[int] | list[bool]) -> Any:
    """The value of a property from what its block read (registers, or bits for coils)."""
    visitor = where.visitor
    if where.is_bits:
        bit = bool(words[0])
        return bit if where.data_type == "bool" else _scaled(int(bit), visitor)
    registers = [int(w) for w in words]
    if visitor.bit is not None:
        return bool((registers[0] >> visitor.bit) & 1)
    if where.data_type == "bool":
        return registers[0] != 0
    if where.data_type == "string":
        return _to_bytes(registers, visitor).rstrip(b"\x00").decode(visitor.encoding, errors="replace")
    if where.data_type == "bytes":
        return _to_bytes(registers, visitor)
    size = REGISTER_COUNT[where.data_type]
    raw = struct.unpack(_STRUCT[where.data_type], _to_bytes(registers[:size], visitor))[0]
    return _scaled(raw, visitor)


def encode(where: Layout, value: Any) -> list[int] | bool:
    """Registers (or a coil state) that make the device hold ``value`` (the inverse of decode).

    ``ValueError`` when the value cannot be written as this data type (out of its range).
    """
    visitor = where.visitor
    if where.is_bits:
        return _bit(where, value)
    if where.data_type == "bool":  # a whole register holding 0 or 1
        return [1 if value else 0] + [0] * (where.count - 1)
    if where.data_type == "bytes":
        # exactly the registers' bytes: a shorter value, padded, would never read back as written
        if not isinstance(value, bytes | bytearray) or len(value) != where.count * 2:
            raise ValueError(
                f"needs exactly {where.count * 2} bytes ({where.count} registers), "
                f"got {len(value) if isinstance(value, bytes | bytearray) else type(value).__name__}"
            )
        return _from_bytes(bytes(value), visitor)
    if where.data_type == "string":
        data = str(value).encode(visitor.encoding)
        capacity = where.count * 2
        if len(data) > capacity:
            raise ValueError(f"{len(data)} bytes do not fit in {where.count} registers")
        return _from_bytes(data.ljust(capacity, b"\x00"), visitor)
    fmt = _STRUCT[where.data_type]
    raw: int | float
    if where.data_type in _INT_RANGES:
        raw = _unscaled(value, visitor)
        low, high = _INT_RANGES[where.data_type]
        if not low <= raw <= high:
            after = f"; {raw} after scale {visitor.scale:g}" if _is_scaled(visitor) else ""
            if visitor.value_offset:
                after += f" and valueOffset {visitor.value_offset:g}"
            raise ValueError(f"{value!r} does not fit in {where.data_type} ({low}..{high}){after}")
    else:
        raw = (float(value) - visitor.value_offset) / visitor.scale if _is_scaled(visitor) else value
    try:
        data = struct.pack(fmt, raw)
    except (struct.error, OverflowError):
        raise ValueError(f"{value!r} does not fit in {where.data_type}") from None
    registers = _from_bytes(data, visitor)
    return registers + [0] * (where.count - len(registers))


_INT_RANGES = {
    name: (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if name.startswith("int") else (0, 2**bits - 1)
    for name, bits in (
        ("int16", 16),
        ("uint16", 16),
        ("int32", 32),
        ("uint32", 32),
        ("int64", 64),
        ("uint64", 64),
    )
}


def _is_scaled(visitor: ModbusVisitor) -> bool:
    return bool(visitor.scale != 1 or visitor.value_offset != 0)


def _scaled(raw: int | float, visitor: ModbusVisitor) -> int | float:
    """raw x scale + valueOffset; an integer in decimal, so a reading shows the digits the scale has."""
    if not _is_scaled(visitor):
        return raw
    if isinstance(raw, int):
        return float(Decimal(raw) * _setting(visitor.scale) + _setting(visitor.value_offset))
    return float(raw * visitor.scale + visitor.value_offset)


def _unscaled(value: Any, visitor: ModbusVisitor) -> int:
    """The integer a register must hold to read as ``value``: (value - valueOffset) / scale, in
    decimal (0.7 / 0.1 is 7, not 6.999999999999999), rounded to the nearest (halves to even)."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int) and not _is_scaled(visitor):
        return value  # exact, however large (a uint64 does not fit a float)
    exact = (_decimal(value) - _setting(visitor.value_offset)) / _setting(visitor.scale)
    return round(exact)


@functools.lru_cache(maxsize=1024)
def _setting(number: float) -> Decimal:
    """A scale or valueOffset as a decimal (cached: read at every reading of every property)."""
    return Decimal(repr(number))


def _decimal(value: Any) -> Decimal:
    """A number as the decimal it is written as (0.1 is 0.1, not 0.1000000000000000055...)."""
    if isinstance(value, int):
        return Decimal(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a number the device can hold")
    return Decimal(repr(number))


def _bit(where: Layout, value: Any) -> bool:
    """The state of a coil for ``value``: true/false, or a number that is 0 or 1 (after scale,
    for KubeEdge's float and double); anything else would read back as something else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    raw = _unscaled(value, where.visitor) if where.data_type != "bool" else _decimal(value)
    if raw not in (0, 1):
        after = f" ({raw} after scale {where.visitor.scale:g})" if where.data_type != "bool" else ""
        raise ValueError(f"a {where.register} holds 0 or 1 (false or true), not {value!r}{after}")
    return bool(raw)
