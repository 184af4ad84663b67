"""Bluetooth LE configData: how a device is found and connected, and how each value is carried.

Protocol ``configData`` names the device (``macAddress``, or a match on its advertised ``name`` or
``serviceUUID``), the ``adapter`` it is reached through, the ``connectTimeout``, whether the
connection is kept (``stayConnected``: needed for notifications) or opened for each poll, and
``pair``. Visitor ``configData`` names a characteristic (``serviceUUID``, ``characteristicUUID``)
or an advertisement's service data / manufacturer data, the ``operation``, and how bytes become a
value: a struct ``format`` (or ``dataType`` with ``byteOrder``), a byte range, ``scale`` and
``offset``, or KubeEdge v1alpha2's ``dataConverter``; for writes the same rules backwards or a
``dataWrite`` table. Mapper-wide settings choose the bleak backend and each adapter's connection
slots.
"""

from __future__ import annotations

import re
import struct
from enum import StrEnum
from typing import Any, Literal

from bleak.uuids import normalize_uuid_str
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

DEFAULT_ADAPTER = "hci0"
MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
DATA_TYPES: dict[str, str] = {
    "int8": "b",
    "uint8": "B",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}
"""``dataType`` names and the struct code each stands for."""
ORDERS = {"little": "<", "big": ">"}


def uuid(value: str) -> str:
    """A UUID as bleak writes it (128-bit, lower case); 16- and 32-bit short forms (``2a6e``,
    ``0x2A6E``) are expanded with the Bluetooth base UUID."""
    text = value.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if re.fullmatch(r"[0-9a-f]{4}|[0-9a-f]{8}", text) or re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text
    ):
        return normalize_uuid_str(text)
    raise ValueError(f"{value!r} is not a Bluetooth UUID (2a6e, 0x2A6E or a 128-bit UUID)")


class _Config(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Operation(StrEnum):
    READ = "read"
    NOTIFY = "notify"
    WRITE = "write"
    WRITE_WITHOUT_RESPONSE = "write-without-response"
    ADVERTISEMENT = "advertisement"


class BluetoothConfig(_Config):
    """A device's ``spec.protocol.configData``. One of ``macAddress``, ``name``, ``serviceUUID``
    says which device it is; with several, a device must match them all."""

    mac_address: str | None = None
    """The device's address, ``A4:C1:38:5E:21:07`` (KubeEdge v1alpha2's key)."""
    name: str | None = None
    """Match the advertised local name exactly (the first device seen with it is used)."""
    service_uuid: str | None = Field(default=None, alias="serviceUUID")
    """Match a service UUID in the advertisement."""
    adapter: str = DEFAULT_ADAPTER
    """The Bluetooth adapter (``hci0``); its connection slots are shared by its devices."""
    connect_timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds to find the device and connect, including the wait for a free slot."""
    stay_connected: bool | None = None
    """Keep the connection between polls (true), or connect for each poll and let the slot go
    (false). Default: stay connected when a property is notified, else connect per poll."""
    pair: bool = False
    """Pair (bond) when connecting, where the platform allows (BlueZ, Windows)."""
    advertisement_timeout: float = Field(default=60.0, gt=0)
    """Seconds without an advertisement after which an advertisement-only device is offline."""

    @field_validator("mac_address")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        if value is not None and not MAC.match(value):
            raise ValueError(f"{value!r} is not a Bluetooth address (six hex pairs: A4:C1:38:5E:21:07)")
        return value.upper() if value is not None else None

    @field_validator("service_uuid")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        return uuid(value) if value is not None else None

    @model_validator(mode="after")
    def _identified(self) -> BluetoothConfig:
        if self.mac_address is None and self.name is None and self.service_uuid is None:
            raise ValueError("say which device: macAddress, or a name or serviceUUID to match")
        return self

    def describe(self) -> str:
        parts = [self.mac_address or "", f"name {self.name!r}" if self.name else ""]
        parts.append(f"service {self.service_uuid}" if self.service_uuid else "")
        return " ".join(p for p in parts if p)


class ArithmeticOperation(_Config):
    """One step of a v1alpha2 ``dataConverter.orderOfOperations``."""

    operation_type: Literal["Add", "Subtract", "Multiply", "Divide"]
    operation_value: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _no_zero_division(self) -> ArithmeticOperation:
        if self.operation_type == "Divide" and self.operation_value == 0:
            raise ValueError("operationValue: Divide by 0")
        return self


class DataConverter(_Config):
    """KubeEdge v1alpha2's read conversion: bytes ``startIndex`` to ``endIndex`` (both included;
    start after end takes them backwards, the little-endian case) as one unsigned integer, the
    first byte taken most significant, then ``shiftLeft`` or ``shiftRight`` bits, then the
    arithmetic ``orderOfOperations`` in order."""

    start_index: int = Field(ge=0)
    end_index: int = Field(ge=0)
    shift_left: int = Field(default=0, ge=0, le=63)
    shift_right: int = Field(default=0, ge=0, le=63)
    order_of_operations: list[ArithmeticOperation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_shift(self) -> DataConverter:
        if self.shift_left and self.shift_right:
            raise ValueError("shiftLeft and shiftRight: give one of them")
        if abs(self.start_index - self.end_index) >= 8:
            raise ValueError("startIndex..endIndex: at most 8 bytes make one value")
        return self


def _bytes_literal(value: Any) -> bytes:
    """``[1, 2]`` (KubeEdge v1alpha2's byte list) or hex text (``"0102"``, ``"01 02"``, ``"0x01"``)."""
    if isinstance(value, list):
        if not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value):
            raise ValueError(f"{value!r}: a byte list holds integers 0-255")
        return bytes(value)
    if isinstance(value, str):
        text = value.replace(" ", "").lower().removeprefix("0x")
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise ValueError(f'{value!r} is not hex bytes ("0102" or [1, 2])') from None
    raise ValueError(f'{value!r}: give bytes as a list [1, 2] or hex text "0102"')


