"""A bleak backend on Google's Bumble host stack: bleak's API with Bumble's HCI, L2CAP, ATT/GATT.

bleak 3 takes a backend class (``BleakClient(..., backend=BumbleClient, radio=radio)``); extra
keyword arguments reach the backend, which is how a :class:`BumbleRadio` (one Bumble host on one
HCI transport: a USB dongle ``usb:0``, a UART ``serial:/dev/ttyACM0``, or an emulated controller
``tcp-client:127.0.0.1:9001``) is handed over. The mapper uses it with ``backend: bumble`` (a
machine without BlueZ, or tests); production on Linux normally uses bleak's native BlueZ backend.

Bumble's central can have one connection attempt pending at a time, so connects on one radio are
serialised; established connections run side by side.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid as uuid_module
from collections.abc import Callable
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bumble.att import ATT_Error
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt import Characteristic
from bumble.gatt_client import CharacteristicProxy, DescriptorProxy, ServiceProxy
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink, Transport

log = logging.getLogger(__name__)

CENTRAL_ADDRESS = "C0:00:00:00:00:01"
UUID_LISTS = (0x02, 0x03, 0x04, 0x05, 0x06, 0x07)
"""AD types of incomplete/complete lists of 16-, 32- and 128-bit service UUIDs."""
SERVICE_DATA = (0x16, 0x20, 0x21)
"""AD types of service data with a 16-, 32- and 128-bit UUID."""


def bleak_uuid(value: UUID) -> str:
    """A Bumble UUID as bleak writes it (128-bit, lower case)."""
    return str(uuid_module.UUID(bytes=bytes(reversed(value.to_bytes(force_128=True)))))


def static_address(seed: str) -> str:
    """A static random address made from ``seed`` (the two top bits set, as the spec wants): each
    adapter's host gets its own, stable across restarts (two hosts with one address on a link
    would get each other's packets)."""
    digest = hashlib.sha256(seed.encode()).digest()[:6]
    first = 0xC0 | (digest[0] & 0x3F)
    return ":".join(f"{b:02X}" for b in (first, *digest[1:]))


class BumbleRadio:
    """One Bumble host (the central) on an HCI transport, or on a :class:`LocalLink` in process;
    the bleak scanners and clients of one adapter share it."""

    def __init__(
        self, transport: str | None = None, link: LocalLink | None = None, address: str | None = None
    ) -> None:
        if (transport is None) == (link is None):
            raise ValueError("a BumbleRadio needs a transport or a link")
        self.transport_spec = transport
        self.link = link
        self.address = address or (static_address(transport) if transport else CENTRAL_ADDRESS)
        self.device: Device | None = None
        self.connect_lock = asyncio.Lock()
        self.gatt_cache: dict[str, list[CachedService]] = {}
        """Each device's attribute table as discovered, by address: a device connected again (each
        poll) is not discovered again, as BlueZ caches it. Dropped when the device drops the link
        or refuses a handle."""
        self._transport: Transport | None = None
        self._lock = asyncio.Lock()

    async def central(self) -> Device:
        """The powered-on Bumble device (opened on first use)."""
        async with self._lock:
            if self.device is None:
                if self.transport_spec is not None:
                    self._transport = await open_transport(self.transport_spec)
                    device = Device.with_hci(
                        "kubeedge", Address(self.address), self._transport.source, self._transport.sink
                    )
                else:
                    controller = Controller("kubeedge", link=self.link, public_address=self.address)
                    device = Device(
                        address=Address(self.address), host=Host(controller, AsyncPipeSink(controller))
                    )
                await device.power_on()
                self.device = device
            return self.device

    async def close(self) -> None:
        async with self._lock:
            device, self.device = self.device, None
            transport, self._transport = self._transport, None
            try:
                if device is not None:
                    await device.power_off()
            except Exception:  # a transport already gone: nothing to switch off
                log.debug("powering off %s failed", self.transport_spec, exc_info=True)
            if transport is not None:
                await transport.close()


CachedDescriptor = tuple[int, UUID]
CachedCharacteristic = tuple[int, int, UUID, int, list[CachedDescriptor]]
CachedService = tuple[int, int, UUID, list[CachedCharacteristic]]


