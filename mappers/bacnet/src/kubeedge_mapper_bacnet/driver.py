"""The BACnet/IP driver (bacpypes3): ReadPropertyMultiple batches, commanded writes, COV push.

* **One local application per local address.** The mapper talks BACnet through a bacpypes3
  application (its own device object, one UDP socket) bound to ``localAddress``; every device
  with that local address shares it (:class:`kubeedge.SharedConnections`), so many devices cost
  one socket. BACnet matches answers to requests by invoke ID, so requests of different devices
  (and of one device) may be in flight at once: no lock is held across an exchange.
* **Reads.** A cycle's properties go out as ReadPropertyMultiple requests of up to
  ``maxPropertiesPerRequest`` properties; a property the device refuses inside one comes back as
  that property's error (``object: unknown-object``). A device that does not know
  ReadPropertyMultiple (it rejects or aborts it) is read property by property from then on.
* **Writes.** WriteProperty at the visitor's ``priority``; ``None`` (see :meth:`BacnetDriver.write`)
  relinquishes the priority slot with Null.
* **COV.** Properties with ``cov: true`` are not polled: :meth:`BacnetDriver.subscribe` sends
  SubscribeCOV per object and turns each notification into a twin update as it arrives. It
  re-subscribes every ``covRenewal`` seconds, before ``covLifetime`` runs out; that also
  re-establishes subscriptions a restarted device forgot. A renewal that goes unanswered ends the
  subscription: the device counts as lost and is reconnected with back-off.
* **Errors.** A BACnet Error, Reject or Abort marks the property with its class and code
  (``BACnet error object: unknown-object reading analog-value,9 present-value``); no answer within
  ``apduTimeout`` after ``apduRetries`` resends marks the device offline (``timeout: ...``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import errno
import logging
import socket
from collections import defaultdict
from collections.abc import Awaitable, Hashable, Sequence
from typing import Any, ClassVar, TypeVar

from bacpypes3.apdu import AbortPDU, ErrorPDU, ErrorRejectAbortNack, RejectPDU
from bacpypes3.app import Application
from bacpypes3.basetypes import ErrorType, PropertyReference
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import Enumerated, Null, ObjectIdentifier, OctetString, PropertyIdentifier

from kubeedge import DeviceError, DeviceUnreachable, Driver, Emit, Property, Shared, SharedConnections
from kubeedge_mapper_bacnet.config import (
    BacnetConfig,
    BacnetSettings,
    BacnetVisitor,
    bacnet_address,
    describe_error,
    host_port,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

VENDOR_ID = 999
"""bacpypes3's vendor identifier for applications without one of their own (ASHRAE's objects)."""
_APDU: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("_APDU", default=None)
"""(apduTimeout ms, retries) of the device whose request is being made: see :class:`_PerRequest`."""


class _PerRequest:
    """The local device object as bacpypes3's transaction state machines see it, with the APDU
    timeout and retries of the device being asked.

    bacpypes3 copies ``apduTimeout`` and ``numberOfApduRetries`` from the local device object when
    it starts a transaction, in a task that ``Application.request`` creates; that task inherits
    the caller's context, so a context variable gives each device its own settings on a shared
    application without a race between devices.
    """

    def __init__(self, device_object: Any) -> None:
        self._device_object = device_object

    def __getattr__(self, name: str) -> Any:
        settings = _APDU.get()
        if settings is not None and name == "apduTimeout":
            return settings[0]
        if settings is not None and name == "numberOfApduRetries":
            return settings[1]
        return getattr(self._device_object, name)


def _check_bindable(host: str, port: int) -> None:
    """Refuse an address this host cannot bind (bacpypes3 would retry forever, silently)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((host, port))
    except OSError as exc:
        reason = "not an address of this host" if exc.errno == errno.EADDRNOTAVAIL else exc.strerror
        raise DeviceUnreachable(
            f"cannot bind the local BACnet application to {host}:{port}: {reason}"
        ) from None
    finally:
        probe.close()


