"""Bytes to values and back, by a property's visitor: struct formats, byte ranges, scale and offset,
KubeEdge v1alpha2's ``dataConverter`` and ``dataWrite`` table.

A value that cannot be decoded raises :class:`DecodeError` with what was received, so the property
shows the reason and the device stays online.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from kubeedge import DeviceError
from kubeedge_mapper_bluetooth.config import BluetoothVisitor, DataConverter


class DecodeError(DeviceError):
    """The bytes received do not make a value by the property's rules."""


def _window(visitor: BluetoothVisitor, data: bytes) -> bytes:
    start = visitor.byte_offset
    end = len(data) if visitor.byte_length is None else start + visitor.byte_length
    if end > len(data) or start > len(data):
        raise DecodeError(f"{len(data)} byte(s) {data.hex()} end before byte {end} the value needs")
    return data[start:end]


def convert_v1alpha2(converter: DataConverter, data: bytes) -> float:
    """KubeEdge v1alpha2's ``dataConverter`` (see :class:`DataConverter`)."""
    last = max(converter.start_index, converter.end_index)
    if last >= len(data):
        raise DecodeError(f"{len(data)} byte(s) {data.hex()}: no byte {last} (startIndex/endIndex)")
    step = 1 if converter.start_index <= converter.end_index else -1
    picked = bytes(data[i] for i in range(converter.start_index, converter.end_index + step, step))
    raw = int.from_bytes(picked, "big")
    if converter.shift_left:
        raw <<= converter.shift_left
    elif converter.shift_right:
        raw >>= converter.shift_right
    result = float(raw)
    for step_op in converter.order_of_operations:
        value = step_op.operation_value
        if step_op.operation_type == "Add":
            result += value
        elif step_op.operation_type == "Subtract":
            result -= value
        elif step_op.operation_type == "Multiply":
            result *= value
        else:
            result /= value
    return result


def decode(visitor: BluetoothVisitor, prop_type: str, data: bytes) -> Any:
    """The value of a property of twin type ``prop_type`` (int, float, double, boolean, string,
    bytes) from the bytes of its characteristic or advertisement."""
    data = bytes(data)
    if visitor.data_converter is not None:
        return _typed(prop_type, convert_v1alpha2(visitor.data_converter, data), data)
    fmt = visitor.struct_format()
    if visitor.data_write is not None and fmt is None:
        # read back through the table: the value whose bytes the device holds
        window = _window(visitor, data)
        for key, raw_bytes in visitor.data_write.items():
            if raw_bytes == window:
                return _typed(prop_type, _table_value(prop_type, key), data)
        raise DecodeError(f"{window.hex()} is none of dataWrite's values ({', '.join(visitor.data_write)})")
    if fmt is not None:
        size = struct.calcsize(fmt)
        if visitor.byte_offset + size > len(data):
            raise DecodeError(
                f"{len(data)} byte(s) {data.hex()}: format {fmt!r} needs {size}"
                f" from byte {visitor.byte_offset}"
            )
        raw: Any = struct.unpack_from(fmt, data, visitor.byte_offset)[0]
        if isinstance(raw, bytes):
            raw = raw.rstrip(b"\0").decode("utf-8", "replace") if prop_type == "string" else raw
    else:
        window = _window(visitor, data)
        if prop_type == "bytes":
            return window
        if prop_type == "string":
            try:
                return window.decode("utf-8").rstrip("\0")
            except UnicodeDecodeError:
                raise DecodeError(f"{window.hex()} is not UTF-8 text") from None
        if prop_type in ("float", "double") and visitor.scale == 1 and visitor.offset == 0:
            raise DecodeError("a float property needs format or dataType (e.g. '<f' or float32)")
        if not window:
            raise DecodeError("no bytes received")
        raw = int.from_bytes(window, "little")  # BLE's byte order for an unsigned integer
    scaled = visitor.scale != 1 or visitor.offset != 0
    if scaled and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = raw * visitor.scale + visitor.offset
    return _typed(prop_type, raw, data)


def _typed(prop_type: str, raw: Any, data: bytes) -> Any:
    if prop_type == "boolean":
        return bool(raw)
    if prop_type == "int":
        if isinstance(raw, float):
            if not math.isfinite(raw):
                raise DecodeError(f"{data.hex()} decodes to {raw}, not an integer")
            return round(raw)
        return int(raw)
    if prop_type in ("float", "double"):
        return float(raw)
    if prop_type == "string":
        return raw if isinstance(raw, str) else str(raw)
    if prop_type == "bytes":
        return raw if isinstance(raw, bytes) else data
    return raw


def encode(visitor: BluetoothVisitor, prop_type: str, value: Any) -> bytes:
    """The bytes written for a desired value (of the property's type, range-checked already)."""
    if visitor.data_write is not None:
        key = _text(value)
        if key not in visitor.data_write:
            raise DeviceError(f"value {key!r} is not in dataWrite ({', '.join(visitor.data_write)})")
        return visitor.data_write[key]
    if visitor.data_converter is not None:
        raise DeviceError("dataConverter only reads: give dataWrite, format or dataType to write")
    fmt = visitor.struct_format()
    if prop_type == "bytes" and fmt is None:
        return bytes(value)
    if prop_type == "string" and fmt is None:
        return str(value).encode("utf-8")
    number: Any = value
    if isinstance(value, bool):
        number = int(value)
    elif isinstance(value, (int, float)) and (visitor.scale != 1 or visitor.offset != 0):
        number = (value - visitor.offset) / visitor.scale
    if fmt is None:
        if prop_type in ("float", "double"):
            raise DeviceError("a float property needs format or dataType to be written")
        length = visitor.byte_length or 1
        integer = round(number)
        try:
            return integer.to_bytes(length, "little")
        except OverflowError:
            raise DeviceError(f"{value!r} does not fit {length} unsigned byte(s)") from None
    code = fmt.lstrip("<>!=@")[-1:]
    if code in "bBhHiIlLqQ":
        number = round(number)
    elif code == "?":
        number = bool(number)
    elif code == "s":
        number = str(value).encode("utf-8")
    try:
        return struct.pack(fmt, number)
    except struct.error as exc:
        raise DeviceError(f"{value!r} does not fit format {fmt!r}: {exc}") from None


def _table_value(prop_type: str, key: str) -> Any:
    if prop_type == "boolean":
        return key.lower() in ("true", "1", "on")
    if prop_type == "int":
        return int(float(key))
    if prop_type in ("float", "double"):
        return float(key)
    return key


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
