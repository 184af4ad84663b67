"""Registers to values and back: data types, byte order, word order, scale and offset.

Registers are 16-bit words; a multi-register value is big-endian by default (high word first,
high byte first), as the Modbus specification and most devices lay it out. ``isRegisterSwap``
reverses the word order (CDAB for a 32-bit value), ``isSwap`` swaps the bytes within each word
(BADC); both together give DCBA.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from kubeedge_mapper_modbus.config import BIT_REGISTERS, REGISTER_COUNT, ModbusVisitor

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
    visitor: ModbusVisitor

    @property
    def is_bits(self) -> bool:
        return self.register in BIT_REGISTERS


def layout(visitor: ModbusVisitor, twin_type: str) -> Layout:
    """The data type and register count of a property; the DeviceModel type fills what the
    visitor leaves open (an INT property without dataType is int16, int32 or int64 by limit)."""
    if visitor.register_type in BIT_REGISTERS:
        return Layout(visitor.register_type, visitor.offset, 1, "bool", visitor)
    data_type = visitor.data_type
    if visitor.bit is not None:
        data_type = "bool"
    elif data_type is None:
        data_type = {
            "int": {1: "int16", 2: "int32", 4: "int64"}.get(visitor.limit or 1, "int16"),
            "float": "float32",
            "double": "float64",
            "boolean": "bool",
            "string": "string",
            "bytes": "bytes",
        }.get(twin_type, "uint16")
    if (data_type == "bytes") != (twin_type == "bytes"):
        raise ValueError(
            "dataType bytes goes with a BYTES property, and a BYTES property with dataType bytes"
        )
    needed = REGISTER_COUNT.get(data_type, 1)
    count = visitor.limit or needed
    if count < needed:
        raise ValueError(f"limit {count} is too small for {data_type} ({needed} registers)")
    return Layout(visitor.register_type, visitor.offset, count, data_type, visitor)


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
        return bool(words[0])
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
    if visitor.scale == 1 and visitor.value_offset == 0:
        return raw
    return raw * visitor.scale + visitor.value_offset


def encode(where: Layout, value: Any) -> list[int] | bool:
    """Registers (or a coil state) that make the device hold ``value`` (the inverse of decode).

    ``ValueError`` when the value cannot be written as this data type (out of its range).
    """
    visitor = where.visitor
    if where.is_bits:
        return bool(value)
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
    raw = (
        (float(value) - visitor.value_offset) / visitor.scale
        if (visitor.scale != 1 or visitor.value_offset)
        else value
    )
    fmt = _STRUCT[where.data_type]
    if where.data_type.startswith(("int", "uint")):
        if isinstance(raw, float):
            if not math.isfinite(raw):
                raise ValueError(f"{value!r} is not a number the device can hold")
            raw = round(raw)
        raw = int(raw)
    try:
        data = struct.pack(fmt, raw)
    except (struct.error, OverflowError):
        raise ValueError(f"{value!r} does not fit in {where.data_type}") from None
    registers = _from_bytes(data, visitor)
    return registers + [0] * (where.count - len(registers))