class BluetoothVisitor(_Config):
    """A property's ``visitors.configData``."""

    characteristic_uuid: str | None = Field(default=None, alias="characteristicUUID")
    """The GATT characteristic (``2a6e`` or a 128-bit UUID)."""
    service_uuid: str | None = Field(default=None, alias="serviceUUID")
    """The GATT service holding it (needed when a characteristic UUID appears in two services)."""
    operation: Operation | None = None
    """``read`` (polled), ``notify`` (pushed), ``write``, ``write-without-response``, or
    ``advertisement`` (from advertising data, no connection). Default: ``notify`` with
    ``notify: true``, ``advertisement`` with ``serviceDataUUID``/``manufacturerId``, else ``read``;
    a writable property is read with ``read`` and written with ``write`` unless it says
    ``write-without-response``."""
    notify: bool = False
    """The same as ``operation: notify``."""
    service_data_uuid: str | None = Field(default=None, alias="serviceDataUUID")
    """Advertisement: the service data of this UUID (BTHome is ``fcd2``)."""
    manufacturer_id: int | None = Field(default=None, ge=0, le=0xFFFF)
    """Advertisement: the manufacturer-specific data of this company identifier."""
    format: str | None = None
    """A struct format for the value (``<h``: little-endian int16); the first field is the value."""
    data_type: str | None = None
    """Instead of ``format``: ``int8``..``uint64``, ``float32``, ``float64``, with ``byteOrder``."""
    byte_order: Literal["little", "big"] = "little"
    """The byte order of ``dataType`` (BLE's own is little-endian)."""
    byte_offset: int = Field(default=0, ge=0)
    """Where the value starts in the characteristic's bytes."""
    byte_length: int | None = Field(default=None, ge=1)
    """How many bytes it has (strings and bytes; default: to the end)."""
    scale: float = Field(default=1.0, allow_inf_nan=False)
    """reported = raw x scale + offset; a desired value is turned back before it is written."""
    offset: float = Field(default=0.0, allow_inf_nan=False)
    data_converter: DataConverter | None = None
    """KubeEdge v1alpha2's read conversion (instead of format, scale and offset)."""
    data_write: dict[str, bytes] | None = None
    """Desired value -> bytes written (``{"ON": [1], "OFF": [0]}`` or hex text), as v1alpha2."""

    @field_validator("characteristic_uuid", "service_uuid", "service_data_uuid")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        return uuid(value) if value is not None else None

    @field_validator("format")
    @classmethod
    def _format(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            fields = struct.unpack(value, bytes(struct.calcsize(value)))
        except struct.error as exc:
            raise ValueError(f"{value!r} is not a struct format ({exc}); e.g. '<h' or '<f'") from None
        if not fields:
            raise ValueError(f"{value!r} has no field to hold the value")
        return value

    @field_validator("data_type")
    @classmethod
    def _data_type(cls, value: str | None) -> str | None:
        if value is not None and value not in DATA_TYPES:
            raise ValueError(f"{value!r} is not one of {', '.join(DATA_TYPES)}")
        return value

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: float) -> float:
        if value == 0:
            raise ValueError("scale must not be 0")
        return value

    @field_validator("data_write", mode="before")
    @classmethod
    def _data_write(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict) or not value:
            raise ValueError("dataWrite maps desired values to bytes: {ON: [1], OFF: [0]}")
        return {str(key): _bytes_literal(raw) for key, raw in value.items()}

    @model_validator(mode="after")
    def _consistent(self) -> BluetoothVisitor:
        if self.format is not None and self.data_type is not None:
            raise ValueError("format and dataType: give one of them")
        advert = self.service_data_uuid is not None or self.manufacturer_id is not None
        if self.service_data_uuid is not None and self.manufacturer_id is not None:
            raise ValueError("serviceDataUUID and manufacturerId: an advertised value is in one of them")
        if self.operation is None:
            self.operation = (
                Operation.NOTIFY if self.notify else Operation.ADVERTISEMENT if advert else Operation.READ
            )
        elif self.notify and self.operation is not Operation.NOTIFY:
            raise ValueError(f"notify: true contradicts operation {self.operation.value}")
        if self.operation is Operation.ADVERTISEMENT:
            if not advert:
                raise ValueError(
                    "operation advertisement: say where the value is (serviceDataUUID or manufacturerId)"
                )
            if self.characteristic_uuid is not None:
                raise ValueError("characteristicUUID: an advertised value has no characteristic")
        else:
            if advert:
                raise ValueError(
                    "serviceDataUUID/manufacturerId belong to operation advertisement,"
                    f" not {self.operation.value}"
                )
            if self.characteristic_uuid is None:
                raise ValueError(f"operation {self.operation.value}: characteristicUUID is required")
        if self.data_converter is not None and (
            self.format or self.data_type or self.scale != 1 or self.offset
        ):
            raise ValueError(
                "dataConverter: it does the whole conversion; drop format, dataType, scale and offset"
            )
        return self

    @property
    def pushed(self) -> bool:
        return self.operation in (Operation.NOTIFY, Operation.ADVERTISEMENT)

    @property
    def write_response(self) -> bool:
        return self.operation is not Operation.WRITE_WITHOUT_RESPONSE

    def struct_format(self) -> str | None:
        """The struct format of the value (``format``, or ``dataType`` with ``byteOrder``)."""
        if self.format is not None:
            return self.format
        if self.data_type is not None:
            return ORDERS[self.byte_order] + DATA_TYPES[self.data_type]
        return None

    def describe(self) -> str:
        if self.operation is Operation.ADVERTISEMENT:
            if self.service_data_uuid is not None:
                return f"service data {self.service_data_uuid}"
            return f"manufacturer data 0x{self.manufacturer_id:04x}"
        return f"characteristic {self.characteristic_uuid}"


