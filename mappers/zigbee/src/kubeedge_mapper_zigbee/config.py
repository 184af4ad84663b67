"""Zigbee configData: the coordinator (mapper-wide settings), each device (its IEEE address), and
each property (endpoint, cluster, attribute, conversion, reporting, how it is written).

Clusters, attributes and commands are named as zigpy names them (``temperature``,
``measured_value``, ``move_to_level``) or given by number (``0x0402``, ``1026``); both are checked
against zigpy's ZCL definitions when the configData is validated, so a typo is refused with the
field named, not found at the first read.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import zigpy.zcl
import zigpy.zcl.clusters  # fills zigpy's cluster registry
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

IEEE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){7}$")
VALUE_ARGUMENT = "$value"
"""A command argument that stands for the (unscaled) value being written."""


class _Config(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Radio(StrEnum):
    """The radio library that drives the coordinator (each is an extra of the distribution)."""

    EZSP = "ezsp"
    """Silicon Labs EmberZNet (bellows): Sonoff ZBDongle-E, SkyConnect, ..."""
    ZNP = "znp"
    """Texas Instruments Z-Stack (zigpy-znp): CC2652, Sonoff ZBDongle-P, ..."""
    DECONZ = "deconz"
    """dresden elektronik ConBee / RaspBee (zigpy-deconz)."""
    XBEE = "xbee"
    """Digi XBee 3 in API mode 2 (zigpy-xbee)."""
    ZIGATE = "zigate"
    """ZiGate (zigpy-zigate)."""
    EMULATED = "emulated"
    """The in-process emulated radio of :mod:`kubeedge_mapper_zigbee.testing` (tests, demos)."""


RADIO_APPS: dict[Radio, tuple[str, str]] = {
    Radio.EZSP: ("bellows.zigbee.application", "bellows"),
    Radio.ZNP: ("zigpy_znp.zigbee.application", "zigpy-znp"),
    Radio.DECONZ: ("zigpy_deconz.zigbee.application", "zigpy-deconz"),
    Radio.XBEE: ("zigpy_xbee.zigbee.application", "zigpy-xbee"),
    Radio.ZIGATE: ("zigpy_zigate.zigbee.application", "zigpy-zigate"),
    Radio.EMULATED: ("kubeedge_mapper_zigbee.testing", "kubeedge-mapper-zigbee"),
}
"""Radio -> (module holding its ``ControllerApplication``, the distribution that ships it)."""


class NetworkSettings(_Config):
    """Settings a new network is formed with (an existing one, in the radio or the database, is
    kept as it is)."""

    channel: int | None = Field(default=None, ge=11, le=26)
    pan_id: int | None = Field(default=None, ge=0, le=0xFFFE)
    extended_pan_id: str | None = None
    """Eight bytes as ``dd:dd:dd:dd:dd:dd:dd:dd``."""
    network_key: str | None = None
    """Sixteen bytes as ``01:03:...`` (default: a random key chosen when forming)."""

    @field_validator("pan_id", mode="before")
    @classmethod
    def _pan(cls, value: Any) -> Any:
        return _number(value)

    @field_validator("extended_pan_id")
    @classmethod
    def _epid(cls, value: str | None) -> str | None:
        if value is not None and not IEEE.match(value):
            raise ValueError(f"{value!r} is not eight hex bytes (dd:dd:dd:dd:dd:dd:dd:dd)")
        return value

    @field_validator("network_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){15}", value):
            raise ValueError("a network key is sixteen hex bytes separated by ':'")
        return value


class ZigbeeSettings(_Config):
    """``mappers.zigbee`` in edge.yaml: the one coordinator every Zigbee device is reached through."""

    radio: Radio = Radio.EZSP
    path: str = "/dev/ttyUSB0"
    """The coordinator's serial port, or ``socket://host:port`` (a network-attached one)."""
    baudrate: int = Field(default=115200, gt=0)
    flow_control: str | None = Field(default=None, pattern=r"^(hardware|software)$")
    database: Path | None = None
    """zigpy's SQLite database: the joined devices and the network survive restarts. Default
    ``zigbee.db`` in kubeedge's default data folder; a relative path is taken from the working
    directory (give the edge's ``dataDir`` here, ``.data/zigbee.db``)."""
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    request_timeout: float = Field(default=10.0, gt=0)
    """Seconds a read, write or command may take; a sleepy device that answers later is offline
    for that poll (the others are not held up)."""
    startup_timeout: float = Field(default=60.0, gt=0)
    """Seconds the radio may take to start (and form a network on first use)."""
    form: bool = True
    """Form a new network when the radio has none (false: refuse to start)."""

    def database_path(self) -> Path:
        if self.database is not None:
            return self.database
        # the edge's default data folder (as kubeedge.config has it; mappers do not import that)
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        return Path(base) / "kubeedge" / "zigbee.db"

    def key(self) -> tuple[str, str]:
        """What identifies the coordinator: its radio and where it is attached."""
        return (self.radio.value, self.path)