def _snapshot(peer: Peer) -> list[CachedService]:
    return [
        (
            service.handle,
            service.end_group_handle,
            service.uuid,
            [
                (
                    char.handle,
                    char.end_group_handle,
                    char.uuid,
                    int(char.properties),
                    [(d.handle, d.type) for d in char.descriptors],
                )
                for char in service.characteristics
            ],
        )
        for service in peer.services
    ]


def _restore(peer: Peer, cached: list[CachedService]) -> None:
    client = peer.gatt_client
    for handle, end, uuid, chars in cached:
        service = ServiceProxy(client, handle, end, uuid)
        for char_handle, char_end, char_uuid, properties, descriptors in chars:
            char = CharacteristicProxy(client, char_handle, char_end, char_uuid, properties)
            char.descriptors = [DescriptorProxy(client, h, kind) for h, kind in descriptors]
            char.descriptors_discovered = True
            service.characteristics.append(char)
        client.services.append(service)


def _radio(kwargs: dict[str, Any]) -> BumbleRadio:
    radio = kwargs.get("radio")
    if not isinstance(radio, BumbleRadio):
        raise BleakError("the Bumble backend needs radio=BumbleRadio(...)")
    return radio


def advertisement_data(advertisement: Advertisement) -> tuple[str | None, AdvertisementData]:
    """The local name and bleak's AdvertisementData of a Bumble advertisement."""
    data: AdvertisingData = advertisement.data
    name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(AdvertisingData.SHORTENED_LOCAL_NAME)
    # dict.fromkeys: once each (an advertisement and its scan response may both list a UUID)
    uuids = list(
        dict.fromkeys(bleak_uuid(u) for kind in UUID_LISTS for listed in data.get_all(kind) for u in listed)
    )
    service_data = {bleak_uuid(u): bytes(v) for kind in SERVICE_DATA for (u, v) in data.get_all(kind)}
    manufacturer = {
        company: bytes(v) for (company, v) in data.get_all(AdvertisingData.MANUFACTURER_SPECIFIC_DATA)
    }
    text = str(name) if name is not None else None
    return text, AdvertisementData(
        local_name=text,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=uuids,
        tx_power=data.get(AdvertisingData.TX_POWER_LEVEL),
        rssi=advertisement.rssi,
        platform_data=(advertisement,),
    )


def address_text(address: Address) -> str:
    return str(address).split("/")[0]  # Bumble writes "/P" after a public address