class _LocalApps:
    """The mapper's bacpypes3 applications, one per local address, shared by its devices."""

    def __init__(self) -> None:
        self.pool: SharedConnections[Application] = SharedConnections(self._open, self._close)
        self._settings: dict[Hashable, BacnetSettings] = {}

    @staticmethod
    def key(config: BacnetConfig) -> tuple[Any, ...]:
        return (bacnet_address(config.local_address), config.bbmd_address, config.bbmd_ttl)

    async def acquire(self, config: BacnetConfig, settings: BacnetSettings) -> Shared[Application]:
        key = self.key(config)
        self._settings[key] = settings
        return await self.pool.acquire(key)

    async def _open(self, key: Hashable) -> Application:
        address, bbmd, ttl = key  # type: ignore[misc]
        _check_bindable(*host_port(address))
        settings = self._settings.get(key) or BacnetSettings()
        args = argparse.Namespace(
            name=settings.local_device_name,
            instance=settings.local_device_instance,
            address=address,
            network=0,
            vendoridentifier=VENDOR_ID,
            foreign=bbmd,
            ttl=ttl,
            bbmd=None,
        )
        app = Application.from_args(args)
        app.asap.device_object = _PerRequest(app.asap.device_object)
        # bacpypes3 binds the socket in a task: closed before it is bound, it would stay open
        for link_layer in app.link_layers.values():
            await asyncio.wait_for(link_layer.server._local_transport_ready.wait(), 5)
        return app

    @staticmethod
    async def _close(app: Application) -> None:
        app.close()


APPS = _LocalApps()