class ZigbeeConfig(_Config):
    """A device's ``spec.protocol.configData``."""

    ieee: str
    """The device's IEEE (EUI-64) address, ``00:0d:6f:00:0a:bc:de:f0``."""
    sleepy: bool = False
    """A battery device that sleeps between reports: connecting does not wait for it to answer
    (it is online while the coordinator knows it; its reported properties come when it wakes)."""

    @field_validator("ieee")
    @classmethod
    def _ieee(cls, value: str) -> str:
        if not IEEE.match(value):
            raise ValueError(f"{value!r} is not an IEEE address (eight hex bytes: 00:0d:6f:00:0a:bc:de:f0)")
        return value.lower()


class Reporting(_Config):
    """ZCL Configure Reporting for the attribute: the device sends its value by itself."""

    min_interval: int = Field(default=0, ge=0, le=0xFFFF)
    """Seconds between two reports at least."""
    max_interval: int = Field(default=300, ge=1, le=0xFFFE)
    """Seconds after which the value is reported even when unchanged."""
    reportable_change: float = Field(default=0, ge=0)
    """The change (in the attribute's own units, before ``scale``) that triggers a report."""

    @model_validator(mode="after")
    def _order(self) -> Reporting:
        if self.min_interval > self.max_interval:
            raise ValueError("minInterval is longer than maxInterval")
        return self


def _number(value: Any) -> Any:
    """``"0x0402"`` or ``"1026"`` as an int; anything else unchanged."""
    if isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"0x[0-9a-f]+", text):
            return int(text, 16)
        if text.isdigit():
            return int(text)
    return value


def cluster_class(cluster: int | str) -> type[zigpy.zcl.Cluster]:
    """zigpy's class of a cluster given by id or by name (``on_off``, ``OnOff``, ``On/Off``)."""
    registry: dict[int, type[zigpy.zcl.Cluster]] = zigpy.zcl.Cluster._registry
    if isinstance(cluster, int):
        if cluster in registry:
            return registry[cluster]
        raise ValueError(f"cluster 0x{cluster:04x} is not a ZCL cluster zigpy knows")
    wanted = cluster.strip().lower()
    for cls in registry.values():
        if wanted in (str(cls.ep_attribute).lower(), cls.__name__.lower(), str(cls.name).lower()):
            return cls
    raise ValueError(f"{cluster!r} is not a ZCL cluster name (on_off, level, temperature, ... or 0x0402)")


