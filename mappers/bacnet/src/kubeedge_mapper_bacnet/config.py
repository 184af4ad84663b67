"""BACnet/IP configData: a device's address and identity, and each property's object and property.

Protocol ``configData`` names the device (``deviceInstance``, ``address``), the local BACnet
application the mapper talks through (``localAddress``, optional foreign-device registration with
a BBMD) and the APDU timeout and retries. Visitor ``configData`` names an object (``objectType``,
``objectInstance``), one of its properties (``property``, ``arrayIndex``), the ``priority`` writes
are commanded at, and whether the value is pushed by change-of-value notifications (``cov``).
Object types and property identifiers are checked against BACnet's own names, so a typo is refused
with the field named.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from bacpypes3.basetypes import ObjectType, PropertyIdentifier
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

BACNET_PORT = 47808
"""0xBAC0, the BACnet/IP port."""
MAX_INSTANCE = 4194302
"""The largest object (and device) instance; 4194303 means "unconfigured"."""
COV_PROPERTIES = ("present-value", "status-flags")
"""What a SubscribeCOV notification carries (clause 13.1): only these can be pushed."""


def bacnet_address(value: str) -> str:
    """``ip[/prefix]:port`` for bacpypes3: the prefix (the subnet) is what it broadcasts to."""
    host, port = host_port(value)
    _, slash, rest = value.strip().partition("/")
    prefix = rest.partition(":")[0] if slash else ""
    return f"{host}/{prefix}:{port}" if prefix else f"{host}:{port}"


def host_port(value: str, default_port: int = BACNET_PORT) -> tuple[str, int]:
    """``ip[/prefix][:port]`` as (ip, port); ``ValueError`` says what is wrong."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep:
        host, port_text = value.strip(), ""
    host, slash, prefix = host.partition("/")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address, optionally with :port") from None
    if slash and not (prefix.isdigit() and 0 <= int(prefix) <= 32):
        raise ValueError(f"{value!r}: the subnet prefix {prefix!r} is not 0-32")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} in {value!r} is not 1-65535")
    return host, int(port_text)