class BacnetDriver(Driver[BacnetConfig, BacnetVisitor]):
    protocol = "bacnet"
    config_model = BacnetConfig
    visitor_model = BacnetVisitor
    settings_model = BacnetSettings
    relinquishes = True  # an empty desired value writes Null at the priority
    max_batch = 100_000  # a whole cycle: this driver splits it into ReadPropertyMultiple requests

    _app: Shared[Application] | None = None
    subscriptions: ClassVar[list[_Subscription]] = []
    """Set per instance by :meth:`subscribe` (the class's empty list until then)."""
    _single_reads = False
    """The device refused ReadPropertyMultiple: read one property per request."""

    async def connect(self) -> None:
        assert isinstance(self.settings, BacnetSettings)
        self._app = await APPS.acquire(self.config, self.settings)
        host, port = self.config.device_endpoint()
        self._address = Address(f"{host}:{port}")
        self._where = f"device {self.config.device_instance} at {host}:{port}"
        self.requests = 0
        # Ask the device object for its name: a silent device fails the connection (offline), a
        # wrong instance is refused by the device (unknown-object).
        device_id = ObjectIdentifier(("device", self.config.device_instance))
        try:
            await self._call(
                self._app.connection.read_property(self._address, device_id, "object-name"),
                "reading its device object",
            )
        except DeviceError as exc:
            raise DeviceUnreachable(f"{self._where} is not that device: {exc}") from None

    async def close(self) -> None:
        if self._app is not None:
            app, self._app = self._app, None
            await APPS.pool.release(app)

    @property
    def app(self) -> Application:
        if self._app is None:
            raise DeviceUnreachable("not connected")
        return self._app.connection

    # ----------------------------------------------------------------- requests and errors

    async def _call(self, request: Awaitable[T], what: str) -> T:
        """One confirmed request with this device's timeout and retries; BACnet's error, reject
        and abort as :class:`DeviceError` naming class and code, silence as unreachable."""
        self.requests += 1
        token = _APDU.set((self.config.apdu_timeout, self.config.apdu_retries))
        # bacpypes3 times out by itself; this is a backstop should its state machine never answer.
        backstop = self.config.apdu_timeout * self.config.attempts() / 1000 + 2.0
        try:
            return await asyncio.wait_for(request, backstop)
        except ErrorRejectAbortNack as exc:  # a BaseException in bacpypes3: caught here, by name
            raise self._error(exc, what) from None
        except TimeoutError:
            raise self._timeout() from None
        finally:
            _APDU.reset(token)

    def _timeout(self) -> DeviceUnreachable:
        tries = self.config.attempts()
        return DeviceUnreachable(
            f"timeout: no answer from {self._where} within {self.config.apdu_timeout} ms"
            f" ({tries} {'try' if tries == 1 else 'tries'})"
        )

    def _error(self, exc: BaseException, what: str) -> Exception:
        if isinstance(exc, AbortPDU) and str(exc.apduAbortRejectReason) == "no-response":
            return self._timeout()
        if isinstance(exc, ErrorPDU):
            text = describe_error(exc)
            return DeviceError(f"BACnet error {text} {what}", code=text)
        if isinstance(exc, RejectPDU):
            reason = str(exc.apduAbortRejectReason)
            return DeviceError(f"BACnet reject {reason} {what}", code=f"reject: {reason}")
        if isinstance(exc, AbortPDU):
            reason = str(exc.apduAbortRejectReason)
            return DeviceError(f"BACnet abort {reason} {what}", code=f"abort: {reason}")
        return DeviceError(f"BACnet failure {exc} {what}")

    # ----------------------------------------------------------------- reads

    async def read(self, prop: Property[BacnetVisitor]) -> Any:
        visitor = prop.visitor
        value = await self._call(
            self.app.read_property(
                self._address, ObjectIdentifier(visitor.object_id()), visitor.property, visitor.array_index
            ),
            f"reading {visitor.describe()}",
        )
        return decode(prop, value)

    async def read_many(self, props: Sequence[Property[BacnetVisitor]]) -> list[Any]:
        if self._single_reads or not self.config.read_multiple or len(props) == 1:
            return await super().read_many(props)
        size = self.config.max_properties_per_request
        results: list[Any] = []
        for start in range(0, len(props), size):
            chunk = props[start : start + size]
            results += await self._read_multiple(chunk) if len(chunk) > 1 else await super().read_many(chunk)
        return results

    async def _read_multiple(self, props: Sequence[Property[BacnetVisitor]]) -> list[Any]:
        by_object: dict[tuple[str, int], list[Property[BacnetVisitor]]] = defaultdict(list)
        for prop in props:
            by_object[prop.visitor.object_id()].append(prop)
        parameters: list[Any] = []
        for object_id, members in by_object.items():
            parameters.append(ObjectIdentifier(object_id))
            parameters.append([_reference(p.visitor) for p in members])
        try:
            answer = await self._call(
                self.app.read_property_multiple(self._address, parameters),
                f"reading {len(props)} properties",
            )
        except DeviceError as exc:
            if exc.code in ("reject: unrecognized-service", "abort: segmentation-not-supported") or (
                isinstance(exc.code, str) and exc.code.endswith("service-request-denied")
            ):
                log.info("%s refuses ReadPropertyMultiple (%s): reading one by one", self._where, exc.code)
                self._single_reads = exc.code == "reject: unrecognized-service"
                return await super().read_many(props)
            return [exc] * len(props)
        if not isinstance(answer, list):
            return [DeviceError(f"no usable answer to ReadPropertyMultiple from {self._where}")] * len(props)
        found: dict[tuple[str, int, str, int | None], Any] = {}
        for object_id, property_id, index, value in answer:
            found[(str(object_id[0]), int(object_id[1]), str(property_id), index)] = value
        results: list[Any] = []
        for prop in props:
            visitor = prop.visitor
            key = (visitor.object_type, visitor.object_instance, visitor.property, visitor.array_index)
            if key not in found:
                results.append(DeviceError(f"{visitor.describe()} missing from the device's answer"))
                continue
            value = found[key]
            if isinstance(value, ErrorType):
                text = describe_error(value)
                results.append(DeviceError(f"BACnet error {text} reading {visitor.describe()}", code=text))
                continue
            try:
                results.append(decode(prop, value))
            except DeviceError as exc:
                results.append(exc)
        return results

    # ----------------------------------------------------------------- writes

    async def write(self, prop: Property[BacnetVisitor], value: Any) -> None:
        """WriteProperty at the visitor's priority; ``value`` None relinquishes that priority
        slot (writes Null), so a lower priority or the relinquish default takes over."""
        visitor = prop.visitor
        data = encode(prop, value)
        priority = visitor.priority
        if isinstance(data, Null) and priority is None:
            priority = 16  # clause 19.2.1: a write without priority commands priority 16
        shown = "Null (relinquish)" if isinstance(data, Null) else repr(value)
        what = f"writing {shown} to {visitor.describe()}"
        try:
            request = self.app.write_property(
                self._address,
                ObjectIdentifier(visitor.object_id()),
                visitor.property,
                data,
                visitor.array_index,
                priority,
            )
        except (TypeError, ValueError) as exc:
            raise DeviceError(f"cannot encode {value!r} for {visitor.describe()}: {exc}") from None
        try:
            await self._call(request, what + (f" at priority {priority}" if priority else ""))
        except (TypeError, ValueError) as exc:  # bacpypes3 casts the value to the property's type
            raise DeviceError(f"cannot write {value!r} to {visitor.describe()}: {exc}") from None

    # ----------------------------------------------------------------- change of value

    def pushes(self, prop: Property[BacnetVisitor]) -> bool:
        return prop.visitor.cov

    async def subscribe(self, props: Sequence[Property[BacnetVisitor]], emit: Emit) -> None:
        by_object: dict[tuple[str, int], list[Property[BacnetVisitor]]] = defaultdict(list)
        for prop in props:
            by_object[prop.visitor.object_id()].append(prop)
        self.subscriptions = [
            _Subscription(self, object_id, members, emit) for object_id, members in by_object.items()
        ]
        tasks = [asyncio.create_task(s.run()) for s in self.subscriptions]
        try:
            # a subscription whose renewal goes unanswered ends them all: the device is lost
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class _Subscription:
    """SubscribeCOV for one object, renewed by this driver (not by bacpypes3, which would drop a
    failed renewal silently), its notifications handed to ``emit``."""

    def __init__(
        self,
        driver: BacnetDriver,
        object_id: tuple[str, int],
        props: list[Property[BacnetVisitor]],
        emit: Emit,
    ) -> None:
        self.driver = driver
        self.object_id = object_id
        self.props = props
        self.emit = emit
        first = props[0].visitor
        self.lifetime = max(p.visitor.cov_lifetime for p in props)
        self.renewal = min(p.visitor.renewal() for p in props)
        self.confirmed = any(p.visitor.cov_confirmed for p in props)
        self.describe = f"{first.object_type},{first.object_instance}"
        self.notifications = 0

    async def run(self) -> None:
        driver = self.driver
        context = driver.app.change_of_value(
            driver._address, ObjectIdentifier(self.object_id), None, self.confirmed, self.lifetime
        )
        what = f"subscribing to {self.describe}"
        # The first SubscribeCOV; an object that refuses shows why on its properties and is
        # asked again at each renewal, while the device's other subscriptions go on.
        while True:
            try:
                await driver._call(context.__aenter__(), what)
                break
            except DeviceError as exc:
                self._failed(exc)
            finally:
                self._own_renewals(context)
            await asyncio.sleep(self.renewal)
        listener = asyncio.create_task(self._listen(context))
        registered = True
        try:
            while True:
                await asyncio.sleep(self.renewal)
                try:
                    await driver._call(
                        context.refresh_subscription(), f"renewing the subscription to {self.describe}"
                    )
                except DeviceError as exc:
                    self._failed(exc)
                finally:
                    self._own_renewals(context)
        except asyncio.CancelledError:
            # Stopped (the Device removed, the mapper stopping): cancel the subscription, so the
            # device stops notifying (it would until the lifetime ends). Best effort: it may be gone.
            registered = False
            with contextlib.suppress(DeviceError, DeviceUnreachable):
                await driver._call(
                    context.__aexit__(None, None, None), f"cancelling the subscription to {self.describe}"
                )
            raise
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            if registered:  # ended by an error: abandoned; the subscription lapses by itself
                with contextlib.suppress(Exception, ErrorRejectAbortNack):
                    await context.__aexit__(asyncio.CancelledError, asyncio.CancelledError(), None)

    def _failed(self, exc: DeviceError) -> None:
        for prop in self.props:
            self.emit(prop.name, exc)

    @staticmethod
    def _own_renewals(context: Any) -> None:
        """bacpypes3 schedules a renewal of its own after each SubscribeCOV, whose failure it
        drops silently; this driver renews instead, and notices."""
        if context.refresh_subscription_handle is not None:
            context.refresh_subscription_handle.cancel()
            context.refresh_subscription_handle = None

    async def _listen(self, context: Any) -> None:
        while True:
            property_id, value = await context.get_value()
            self.notifications += 1
            for prop in self.props:
                if str(property_id) != prop.visitor.property:
                    continue
                try:
                    self.emit(prop.name, decode(prop, value))
                except DeviceError as exc:
                    self.emit(prop.name, exc)


