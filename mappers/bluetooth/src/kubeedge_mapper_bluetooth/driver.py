"""The Bluetooth LE driver: GATT reads, writes and notifications through bleak, and values from
advertisements without a connection.

A device either stays connected (it has notified properties, or ``stayConnected: true``), holding
one of its adapter's slots, or is connected for each poll: the poll waits for a slot, connects,
reads every property due in one connection and lets the slot go. A device whose properties all
come from advertisements (``operation: advertisement``) never connects. Notifications and
advertisements are handed to the runtime as they arrive (``subscribe``); only ``read`` properties
are polled.

Errors: an ATT error answer is a :class:`DeviceError` with the ATT code (the property shows it, the
device stays online); bytes that do not decode are a property error naming the bytes; a device
that cannot be found or connected, or drops the connection, is :class:`DeviceUnreachable` (offline
with the reason, reconnected with back-off by the runtime). Each device waits only for its own
slot and connection, so one gone device never holds up the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakCharacteristicNotFoundError, BleakError, BleakGATTProtocolError
from pydantic import ValidationError

from kubeedge import DeviceError, DeviceUnreachable, Driver, Emit, Property
from kubeedge_mapper_bluetooth import adapter as adapters
from kubeedge_mapper_bluetooth.codec import decode, encode
from kubeedge_mapper_bluetooth.config import (
    BluetoothConfig,
    BluetoothSettings,
    BluetoothVisitor,
    Operation,
)

log = logging.getLogger(__name__)

DISCONNECT_TIMEOUT_S = 2.0
"""A disconnect that takes longer is left to the controller (the link times out on its own)."""

ATT_ERRORS = {
    0x01: "invalid handle",
    0x02: "read not permitted",
    0x03: "write not permitted",
    0x05: "insufficient authentication",
    0x06: "request not supported",
    0x07: "invalid offset",
    0x08: "insufficient authorization",
    0x0D: "invalid attribute value length",
    0x0E: "unlikely error",
    0x0F: "insufficient encryption",
}


def _att_error(exc: BleakGATTProtocolError, what: str) -> DeviceError:
    code = int(getattr(exc, "code", 0) or 0)
    text = ATT_ERRORS.get(code, "application error" if code >= 0x80 else "ATT error")
    return DeviceError(f"{what}: {text}", code=f"0x{code:02x}")


class BluetoothDriver(Driver[BluetoothConfig, BluetoothVisitor]):
    protocol = "bluetooth"
    config_model = BluetoothConfig
    visitor_model = BluetoothVisitor
    settings_model = BluetoothSettings
    max_batch = 64
    """Everything a poll reads shares one connection (one slot taken once per poll)."""

    _adapter: adapters.Adapter | None = None
    _client: BleakClient | None = None
    _holding = False
    """Whether this (stay-connected) device holds one of its adapter's slots."""
    _lost: asyncio.Event | None = None
    _address: str | None = None

    # ------------------------------------------------------------- set-up

    def _visitors(self) -> list[BluetoothVisitor]:
        found = []
        for prop in self.device.spec.properties or []:
            raw = dict((prop.visitors.config_data if prop.visitors else None) or {})
            raw.pop("report", None)
            try:
                found.append(BluetoothVisitor.model_validate(raw))
            except ValidationError:  # the runtime reports it, and does not serve the property
                continue
        return found

    @property
    def stays_connected(self) -> bool:
        if self.config.stay_connected is not None:
            return self.config.stay_connected
        return any(v.operation is Operation.NOTIFY for v in self._visitors())

    @property
    def advertisement_only(self) -> bool:
        visitors = self._visitors()
        return bool(visitors) and all(v.operation is Operation.ADVERTISEMENT for v in visitors)

    @property
    def who(self) -> str:
        return f"{self.device.key} ({self.config.describe()})"

    def _matches(self, device: BLEDevice, data: AdvertisementData) -> bool:
        config = self.config
        if config.mac_address is not None and device.address.upper() != config.mac_address:
            return False
        if config.name is not None and (data.local_name or device.name) != config.name:
            return False
        return config.service_uuid is None or config.service_uuid in data.service_uuids

    async def connect(self) -> None:
        settings = self.settings
        assert isinstance(settings, BluetoothSettings)
        adapter = self._adapter = adapters.acquire(self.config.adapter, settings)
        self._lost = asyncio.Event()
        if self.advertisement_only:
            await self._locate()
        elif self.stays_connected:
            await adapter.take_slot(self.config.connect_timeout, self.who)
            try:
                self._client = await self._open()
            except BaseException:
                adapter.give_slot()
                raise
            self._holding = True

    async def _locate(self) -> BLEDevice:
        """The device as last advertised (its address, or the configured name/service matched).

        Connecting only to a device heard advertising lately keeps a device that is gone from
        holding the adapter's connection initiator (one connection attempt at a time) for a whole
        connect timeout: it is reported as not advertising, and the others go on.
        """
        assert self._adapter is not None
        timeout = self.config.connect_timeout
        try:
            device, _ = await self._adapter.find(self._matches, timeout)
        except TimeoutError:
            raise DeviceUnreachable(f"{self.who}: not advertising (nothing heard in {timeout:g}s)") from None
        self._address = device.address.upper()
        return device

    async def _open(self) -> BleakClient:
        assert self._adapter is not None
        target = await self._locate()
        lost = self._lost

        adapter = self._adapter

        def disconnected(client: BleakClient) -> None:
            adapter.forget(client.address)
            if lost is not None:
                lost.set()

        client = BleakClient(
            target,
            disconnected_callback=disconnected,
            timeout=self.config.connect_timeout,
            pair=self.config.pair,
            **self._adapter.client_kwargs(),
        )
        log.debug("%s: connecting to %s", self.who, target.address)
        try:
            await client.connect()
        except (BleakError, OSError, TimeoutError) as exc:
            adapter.forget(target.address)
            raise DeviceUnreachable(f"{self.who}: cannot connect: {exc or type(exc).__name__}") from exc
        self._adapter.connects += 1
        log.debug("%s: connected", self.who)
        return client

    async def close(self) -> None:
        client, self._client = self._client, None
        adapter, self._adapter = self._adapter, None
        holding, self._holding = self._holding, False
        try:
            if client is not None:
                await _disconnect(client)
        finally:
            if adapter is not None:
                if holding:
                    adapter.give_slot()
                await adapters.release(adapter)

    # ------------------------------------------------------------- reads and writes

    async def read(self, prop: Property[BluetoothVisitor]) -> Any:
        (value,) = await self.read_many([prop])
        if isinstance(value, Exception):
            raise value
        return value

    async def read_many(self, props: Sequence[Property[BluetoothVisitor]]) -> list[Any]:
        advertised = {
            p.name: self._advertised(p) for p in props if p.visitor.operation is Operation.ADVERTISEMENT
        }
        gatt = [p for p in props if p.name not in advertised]
        values: dict[str, Any] = dict(advertised)
        if gatt:
            async with self._connection() as client:
                for prop in gatt:
                    values[prop.name] = await self._read_one(client, prop)
        return [values[p.name] for p in props]

    async def write(self, prop: Property[BluetoothVisitor], value: Any) -> None:
        visitor = prop.visitor
        if visitor.operation is Operation.ADVERTISEMENT:
            raise DeviceError(f"{prop.name}: an advertised value cannot be written")
        data = encode(visitor, prop.type, value)
        async with self._connection() as client:
            char = self._characteristic(client, prop)
            try:
                await client.write_gatt_char(char, data, response=visitor.write_response)
            except BleakGATTProtocolError as exc:
                raise _att_error(exc, f"writing {visitor.describe()}") from exc
            except (BleakError, OSError) as exc:
                raise DeviceUnreachable(f"{self.who}: writing {prop.name}: {exc}") from exc

    def _connection(self) -> Any:
        return _Connection(self)

    def _characteristic(
        self, client: BleakClient, prop: Property[BluetoothVisitor]
    ) -> BleakGATTCharacteristic:
        visitor = prop.visitor
        services = client.services
        for service in services:
            if visitor.service_uuid is not None and service.uuid != visitor.service_uuid:
                continue
            char = service.get_characteristic(visitor.characteristic_uuid or "")
            if char is not None:
                return char
        where = f" in service {visitor.service_uuid}" if visitor.service_uuid else ""
        raise DeviceError(f"the device has no {visitor.describe()}{where}")

    async def _read_one(self, client: BleakClient, prop: Property[BluetoothVisitor]) -> Any:
        try:
            char = self._characteristic(client, prop)
            data = await client.read_gatt_char(char)
        except BleakGATTProtocolError as exc:
            return _att_error(exc, f"reading {prop.visitor.describe()}")
        except (BleakCharacteristicNotFoundError, DeviceError) as exc:
            return exc if isinstance(exc, DeviceError) else DeviceError(str(exc))
        except (BleakError, OSError) as exc:
            raise DeviceUnreachable(f"{self.who}: reading {prop.name}: {exc}") from exc
        try:
            return decode(prop.visitor, prop.type, bytes(data))
        except DeviceError as exc:
            return exc

    def _advertised(self, prop: Property[BluetoothVisitor]) -> Any:
        assert self._adapter is not None
        seen = self._adapter.seen.get(self._address or "")
        if seen is None:
            return DeviceError(f"no advertisement from {self.who} yet")
        value = _advertised_bytes(prop.visitor, seen[1])
        if value is None:
            return DeviceError(f"the advertisement has no {prop.visitor.describe()}")
        try:
            return decode(prop.visitor, prop.type, value)
        except DeviceError as exc:
            return exc

    # ------------------------------------------------------------- push

    def pushes(self, prop: Property[BluetoothVisitor]) -> bool:
        if prop.visitor.operation is Operation.NOTIFY:
            return self.stays_connected
        return prop.visitor.operation is Operation.ADVERTISEMENT

    async def subscribe(self, props: Sequence[Property[BluetoothVisitor]], emit: Emit) -> None:
        assert self._adapter is not None and self._lost is not None
        notified = [p for p in props if p.visitor.operation is Operation.NOTIFY]
        advertised = [p for p in props if p.visitor.operation is Operation.ADVERTISEMENT]
        heard = asyncio.Event()
        stop_listening = None
        if advertised:

            def on_advertisement(device: BLEDevice, data: AdvertisementData) -> None:
                if not self._matches(device, data):
                    return
                self._address = device.address.upper()
                heard.set()
                for prop in advertised:
                    raw = _advertised_bytes(prop.visitor, data)
                    if raw is None:
                        continue  # this advertisement carries other data (a scan response)
                    try:
                        emit(prop.name, decode(prop.visitor, prop.type, raw))
                    except DeviceError as exc:
                        emit(prop.name, exc)

            stop_listening = await self._adapter.listen(on_advertisement)
        try:
            if notified:
                client = self._client
                if client is None:
                    raise DeviceUnreachable(f"{self.who}: not connected")
                for prop in notified:
                    await self._start_notify(client, prop, emit)
            await self._wait_until_lost(heard if advertised and not self.stays_connected else None)
        finally:
            if stop_listening is not None:
                stop_listening()

    async def _start_notify(self, client: BleakClient, prop: Property[BluetoothVisitor], emit: Emit) -> None:
        visitor = prop.visitor

        def on_value(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            try:
                emit(prop.name, decode(visitor, prop.type, bytes(data)))
            except DeviceError as exc:
                emit(prop.name, exc)

        try:
            char = self._characteristic(client, prop)
            await client.start_notify(char, on_value)
        except DeviceError as exc:
            emit(prop.name, exc)
        except BleakGATTProtocolError as exc:
            emit(prop.name, _att_error(exc, f"subscribing to {visitor.describe()}"))
        except (BleakError, OSError) as exc:
            raise DeviceUnreachable(f"{self.who}: subscribing to {prop.name}: {exc}") from exc
        else:
            # a value now, as a poll would give: a notification comes only at the next change
            if "read" in char.properties:
                emit(prop.name, await self._read_one(client, prop))

    async def _wait_until_lost(self, heard: asyncio.Event | None) -> None:
        assert self._lost is not None
        if heard is None:
            await self._lost.wait()
            raise DeviceUnreachable(f"{self.who}: disconnected")
        timeout = self.config.advertisement_timeout
        while True:
            heard.clear()
            try:
                await asyncio.wait_for(heard.wait(), timeout)
            except TimeoutError:
                raise DeviceUnreachable(f"{self.who}: no advertisement for {timeout:g}s") from None


class _Connection:
    """``async with``: the device's open connection, or one opened for this poll (in a slot)."""

    def __init__(self, driver: BluetoothDriver) -> None:
        self.driver = driver
        self.client: BleakClient | None = None
        self.adapter: adapters.Adapter | None = None

    async def __aenter__(self) -> BleakClient:
        driver = self.driver
        if driver.stays_connected:
            if driver._client is None or not driver._client.is_connected:
                raise DeviceUnreachable(f"{driver.who}: disconnected")
            return driver._client
        adapter = driver._adapter
        assert adapter is not None
        await adapter.take_slot(driver.config.connect_timeout, driver.who)
        try:
            self.client = await driver._open()
        except BaseException:
            adapter.give_slot()
            raise
        self.adapter = adapter
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        client, self.client = self.client, None
        adapter, self.adapter = self.adapter, None
        if client is None or adapter is None:
            return
        try:
            await _disconnect(client)
        finally:
            adapter.not_heard(client.address)
            adapter.give_slot()


async def _disconnect(client: BleakClient) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), DISCONNECT_TIMEOUT_S)
    except Exception:  # already gone: nothing to release on the device's side
        log.debug("disconnect failed", exc_info=True)


def _advertised_bytes(visitor: BluetoothVisitor, data: AdvertisementData) -> bytes | None:
    if visitor.service_data_uuid is not None:
        return data.service_data.get(visitor.service_data_uuid)
    if visitor.manufacturer_id is not None:
        return data.manufacturer_data.get(visitor.manufacturer_id)
    return None
