"""From an MQTT payload to a property's value, and from a desired value to a command payload.

A payload that cannot give the value is a :class:`BadPayload` of one of four kinds, each counted
by the driver and shown on the property: ``oversized`` (larger than ``maxPayload``), ``not JSON``
(or not UTF-8), ``missing`` (nothing at ``path``) and ``wrong type`` (a value that is not of the
property's type). The payload is quoted, cut at 80 characters, so the error says what came.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import orjson

from kubeedge_mapper_mqtt.config import render

Path = tuple[str | int, ...]
TRUE_WORDS = frozenset({"true", "on", "1", "yes"})
FALSE_WORDS = frozenset({"false", "off", "0", "no"})
QUOTE_LIMIT = 80


class BadPayload(ValueError):
    """A payload that does not hold the property's value; ``kind`` names which rule it broke."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {message}")


def quote(payload: bytes | str) -> str:
    """At most 80 characters of a payload, as a repr."""
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    return repr(text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT] + "…")


def parse_path(text: str) -> Path:
    """``/a/0/b`` (RFC 6901 JSON pointer, ``~1`` and ``~0`` escapes) or ``a.0.b`` (dotted);
    numeric segments also index lists. ``ValueError`` for an empty segment."""
    if text.startswith("/"):
        raw = [part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")]
    elif text == "":
        raise ValueError("path is empty; leave it out to take the whole payload")
    else:
        raw = text.split(".")
        if any(part == "" for part in raw):
            raise ValueError(f"{text!r}: a dotted path has an empty segment")
    return tuple(int(part) if part.isdigit() else part for part in raw)


def key_of(path: Path | None, fallback: str) -> str:
    """The JSON key a path ends in (``{key}`` in templates): the property's name without a path."""
    return str(path[-1]) if path else fallback


def parse_json(payload: bytes, max_payload: int) -> Any:
    check_size(payload, max_payload)
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise BadPayload("not JSON", quote(payload)) from None


def check_size(payload: bytes, max_payload: int) -> None:
    if len(payload) > max_payload:
        raise BadPayload("oversized", f"{len(payload)} bytes, more than maxPayload {max_payload}")


def lookup(document: Any, path: Path, text: str) -> Any:
    """The value at ``path``; ``BadPayload('missing')`` when there is none."""
    node = document
    for part in path:
        if isinstance(node, dict) and str(part) in node:
            node = node[str(part)]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            raise BadPayload("missing", f"no value at {text!r} in {quote(orjson.dumps(document))}")
    return node


def coerce(
    kind: str,
    value: Any,
    scale: float = 1.0,
    payload_on: str | None = None,
    payload_off: str | None = None,
) -> Any:
    """A JSON value (or the raw payload's text) as a value of the twin type ``kind``;
    ``BadPayload('wrong type')`` when it is not one."""
    if kind in ("int", "float", "double"):
        number = _number(value)
        if number is None:
            raise BadPayload("wrong type", f"expected a number, got {quote(_json(value))}")
        number *= scale
        if kind == "int":
            if isinstance(number, float):
                if not number.is_integer():
                    raise BadPayload("wrong type", f"expected a whole number, got {quote(_json(value))}")
                number = int(number)
            return number
        return float(number)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if word is not None:
            if (payload_on is not None and word == payload_on.lower()) or word in TRUE_WORDS:
                return True
            if (payload_off is not None and word == payload_off.lower()) or word in FALSE_WORDS:
                return False
        raise BadPayload("wrong type", f"expected a boolean, got {quote(_json(value))}")
    if kind == "bytes":
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                pass
        raise BadPayload("wrong type", f"expected base64 bytes, got {quote(_json(value))}")
    # string
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        raise BadPayload("wrong type", f"expected text, got {quote(_json(value))}")
    return _json(value)


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if not (isinstance(value, float) and not math.isfinite(value)) else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return orjson.dumps(value).decode()


def decode_raw(kind: str, payload: bytes, max_payload: int, **options: Any) -> Any:
    """The value of a payload that is the value itself (no ``path``)."""
    check_size(payload, max_payload)
    if kind == "bytes":
        return payload
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadPayload("not UTF-8", quote(payload)) from None
    return coerce(kind, text, **options)


def encode_command(
    template: str,
    kind: str,
    value: Any,
    fields: dict[str, str],
    scale: float = 1.0,
    payload_on: str | None = None,
    payload_off: str | None = None,
) -> bytes:
    """The payload that asks the device to take ``value``: ``template`` with ``{value}`` (text)
    and ``{json}`` (JSON) filled in. A BYTES value with the template ``{value}`` is sent as is."""
    if kind in ("int", "float", "double") and scale != 1.0:
        value = value / scale
        if kind == "int":
            value = round(value)
    if kind == "bytes":
        if template == "{value}":
            return bytes(value)
        text = base64.b64encode(bytes(value)).decode("ascii")
        as_json = orjson.dumps(text).decode()
    elif kind == "boolean":
        word = payload_on if value else payload_off
        if word is None:
            text = "true" if value else "false"
            as_json = text
        else:
            text = word
            as_json = orjson.dumps(word).decode()
    elif isinstance(value, float):
        text = repr(int(value)) if value.is_integer() and kind == "int" else repr(value)
        as_json = text
    elif isinstance(value, int):
        text = as_json = str(value)
    else:
        text = str(value)
        as_json = orjson.dumps(text).decode()
    return str(render(template, {**fields, "value": text, "json": as_json})).encode()