def _reference(visitor: BacnetVisitor) -> PropertyReference:
    reference = PropertyReference(propertyIdentifier=PropertyIdentifier(visitor.property))
    if visitor.array_index is not None:
        reference.propertyArrayIndex = visitor.array_index
    return reference


# --------------------------------------------------------------------------- conversion


def decode(prop: Property[BacnetVisitor], value: Any) -> Any:
    """A BACnet value as the property's twin type. Numbers are scaled; enumerations give their
    number (INT, FLOAT, DOUBLE), active/inactive (BOOLEAN: active is true) or their name (STRING)."""
    if isinstance(value, ErrorType):
        text = describe_error(value)
        raise DeviceError(f"BACnet error {text} reading {prop.visitor.describe()}", code=text)
    kind, scale = prop.type, prop.visitor.scale
    try:
        if kind in ("float", "double"):
            if isinstance(value, int | float) and not isinstance(value, bytes | str):
                return float(value) * scale
        elif kind == "int":
            if isinstance(value, int | float):
                number = float(value) * scale if scale != 1 else value
                return round(number) if isinstance(number, float) else int(number)
        elif kind == "boolean":
            if isinstance(value, Enumerated) and str(value) in ("active", "inactive"):
                return str(value) == "active"
            if isinstance(value, int | float):
                return bool(value)
        elif kind == "string":
            if isinstance(value, ObjectIdentifier):
                return f"{value[0]},{value[1]}"
            if isinstance(value, str | int | float):
                return str(value) if not isinstance(value, float) else repr(float(value))
        elif kind == "bytes":
            if isinstance(value, bytes):
                return bytes(value)
            if isinstance(value, str):
                return value.encode()
    except (TypeError, ValueError, OverflowError) as exc:
        raise DeviceError(f"cannot read {prop.visitor.describe()} as {kind}: {exc}") from None
    raise DeviceError(
        f"{prop.visitor.describe()} is a {type(value).__name__} ({value!r}),"
        f" which a {kind} property cannot hold"
    )


def encode(prop: Property[BacnetVisitor], value: Any) -> Any:
    """The value to write, before bacpypes3 casts it to the property's BACnet type; None gives
    Null (relinquish)."""
    if value is None:
        return Null(())
    visitor, kind = prop.visitor, prop.type
    if kind == "boolean":
        if visitor.object_type.startswith("binary") and visitor.property == "present-value":
            return "active" if value else "inactive"
        return bool(value)
    if kind in ("float", "double"):
        return float(value) / visitor.scale
    if kind == "int":
        return round(value / visitor.scale) if visitor.scale != 1 else int(value)
    if kind == "bytes":
        return OctetString(bytes(value))
    return value
