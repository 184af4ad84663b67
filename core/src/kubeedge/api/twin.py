"""The JSON messages of KubeEdge's edge MQTT bus (device twin, state, membership).

Field names, nesting and omissions follow KubeEdge's ``dttype`` Go structs, so a KubeEdge Go
mapper's messages parse unchanged and ours parse in a KubeEdge mapper. Differences, all of them
additions (docs/wire.md):

* a twin value may be sent as a JSON number or boolean; it is kept as its string form;
* values are not limited to KubeEdge's ``[A-Za-z0-9-_.,:/@#]{1,512}`` (see :mod:`kubeedge.api.values`);
* unknown fields are ignored, as Go's ``encoding/json`` ignores them.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from types import NoneType
from typing import Annotated, Any

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from kubeedge.errors import WireError


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch (UTC), as KubeEdge timestamps are."""
    return time.time_ns() // 1_000_000


def new_event_id() -> str:
    return str(uuid.uuid4())


def _value_as_string(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return value


WireValue = Annotated[str, BeforeValidator(_value_as_string)]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    def to_json(self) -> bytes:
        """Compact JSON with absent (``None``) fields left out, as Go's ``omitempty`` does."""
        return self.model_dump_json(exclude_none=True, by_alias=True).encode()


INT64_MAX = 2**63 - 1
Timestamp = Annotated[int, Field(ge=0, le=INT64_MAX)]


class WireExtensible(WireModel):
    """A part that keeps fields it does not know, if they are plain values (kept and echoed back,
    so a nested object or a 100-digit number must not get in)."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _plain_extras(self) -> WireExtensible:
        for key, value in (self.model_extra or {}).items():
            plain = isinstance(value, str | bool | float | NoneType) or (
                isinstance(value, int) and -INT64_MAX - 1 <= value <= INT64_MAX
            )
            if not plain or (isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"{key}: only text, booleans and 64-bit numbers are kept, got {value!r:.40}")
        return self


class ValueMetadata(WireExtensible):
    timestamp: Timestamp | None = None
    """When the value was set, ms since the epoch."""


class TwinValue(WireModel):
    value: WireValue | None = None
    metadata: ValueMetadata | None = None


class TwinVersion(WireModel):
    cloud: int = 0
    edge: int = 0


class TypeMetadata(WireExtensible):
    type: str | None = None
    """Value type: int, float, double, boolean, string, bytes, stream (or deleted)."""


class MsgTwin(WireModel):
    """One property of a device twin."""

    expected: TwinValue | None = None
    actual: TwinValue | None = None
    optional: bool | None = None
    metadata: TypeMetadata | None = None
    expected_version: TwinVersion | None = None
    actual_version: TwinVersion | None = None


class BaseMessage(WireModel):
    event_id: str = ""
    timestamp: Timestamp = 0


class TwinUpdate(BaseMessage):
    """``.../twin/update`` (in) and ``.../twin/update/result`` / ``twin/get/result`` (out).

    A ``None`` twin asks for the property to be deleted (and reports that it was).
    """

    twin: dict[str, MsgTwin | None]

    def to_json(self) -> bytes:
        # ``exclude_none`` would drop the ``"name": null`` entries that mean "deleted".
        body = self.model_dump(exclude_none=True)
        body["twin"] = {
            name: None if twin is None else twin.model_dump(exclude_none=True)
            for name, twin in self.twin.items()
        }
        return _dumps(body)


class TwinDelta(BaseMessage):
    """``.../twin/update/delta``: the properties whose expected value differs from actual."""

    twin: dict[str, MsgTwin] = Field(default_factory=dict)
    delta: dict[str, str] = Field(default_factory=dict)


class TwinDocumentEntry(WireModel):
    last: MsgTwin | None = None
    current: MsgTwin | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "last": None if self.last is None else self.last.model_dump(exclude_none=True),
            "current": None if self.current is None else self.current.model_dump(exclude_none=True),
        }


class TwinDocument(BaseMessage):
    """``.../twin/update/document``: each changed property before and after the update."""

    twin: dict[str, TwinDocumentEntry] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        body = self.model_dump(exclude_none=True)
        body["twin"] = {name: entry.to_dict() for name, entry in self.twin.items()}
        return _dumps(body)


class ErrorResult(BaseMessage):
    """An error answer on any ``.../result`` topic."""

    code: int | None = None
    reason: str | None = None


class MsgAttr(WireModel):
    value: str = ""
    optional: bool | None = None
    metadata: TypeMetadata | None = None


class EdgeDevice(WireModel):
    """A device as membership messages list it (``id`` is ``namespace/name``)."""

    id: str | None = None
    name: str | None = None
    description: str | None = None
    state: str | None = None
    last_online: str | None = None
    attributes: dict[str, MsgAttr] | None = None
    twin: dict[str, MsgTwin] | None = None


class MembershipUpdate(BaseMessage):
    """``$hw/events/node/{node}/membership/updated``."""

    added_devices: list[EdgeDevice] | None = None
    removed_devices: list[EdgeDevice] | None = None


class MembershipGetResult(BaseMessage):
    """``$hw/events/node/{node}/membership/get/result``."""

    devices: list[EdgeDevice] = Field(default_factory=list)


class DeviceStateUpdate(BaseMessage):
    """``.../state/update``; KubeEdge's DMI path writes the key as ``State``, so both are read."""

    state: str | None = Field(default=None, validation_alias=AliasChoices("state", "State"))
    attributes: dict[str, MsgAttr] | None = None
    reason: str | None = None
    """Why the device is in this state (our extension; KubeEdge ignores it, its mappers omit it)."""


class DeviceCloudMsg(WireModel):
    name: str | None = None
    state: str | None = None
    last_online_time: str | None = Field(default=None, alias="lastOnlineTime")


class DeviceStateResult(BaseMessage):
    """``.../state/update/result``."""

    device: DeviceCloudMsg


DEVICE_STATES = frozenset({"online", "offline", "ok", "unknown", "unhealthy"})
"""States the edge core accepts (compared lower-cased), as KubeEdge's."""


MAX_JSON_DEPTH = 200
"""Nesting depth past which a payload is refused (pydantic-core's JSON parser stops there, a fixed
limit; no recursive parser ever reads bus input). Our messages nest 6 levels at most."""


def parse(model: type[Any], payload: bytes | str) -> Any:
    """Parse a bus payload into ``model``; a :class:`WireError` (code 400) says what is wrong."""
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        raise WireError(_describe(exc)) from None


EVENT_ID_SCAN = 64 * 1024
"""How much of a payload :func:`find_event_id` looks at (the event id comes first in practice)."""
_EVENT_ID = re.compile(rb'"event_id"\s*:\s*("[^"\\\x00-\x1f]{0,1024}(?:\\.[^"\\\x00-\x1f]{0,1024}){0,64}")')


def find_event_id(payload: bytes) -> str:
    """The sender's ``event_id`` in a payload that could not be parsed, or ``""``.

    A bounded scan, never a parse: a regular expression over the first :data:`EVENT_ID_SCAN` bytes
    finds the first ``"event_id": "..."`` string, so a payload that is too large, nested too deep
    or not JSON at all still gets its error answered with the sender's id. An id that is not
    valid text (a lone surrogate escape) cannot be echoed and gives ``""``.
    """
    match = _EVENT_ID.search(payload, 0, EVENT_ID_SCAN)
    if match is None:
        return ""
    try:
        event_id = orjson.loads(match.group(1))
    except orjson.JSONDecodeError:
        return ""
    return event_id if isinstance(event_id, str) else ""


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "payload"
        if error["type"] == "json_invalid" and "recursion limit" in str(error["ctx"].get("error", "")):
            # pydantic-core's JSON parser stops at a fixed depth instead of recursing on.
            parts.append(f"payload is nested deeper than the {MAX_JSON_DEPTH} levels JSON may have here")
        elif error["type"] == "json_invalid":
            parts.append(f"payload is not valid JSON: {error['ctx'].get('error', error['msg'])}")
        elif error["type"] == "missing":
            parts.append(f"key {where} does not exist")
        else:
            parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