class _Config(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class BacnetConfig(_Config):
    """A device's ``spec.protocol.configData``."""

    device_instance: int = Field(ge=0, le=MAX_INSTANCE)
    """The device object's instance number (what Who-Is and I-Am carry)."""
    address: str
    """The device's BACnet/IP address, ``ip[:port]`` (port ``port``, else 47808, by default)."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """The device's UDP port when ``address`` has none (a DeviceModel can set it for all its
    devices in ``protocolConfigData``)."""
    local_address: str = f"0.0.0.0:{BACNET_PORT}"
    """Where the mapper's own BACnet application binds, ``ip[/prefix][:port]`` (the prefix gives
    the subnet broadcasts go to). Devices with the same local address share one application."""
    bbmd_address: str | None = None
    """Register as a foreign device with this BBMD (``ip[:port]``) to reach devices on another
    subnet, or to broadcast Who-Is where the mapper's host cannot (a container)."""
    bbmd_ttl: int = Field(default=60, ge=5, le=65535)
    """Seconds a foreign-device registration lasts; it is renewed before it ends."""
    apdu_timeout: int = Field(default=3000, ge=10, le=60000)
    """Milliseconds to wait for an answer to a confirmed request."""
    apdu_retries: int = Field(default=1, ge=0, le=10)
    """Resends after a timeout (0: one try)."""
    read_multiple: bool = True
    """Read a cycle's properties with ReadPropertyMultiple (off: one ReadProperty each, for
    devices that do not support it)."""
    max_properties_per_request: int = Field(default=16, ge=1, le=255)
    """Properties in one ReadPropertyMultiple request (the answer must fit the device's APDU)."""

    @field_validator("address", "local_address", "bbmd_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            host_port(value)
        return value

    @model_validator(mode="after")
    def _not_itself(self) -> BacnetConfig:
        device, local = self.device_endpoint(), host_port(self.local_address)
        if device[0].startswith("127.") and device[1] == local[1]:
            # bacpypes3 (0.0.110) answers a request to any 127.x address on its own port itself.
            raise ValueError(
                f"localAddress {self.local_address!r}: a device on loopback ({self.address}) must use"
                " another port than the mapper's own, or the request never leaves the mapper"
            )
        return self

    @model_validator(mode="after")
    def _one_port(self) -> BacnetConfig:
        if self.port is not None and ":" in self.address and host_port(self.address)[1] != self.port:
            raise ValueError(f"port {self.port} contradicts the port in address {self.address!r}")
        return self

    def device_endpoint(self) -> tuple[str, int]:
        return host_port(self.address, self.port or BACNET_PORT)

    def local_endpoint(self) -> tuple[str, int]:
        return host_port(self.local_address)

    def attempts(self) -> int:
        return self.apdu_retries + 1


class BacnetVisitor(_Config):
    """A property's ``visitors.configData``."""

    object_type: str
    """BACnet object type: ``analogValue`` or ``analog-value``, ``binaryOutput``, ..."""
    object_instance: int = Field(ge=0, le=MAX_INSTANCE)
    property: str = Field(default="presentValue", validate_default=True)
    """BACnet property identifier: ``presentValue`` (default), ``objectName``, ``units``, ..."""
    array_index: int | None = Field(default=None, ge=0)
    """One element of an array property (0: its length)."""
    priority: int | None = Field(default=None, ge=1, le=16)
    """Write priority (1 highest, 16 lowest) for commandable objects; none: the device's default
    (16 for commandable objects)."""
    scale: float = Field(default=1.0, allow_inf_nan=False)
    """reported = device value x scale (numbers); a desired value is divided by it."""
    cov: bool = False
    """Subscribe to change-of-value notifications instead of polling (presentValue, statusFlags)."""
    cov_lifetime: int = Field(default=300, ge=0, le=28800)
    """Seconds the device keeps the subscription (0: until it restarts, not recommended)."""
    cov_renewal: float | None = Field(default=None, gt=0)
    """Seconds between re-subscriptions: they keep the subscription alive and re-establish it
    after the device restarted. Default: half the lifetime (60 s with lifetime 0)."""
    cov_confirmed: bool = True
    """Ask for confirmed notifications (the device retries until acknowledged)."""

    @field_validator("object_type")
    @classmethod
    def _object_type(cls, value: str) -> str:
        try:
            return str(ObjectType(value))
        except (ValueError, TypeError):
            raise ValueError(
                f"{value!r} is not a BACnet object type (analogValue, binaryOutput, ...)"
            ) from None

    @field_validator("property")
    @classmethod
    def _property(cls, value: str) -> str:
        try:
            return str(PropertyIdentifier(value))
        except (ValueError, TypeError):
            raise ValueError(
                f"{value!r} is not a BACnet property identifier (presentValue, objectName, ...)"
            ) from None

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: float) -> float:
        if value == 0:
            raise ValueError("scale must not be 0")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BacnetVisitor:
        if self.cov and self.property not in COV_PROPERTIES:
            raise ValueError(
                f"cov: change-of-value notifications carry presentValue and statusFlags, not {self.property}"
            )
        if self.cov and self.array_index is not None:
            raise ValueError("cov: a subscription cannot deliver one array element (arrayIndex)")
        renewal = self.renewal()
        if self.cov and self.cov_lifetime and renewal >= self.cov_lifetime:
            raise ValueError(
                f"covRenewal {renewal:g} s must be shorter than covLifetime {self.cov_lifetime} s,"
                " or the subscription lapses before it is renewed"
            )
        return self

    def renewal(self) -> float:
        if self.cov_renewal is not None:
            return self.cov_renewal
        return self.cov_lifetime / 2 if self.cov_lifetime else 60.0

    def object_id(self) -> tuple[str, int]:
        return (self.object_type, self.object_instance)

    def describe(self) -> str:
        """``analog-value,1 present-value`` (``[i]`` for an array element), as BACnet tools write it."""
        index = f"[{self.array_index}]" if self.array_index is not None else ""
        return f"{self.object_type},{self.object_instance} {self.property}{index}"


class BacnetSettings(BaseModel):
    """Mapper-wide settings (``mappers.bacnet`` in edge.yaml), besides the runtime's own."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    local_device_instance: int = Field(default=MAX_INSTANCE, ge=0, le=MAX_INSTANCE)
    """The device instance of the mapper's own BACnet application (unique on the network)."""
    local_device_name: str = "kubeedge-mapper-bacnet"


def describe_error(value: Any) -> str:
    """A BACnet error, reject or abort as ``class: code`` text (``object: unknown-object``)."""
    error_class = getattr(value, "errorClass", None)
    error_code = getattr(value, "errorCode", None)
    if error_class is not None and error_code is not None:
        return f"{error_class}: {error_code}"
    return str(value)
