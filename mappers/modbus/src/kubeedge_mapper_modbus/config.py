"""Modbus configData, compatible with the manifests KubeEdge users write today.

Protocol ``configData`` keys are KubeEdge's (``communicateMode``, ``ip``, ``port`` as a quoted
string, numeric ``slaveID``, ``serialPort``, ``baudRate``, ``dataBits``, ``parity``,
``stopBits``) plus timeouts, retries and batching limits. Visitor keys are KubeEdge's
(``register``, ``offset``, ``limit``, ``scale``, ``isSwap``, ``isRegisterSwap``, ``dataType``,
``max``, ``min``) plus ``bit``, ``valueOffset`` and ``encoding``. Unknown keys and wrong types
are refused with the field named.
"""

from __future__ import annotations

import codecs
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

RegisterType = Literal["CoilRegister", "DiscreteInputRegister", "InputRegister", "HoldingRegister"]
DataType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bool", "string", "bytes"
]
VARIABLE_TYPES = ("string", "bytes")
"""Data types whose length is ``limit`` registers (one by default)."""
KUBEEDGE_FLOATS = ("float", "double")
"""KubeEdge's number names, kept as written: what they mean on the wire depends on ``limit``."""
FLOAT_FORMS = {1: "uint16", 2: "float32", 4: "float64"}
"""The wire form of ``float``/``double`` by ``limit``. KubeEdge has two conventions: its current
mapper-framework Modbus mapper (and kubeedge/examples' temperature-sensor-demo) reads one
unsigned 16-bit register and multiplies it by ``scale``; kubeedge/mappers-go reads IEEE 754
float32 from 2 registers and float64 from 4. The limit tells them apart."""
DEFAULT_FLOAT_LIMIT = {"float": 2, "double": 4}
"""``float``/``double`` without a limit: IEEE float32 / float64 (mappers-go), as before."""

# KubeEdge's dataType names, and short forms, mapped onto ours (float and double stay as
# written: see FLOAT_FORMS).
DATA_TYPE_ALIASES = {
    "int": None,  # int16, int32 or int64 by `limit`
    "integer": None,
    "boolean": "bool",
    "short": "int16",
    "ushort": "uint16",
    "long": "int64",
}
REGISTER_COUNT = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "int64": 4,
    "uint64": 4,
    "float32": 2,
    "float64": 4,
    "bool": 1,
}
BIT_REGISTERS = ("CoilRegister", "DiscreteInputRegister")
WRITABLE_REGISTERS = ("CoilRegister", "HoldingRegister")


