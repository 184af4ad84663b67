"""Typed twin values: how each DeviceModel type is written as a twin value string and read back.

On the bus every value is a string, as in KubeEdge, so a KubeEdge mapper and this edge core
understand each other. This module adds what KubeEdge lacks (docs/wire.md, "Typed values"):
``double`` and ``bytes`` (base64) types, and values with spaces, quotes or JSON in them.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from typing import Any

MODEL_TO_TWIN_TYPE = {
    "INT": "int",
    "FLOAT": "float",
    "DOUBLE": "double",
    "STRING": "string",
    "BOOLEAN": "boolean",
    "BYTES": "bytes",
    "STREAM": "stream",
}
TWIN_TYPES = frozenset({*MODEL_TO_TWIN_TYPE.values(), "integer", "deleted"})
NUMERIC_TWIN_TYPES = frozenset({"int", "integer", "float", "double"})
MAX_VALUE_LENGTH = 64 * 1024
"""Longest twin value accepted (KubeEdge: 512); larger payloads belong in a push method."""

_INT = re.compile(r"^[+-]?[0-9]+$")
_FLOAT = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_SPECIAL_FLOATS = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}
_INT64 = (-(2**63), 2**63 - 1)

Value = int | float | bool | str | bytes


def twin_type(model_type: str | None) -> str:
    """The twin ``metadata.type`` for a DeviceModel property type (``STRING`` when absent)."""
    return MODEL_TO_TWIN_TYPE.get((model_type or "STRING").upper(), "string")


def normalize_type(name: str | None) -> str:
    """A twin type name as stored: lower case, ``integer`` folded into ``int``, absent = string."""
    lowered = (name or "string").lower()
    return "int" if lowered == "integer" else lowered


def parse_value(type_name: str | None, text: str) -> Value:
    """The typed value of a twin value string; ``ValueError`` says why it does not fit the type."""
    kind = normalize_type(type_name)
    if len(text) > MAX_VALUE_LENGTH:
        raise ValueError(f"value is {len(text)} characters long; the limit is {MAX_VALUE_LENGTH}")
    if kind == "int":
        if not _INT.match(text):
            raise ValueError(f"{text!r} is not an integer")
        number = int(text)
        if not _INT64[0] <= number <= _INT64[1]:
            raise ValueError(f"{text} does not fit in a signed 64-bit integer")
        return number
    if kind in ("float", "double"):
        special = _SPECIAL_FLOATS.get(text.lower())
        if special is not None:
            return special
        if not _FLOAT.match(text):
            raise ValueError(f"{text!r} is not a number")
        return float(text)
    if kind == "boolean":
        if text not in ("true", "false"):
            raise ValueError(f"{text!r} is not a boolean (true or false)")
        return text == "true"
    if kind == "bytes":
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{_short(text)!r} is not base64") from None
    if kind in ("string", "stream", "deleted"):
        return text
    raise ValueError(f"type {type_name!r} is not one of {', '.join(sorted(TWIN_TYPES))}")


def format_value(type_name: str | None, value: Any) -> str:
    """The twin value string for a typed value (the inverse of :func:`parse_value`)."""
    kind = normalize_type(type_name)
    if kind == "boolean":
        if isinstance(value, str):
            return "true" if value.lower() in ("true", "1", "on", "yes") else "false"
        return "true" if value else "false"
    if kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{value!r} is not a whole number")
            value = int(value)
        return str(int(value))
    if kind == "float":
        return _format_float32(float(value))
    if kind == "double":
        return _format_double(float(value))
    if kind == "bytes":
        if isinstance(value, str):
            value = value.encode()
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def values_equal(type_name: str, a: str | None, b: str | None) -> bool:
    """Whether two twin values mean the same (``21.5`` and ``21.50``; float as 32-bit)."""
    if a == b:
        return True
    if a is None or b is None:
        return False
    try:
        x, y = parse_value(type_name, a), parse_value(type_name, b)
    except ValueError:
        return False
    if isinstance(x, float) and isinstance(y, float):
        if math.isnan(x) and math.isnan(y):
            return True
        if type_name == "float":
            try:
                return bool(struct.pack("<f", x) == struct.pack("<f", y))
            except OverflowError:
                return False
    return x == y


def check_range(value: Value, minimum: str | None, maximum: str | None) -> None:
    """``ValueError`` if a numeric value lies outside the model's ``minimum``/``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    low, high = _bound(minimum), _bound(maximum)
    if low is not None and value < low:
        raise ValueError(f"{value} is below the minimum {minimum}")
    if high is not None and value > high:
        raise ValueError(f"{value} is above the maximum {maximum}")


def _bound(text: str | None) -> float | None:
    """A model bound as a number; an unparsable bound is the model's problem, reported there."""
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _format_double(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number == 0 and math.copysign(1.0, number) < 0:
        return "-0"
    if number.is_integer() and abs(number) < 1e16:
        return str(int(number))
    return repr(number)


def _format_float32(number: float) -> str:
    """Shortest decimal that reads back as the same 32-bit float (21.5, not 21.500000953...)."""
    if math.isnan(number) or math.isinf(number) or abs(number) > 3.4028234663852886e38:
        return _format_double(number)
    (single,) = struct.unpack("<f", struct.pack("<f", number))
    for digits in range(1, 10):
        text = f"{single:.{digits}g}"
        try:
            if struct.unpack("<f", struct.pack("<f", float(text)))[0] == single:
                return _format_double(float(text))
        except OverflowError:  # rounding up near the largest float32 leaves its range
            continue
    return _format_double(single)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