class AdapterSettings(_Config):
    """One adapter's settings (``mappers.bluetooth.adapters.NAME``)."""

    max_connections: int | None = Field(default=None, ge=1, le=64)
    """Simultaneous connections (the adapter's slots; default ``maxConnections``)."""
    transport: str | None = None
    """With ``backend: bumble``: the Bumble HCI transport of this adapter (``usb:0``,
    ``serial:/dev/ttyACM0``, ``tcp-client:127.0.0.1:9001``)."""


class BluetoothSettings(_Config):
    """Mapper-wide settings (``mappers.bluetooth`` in edge.yaml), besides the runtime's own."""

    backend: Literal["bleak", "bumble"] = "bleak"
    """``bleak``: the platform's stack through bleak (BlueZ on Linux). ``bumble``: Google's
    Bumble host stack in the mapper, on an HCI transport per adapter (a USB dongle, a UART, or an
    emulated controller in tests)."""
    max_connections: int = Field(default=3, ge=1, le=64)
    """Simultaneous connections per adapter (BLE adapters have 3 to 7 slots)."""
    adapters: dict[str, AdapterSettings] = Field(default_factory=dict)
    scan_mode: Literal["active", "passive"] = "active"
    """How the adapter scans for advertisements (active asks for scan responses)."""

    @model_validator(mode="after")
    def _transports(self) -> BluetoothSettings:
        if self.backend == "bumble":
            missing = [name for name, adapter in self.adapters.items() if not adapter.transport]
            if not self.adapters or missing:
                raise ValueError(
                    "backend bumble: give each adapter its HCI transport "
                    "(adapters: {hci0: {transport: 'usb:0'}})"
                )
        return self

    def slots(self, adapter: str) -> int:
        own = self.adapters.get(adapter)
        return own.max_connections if own is not None and own.max_connections else self.max_connections