class _Config(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ModbusConfig(_Config):
    """A device's ``spec.protocol.configData``."""

    communicate_mode: Literal["TCP", "RTU", "RTUOverTCP"] = "TCP"
    ip: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    """TCP port; KubeEdge manifests write it as a string ("5502"), which is accepted."""
    slave_id: int = Field(
        default=1, ge=0, le=247, validation_alias=AliasChoices("slaveID", "slaveId", "slave_id")
    )
    serial_port: str | None = None
    baud_rate: int = Field(default=9600, gt=0)
    data_bits: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stop_bits: Literal[1, 2] = 1
    timeout: int = Field(default=1000, gt=0)
    """Milliseconds to wait for an answer."""
    retries: int = Field(default=0, ge=0, le=10)
    """Resends after a timeout (0: a silent device is offline at once)."""
    max_registers: int = Field(default=125, ge=1, le=125)
    """Registers per read request (the protocol allows 125; some devices fewer)."""
    max_bits: int = Field(default=2000, ge=1, le=2000)
    """Coils or discrete inputs per read request."""
    max_gap: int = Field(default=8, ge=0, le=124)
    """Unused addresses a read may span to merge two neighbours into one request."""

    @field_validator("communicate_mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"tcp": "TCP", "rtu": "RTU", "rtuovertcp": "RTUOverTCP"}.get(
                value.lower().replace("-", ""), value
            )
        return value

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @field_validator("parity", mode="before")
    @classmethod
    def _parity(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"none": "N", "even": "E", "odd": "O", "n": "N", "e": "E", "o": "O"}.get(
                value.lower(), value
            )
        return value

    @model_validator(mode="after")
    def _transport(self) -> ModbusConfig:
        if self.communicate_mode in ("TCP", "RTUOverTCP"):
            if not self.ip:
                raise ValueError(f"ip is required when communicateMode is {self.communicate_mode}")
            if self.port is None:
                self.port = 502
        elif not self.serial_port:
            raise ValueError("serialPort is required when communicateMode is RTU")
        return self

    def link(self) -> tuple[Any, ...]:
        """What identifies the physical link: devices with the same link share one connection."""
        if self.communicate_mode == "RTU":
            return ("RTU", self.serial_port, self.baud_rate, self.data_bits, self.parity, self.stop_bits)
        return (self.communicate_mode, self.ip, self.port)


class ModbusVisitor(_Config):
    """A property's ``visitors.configData``."""

    register_type: RegisterType = Field(alias="register")
    """CoilRegister, DiscreteInputRegister, InputRegister or HoldingRegister."""
    offset: int = Field(ge=0, le=65535)
    """Address of the first register (or coil), 0-based as on the wire."""
    limit: int | None = Field(default=None, ge=1, le=125)
    """Registers to read; by default what ``dataType`` needs."""
    data_type: str | None = None
    """int16, uint16, int32, uint32, int64, uint64, float32, float64, bool, string, bytes (the
    registers' raw bytes, a BYTES twin); KubeEdge's int, float, double, boolean and string are
    accepted too (float and double by ``limit``: :data:`FLOAT_FORMS`)."""
    scale: float = Field(default=1.0, allow_inf_nan=False)
    """reported = raw x scale + valueOffset; 0 means 1, as in KubeEdge's mappers (Go's unset value)."""
    value_offset: float = Field(default=0.0, allow_inf_nan=False)
    """Added after scaling: reported = raw x scale + valueOffset."""
    is_swap: bool = False
    """Swap the two bytes of each register."""
    is_register_swap: bool = False
    """Swap the order of the registers (low word first)."""
    bit: int | None = Field(default=None, ge=0, le=15)
    """Read (and write) one bit of a register as a boolean."""
    encoding: str = "utf-8"
    """Text encoding of string values."""
    max: float | None = None
    """Largest plausible reading; a larger one is reported as an error, not as a value."""
    min: float | None = None

    @field_validator("data_type", mode="before")
    @classmethod
    def _data_type(cls, value: Any) -> Any:
        if isinstance(value, str):
            lowered = value.lower()
            return DATA_TYPE_ALIASES.get(lowered, lowered) if lowered in DATA_TYPE_ALIASES else lowered
        return value

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: float) -> float:
        # KubeEdge's mappers cannot tell `scale: 0` from no scale (Go's zero value) and read both
        # as unscaled; a manifest written for them means the same here.
        return 1.0 if value == 0 else value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModbusVisitor:
        if (
            self.data_type is not None
            and self.data_type not in REGISTER_COUNT
            and self.data_type not in VARIABLE_TYPES
            and self.data_type not in KUBEEDGE_FLOATS
        ):
            allowed = ", ".join([*REGISTER_COUNT, *VARIABLE_TYPES, *KUBEEDGE_FLOATS])
            raise ValueError(f"dataType {self.data_type!r} is not one of {allowed}")
        if self.register_type in BIT_REGISTERS:
            if self.data_type not in (None, "bool", *KUBEEDGE_FLOATS):
                raise ValueError(
                    f"{self.register_type} holds bits: dataType must be bool (or KubeEdge's int,"
                    f" float, double), not {self.data_type}"
                )
            if self.bit is not None:
                raise ValueError(
                    f"bit applies to InputRegister and HoldingRegister, not {self.register_type}"
                )
        elif self.data_type in KUBEEDGE_FLOATS and self.limit is not None:
            check_float_limit(self.data_type, self.limit)
        needed = REGISTER_COUNT.get(self.data_type or "", 1)
        if self.limit is not None and self.register_type not in BIT_REGISTERS and self.limit < needed:
            raise ValueError(
                f"limit {self.limit} is too small for dataType {self.data_type} ({needed} registers)"
            )
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


def check_float_limit(name: str, limit: int, explicit: bool = True) -> None:
    """``ValueError`` unless ``limit`` gives KubeEdge's ``float``/``double`` a wire form
    (``explicit``: the visitor names the dataType, rather than the model's property type)."""
    if limit not in FLOAT_FORMS:
        what = f"dataType {name}" if explicit else f"a {name.upper()} property without dataType"
        raise ValueError(
            f"limit {limit} does not fit {what}: limit 1 reads one unsigned 16-bit register"
            " x scale (KubeEdge mapper-framework), 2 an IEEE float32, 4 an IEEE float64"
        )