class BumbleScanner(BaseBleakScanner):
    """bleak's scanner on a :class:`BumbleRadio` (pass ``radio=`` to ``BleakScanner``)."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._radio = _radio(kwargs)
        self._active = scanning_mode == "active"
        self._device: Device | None = None

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        name, data = advertisement_data(advertisement)
        if not self.is_allowed_uuid(data.service_uuids):
            return
        address = address_text(advertisement.address)
        previous = self.seen_devices.get(address)
        if previous is not None and name is None:  # a scan response without the name
            name = previous[1].local_name
            data = data._replace(local_name=name)
        device = self.create_or_update_device(address, address, name, advertisement.address, data)
        self.call_detection_callbacks(device, data)

    async def start(self) -> None:
        self.seen_devices = {}
        self._device = await self._radio.central()
        self._device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        await self._device.start_scanning(active=self._active, filter_duplicates=False)

    async def stop(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            device.remove_listener(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
            if device.is_scanning:
                await device.stop_scanning()


INVALID_HANDLE = 0x01


def _protocol_error(exc: ATT_Error) -> BleakGATTProtocolError:
    return BleakGATTProtocolError(int(exc.error_code))


class BumbleClient(BaseBleakClient):
    """bleak's client on a :class:`BumbleRadio` (pass ``radio=`` to ``BleakClient``)."""

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.get("disconnected_callback"),
            timeout=kwargs.get("timeout", 10.0),
        )
        self._radio = _radio(kwargs)
        details = getattr(address_or_ble_device, "details", None)
        self._target = details if isinstance(details, Address) else Address(self.address)
        self._name: str | None = getattr(address_or_ble_device, "name", None)
        self._peer: Peer | None = None

    @property
    def name(self) -> str:
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return int(self._peer.connection.att_mtu) if self._peer is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._peer is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        central = await self._radio.central()
        try:
            async with self._radio.connect_lock:  # Bumble: one pending LE connection at a time
                connection: Connection = await central.connect(self._target, timeout=self._timeout)
        except TimeoutError as exc:
            raise BleakDeviceNotFoundError(self.address, f"connecting to {self.address} timed out") from exc
        except Exception as exc:  # Bumble's HCI errors: the device is not there
            raise BleakDeviceNotFoundError(self.address, f"cannot connect to {self.address}: {exc}") from exc
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
        peer = Peer(connection)
        self._peer = peer
        try:
            await asyncio.wait_for(peer.request_mtu(247), self._timeout)
            cached = self._radio.gatt_cache.get(self.address)
            if cached is not None:
                _restore(peer, cached)
                log.debug("%s: attribute table from the cache", self.address)
            else:
                log.debug("%s: discovering the attribute table", self.address)
                await asyncio.wait_for(peer.discover_all(), self._timeout)
                self._radio.gatt_cache[self.address] = _snapshot(peer)
            if pair:
                await connection.pair()
        except BaseException:
            await self.disconnect()
            raise
        self.services = self._services(peer)

    def _on_disconnection(self, _reason: int) -> None:
        was_connected, self._peer = self._peer is not None, None
        if was_connected:
            # the device dropped the link (a restart, maybe new firmware): discover it again
            self._radio.gatt_cache.pop(self.address, None)
            if self._disconnected_callback is not None:
                self._disconnected_callback()

    def _services(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        for service in peer.services:
            bleak_service = BleakGATTService(service, service.handle, bleak_uuid(service.uuid))
            collection.add_service(bleak_service)
            for char in service.characteristics:
                properties = [
                    flag.name.lower().replace("_", "-")
                    for flag in Characteristic.Properties
                    if flag.name and char.properties & flag
                ]
                bleak_char = BleakGATTCharacteristic(
                    char, char.handle, bleak_uuid(char.uuid), properties, self._max_write, bleak_service
                )
                collection.add_characteristic(bleak_char)
                for descriptor in char.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor, descriptor.handle, bleak_uuid(descriptor.type), bleak_char
                        )
                    )
        return collection

    def _max_write(self) -> int:
        return self.mtu_size - 3

    async def disconnect(self) -> None:
        peer, self._peer = self._peer, None
        if peer is not None:
            try:
                await peer.connection.disconnect()
            except Exception:  # already gone
                log.debug("disconnect from %s failed", self.address, exc_info=True)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        await self._require().connection.pair()

    async def unpair(self) -> None:
        raise NotImplementedError("the Bumble backend keeps no bonds to remove")

    def _refused(self, exc: ATT_Error) -> BleakGATTProtocolError:
        if int(exc.error_code) == INVALID_HANDLE:  # the device's table changed: discover it again
            self._radio.gatt_cache.pop(self.address, None)
        return _protocol_error(exc)

    def _require(self) -> Peer:
        if self._peer is None:
            raise BleakError(f"{self.address}: not connected")
        return self._peer

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        try:
            return bytearray(await self._require().read_value(characteristic.obj))
        except ATT_Error as exc:
            raise self._refused(exc) from exc

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        try:
            return bytearray(await self._require().read_value(descriptor.handle))
        except ATT_Error as exc:
            raise self._refused(exc) from exc

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: bytes | bytearray | memoryview, response: bool
    ) -> None:
        try:
            await self._require().write_value(characteristic.obj, bytes(data), with_response=response)
        except ATT_Error as exc:
            raise self._refused(exc) from exc

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: bytes | bytearray | memoryview
    ) -> None:
        try:
            await self._require().write_value(descriptor.handle, bytes(data), with_response=True)
        except ATT_Error as exc:
            raise self._refused(exc) from exc

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        deliver: Callable[[bytes], None] = lambda value: callback(bytearray(value))  # noqa: E731
        try:
            await self._require().subscribe(characteristic.obj, deliver, prefer_notify=True)
        except ATT_Error as exc:
            raise self._refused(exc) from exc

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        try:
            await self._require().unsubscribe(characteristic.obj)
        except ATT_Error as exc:
            raise self._refused(exc) from exc
