"""The driver contract: the only code a protocol mapper has to write.

A driver talks to *one device*. The framework (:mod:`kubeedge.mapper.runtime`) owns everything
else: when to connect and reconnect, polling by ``collectCycle``, report policy, type conversion
and range checks from the DeviceModel, desired-value writes, read-back, state reports.

A driver declares three typed pydantic models, so bad ``configData`` is refused before the
driver sees it, with the field named:

* ``config_model``: the device's ``spec.protocol.configData``;
* ``visitor_model``: each property's ``visitors.configData``;
* ``settings_model``: mapper-wide settings from the edge configuration (``mappers.NAME``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from kubeedge.errors import KubeEdgeError

if TYPE_CHECKING:
    from kubeedge.api.device import Device, DeviceModel


class AnyConfig(BaseModel):
    """The configData model of a driver that declares none: any keys, kept as given."""

    model_config = ConfigDict(extra="allow")


class NoSettings(BaseModel):
    """The settings model of a driver that has no mapper-wide settings."""

    model_config = ConfigDict(extra="forbid")


ConfigT = TypeVar("ConfigT", bound=BaseModel)
VisitorT = TypeVar("VisitorT", bound=BaseModel)


@dataclass(frozen=True)
class Property(Generic[VisitorT]):
    """One property of the device, as a driver reads and writes it."""

    name: str
    type: str
    """Twin type: int, float, double, boolean, string, bytes or stream."""
    visitor: VisitorT
    """The property's typed ``visitors.configData``."""
    read_only: bool = False
    unit: str | None = None
    minimum: str | None = None
    maximum: str | None = None


class DeviceError(KubeEdgeError):
    """The device answered, but with an error (an exception code, a refused write).

    The property is marked as failed and the device stays connected. Set ``code`` to the
    protocol's own code (a Modbus exception code, an ATT error) so it appears in reports.
    """

    def __init__(self, message: str, code: int | str | None = None) -> None:
        self.code = code
        super().__init__(message if code is None else f"{message} (code {code})")


class DeviceUnreachable(KubeEdgeError):
    """The device cannot be reached (connection refused or lost, timeout).

    The framework marks the device offline, closes the driver and reconnects with back-off.
    ``OSError`` and ``asyncio.TimeoutError`` raised by a driver are treated the same way.
    """


Emit = Callable[[str, Any], None]
"""``emit(property_name, value)``: how a push subscription hands values to the framework. The
value is of the property's type, as :meth:`Driver.read` returns it, or an exception (a
:class:`DeviceError`) that marks the property failed until a good value comes."""


class Driver(ABC, Generic[ConfigT, VisitorT]):
    """Base class of every protocol driver; subclass it and register it with
    :func:`kubeedge.hookspecs.kubeedge_register_drivers`.

    One instance serves one device. ``connect`` is called before any read or write and again
    after the device was unreachable; ``close`` is called when the device is removed, its
    protocol settings change, or the mapper stops.
    """

    protocol: ClassVar[str]
    """The protocol name (``spec.protocol.protocolName``); also the plugin's entry point name."""
    config_model: ClassVar[type[BaseModel]] = AnyConfig
    visitor_model: ClassVar[type[BaseModel]] = AnyConfig
    settings_model: ClassVar[type[BaseModel]] = NoSettings
    max_batch: ClassVar[int] = 1
    """How many properties :meth:`read_many` is given at once (1: the framework calls :meth:`read`)."""
    relinquishes: ClassVar[bool] = False
    """The driver takes ``write(prop, None)``: an empty desired value (``desired: {value: ""}``)
    gives the property back to the device's own control (BACnet: Null at the write priority).
    Sent once, when the desired value becomes empty, never compared or retried. Without it, an
    empty desired value is no desired value: nothing is written."""

    def __init__(self, device: Device, model: DeviceModel, config: ConfigT, settings: BaseModel) -> None:
        self.device = device
        """The Device with its model's defaults merged in."""
        self.model = model
        self.config = config
        self.settings = settings

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        protocol = cls.__dict__.get("protocol")
        if protocol is not None and (not isinstance(protocol, str) or not protocol):
            raise TypeError(f"{cls.__qualname__}.protocol must be a non-empty string")

    # ----------------------------------------------------------------- required

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection to the device. Raise to say it is unreachable."""

    @abstractmethod
    async def read(self, prop: Property[VisitorT]) -> Any:
        """Read one property; return a Python value of its type (int, float, bool, str, bytes)."""

    # ----------------------------------------------------------------- optional

    async def write(self, prop: Property[VisitorT], value: Any) -> None:
        """Write one property (the value is already converted to its type and range-checked;
        ``None`` to relinquish it, only for a driver with :attr:`relinquishes`)."""
        raise DeviceError(f"protocol {self.protocol!r} does not support writing {prop.name!r}")

    async def close(self) -> None:
        """Release the connection; must not raise."""

    async def state(self) -> str:
        """Health check while connected: ``online`` or ``unhealthy`` (default ``online``).

        Asked only if overridden: right after connecting, then every ``spec.stateReport.reportCycle``
        ms of the Device, else every ``stateInterval`` seconds of the mapper settings (30).
        ``unhealthy``, any other answer, or an exception marks the device unhealthy until a check
        answers ``online``; ``offline``, or :class:`DeviceUnreachable`, ``OSError`` or a timeout,
        counts as the device lost (closed, marked offline and reconnected), as for a read.
        """
        return "online"

    async def read_many(self, props: Sequence[Property[VisitorT]]) -> list[Any]:
        """Read several properties at once; return one value or exception per property, in order.

        Override with :attr:`max_batch` > 1 to read in fewer requests (Modbus block reads, BACnet
        ReadPropertyMultiple). The default reads one after another.
        """
        results: list[Any] = []
        for prop in props:
            try:
                results.append(await self.read(prop))
            except (TimeoutError, DeviceUnreachable, OSError):
                raise
            except Exception as exc:  # a failed property must not hide the others
                results.append(exc)
        return results

    async def subscribe(self, props: Sequence[Property[VisitorT]], emit: Emit) -> None:
        """Optional push path: runs while connected, calling ``emit(name, value)`` for each value
        the device pushes (BACnet COV, BLE notify, Zigbee reports). Properties it covers are not
        polled; their values are converted, range-checked and reported like read ones. Return or
        raise when the subscription ends: the device then counts as lost and is reconnected.
        Override it to enable push."""
        raise NotImplementedError

    @classmethod
    def supports_push(cls) -> bool:
        return cls.subscribe is not Driver.subscribe

    def pushes(self, prop: Property[VisitorT]) -> bool:
        """Whether :meth:`subscribe` delivers this property (the others are polled). Default: all."""
        return True