class ZigbeeVisitor(_Config):
    """A property's ``visitors.configData``: one ZCL attribute, and how it is written."""

    endpoint: int = Field(default=1, ge=1, le=240)
    cluster: int | str
    """The cluster, ``temperature`` or ``0x0402``."""
    manufacturer_code: int | None = Field(default=None, ge=0, le=0xFFFF)
    """For a manufacturer-specific attribute or command."""
    attribute: int | str
    """The attribute read and reported, ``measured_value`` or ``0x0000``."""
    scale: float = Field(default=1.0, allow_inf_nan=False)
    """reported = ZCL value x scale + offset (``0.01`` for temperature in °C); a desired value is
    turned back before it is written."""
    offset: float = Field(default=0.0, allow_inf_nan=False)
    reporting: Reporting | None = None
    """Configure reporting and take the reported values (no polling); without it, read on
    ``collectCycle``."""
    command: str | None = None
    """Write by sending this cluster command (``on``, ``off``, ``toggle``, ``move_to_level``)
    instead of writing the attribute."""
    commands: dict[str, str] | None = None
    """Write by a command chosen by the value: ``{"true": "on", "false": "off"}``."""
    args: dict[str, Any] = Field(default_factory=dict)
    """The command's arguments; ``$value`` stands for the value written (scale undone):
    ``{level: $value, transition_time: 0}``."""

    @field_validator("cluster", "attribute", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        return _number(value)

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: int | str) -> int | str:
        cluster_class(value)
        return value

    @field_validator("attribute")
    @classmethod
    def _attribute(cls, value: int | str, info: ValidationInfo) -> int | str:
        if "cluster" not in info.data:
            return value  # the cluster is wrong: that error is enough
        found = cluster_class(info.data["cluster"])
        try:
            find_attribute(found, value, info.data.get("manufacturer_code"))
        except (KeyError, ValueError):
            known = ", ".join(sorted(found.attributes_by_name)[:12])
            raise ValueError(
                f"{value!r} is not an attribute of cluster {found.ep_attribute}"
                f" (0x{found.cluster_id:04x}): {known}, ..."
            ) from None
        return value

    @field_validator("commands", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        if isinstance(value, dict):  # YAML makes true/false keys booleans
            return {(str(k).lower() if isinstance(k, bool) else str(k)): v for k, v in value.items()}
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and "cluster" in info.data:
            command_def(cluster_class(info.data["cluster"]), value)
        return value

    @field_validator("commands")
    @classmethod
    def _commands(cls, value: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        if value is not None and "cluster" in info.data:
            for name in value.values():
                command_def(cluster_class(info.data["cluster"]), name)
        return value

    @field_validator("args")
    @classmethod
    def _args(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "cluster" not in info.data:
            return value
        found = cluster_class(info.data["cluster"])
        names = [info.data.get("command"), *(info.data.get("commands") or {}).values()]
        for name in (n for n in names if n is not None):
            fields = getattr(command_def(found, name).schema, "fields", [])
            allowed = {f.name for f in fields}
            unknown = sorted(set(value) - allowed)
            if unknown:
                raise ValueError(
                    f"{name} has no argument {unknown[0]!r}: {', '.join(sorted(allowed)) or 'none'}"
                )
            missing = [f.name for f in fields if not f.optional and f.name not in value]
            if missing:
                raise ValueError(f"{name} needs {', '.join(missing)} ({VALUE_ARGUMENT} is the written value)")
        return value

    @model_validator(mode="after")
    def _one_way(self) -> ZigbeeVisitor:
        if self.command is not None and self.commands is not None:
            raise ValueError("command and commands: give one of them")
        return self

    def cluster_class(self) -> type[zigpy.zcl.Cluster]:
        return cluster_class(self.cluster)

    def attribute_def(self) -> Any:
        cls = self.cluster_class()
        if isinstance(self.attribute, int):
            code = self.manufacturer_code
            return (
                cls.find_attribute(self.attribute)
                if code is None
                else cls.find_attribute(self.attribute, manufacturer_code=code)
            )
        return cls.attributes_by_name[self.attribute]

    def describe(self) -> str:
        cls = self.cluster_class()
        attribute = self.attribute_def().name
        return f"endpoint {self.endpoint} {cls.ep_attribute} (0x{cls.cluster_id:04x}) {attribute}"


def command_def(cls: type[zigpy.zcl.Cluster], name: str | int) -> Any:
    """A server command of the cluster by name or id; ValueError naming the choices."""
    number = _number(name)
    for command in cls.ServerCommandDefs:
        if command.name == number or command.id == number:
            return command
    known = ", ".join(c.name for c in cls.ServerCommandDefs)
    raise ValueError(f"{name!r} is not a command of cluster {cls.ep_attribute}: {known}")


def find_attribute(cls: type[zigpy.zcl.Cluster], attribute: int | str, manufacturer_code: int | None) -> Any:
    """zigpy's definition of an attribute by name or id; KeyError if the cluster has none."""
    if isinstance(attribute, str):
        return cls.attributes_by_name[attribute]
    if manufacturer_code is None:
        return cls.find_attribute(attribute)
    return cls.find_attribute(attribute, manufacturer_code=manufacturer_code)
