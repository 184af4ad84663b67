"""Bluetooth LE without a radio, for this mapper's tests and for other BLE mappers' own.

* :class:`EmulatedAir`: Bumble's virtual link layer in this process (a ``LocalLink``), with an HCI
  port per adapter (:meth:`EmulatedAir.open_adapter`: a virtual controller served on a loopback TCP
  port, the ``tcp-client:127.0.0.1:PORT`` transport a mapper with ``backend: bumble`` opens, from
  this process or another one such as ``kubeedge mapper discover``).
* :class:`EmulatedPeripheral`: a real Bumble GATT server on the air, with its characteristics'
  values held as bytes, ATT errors on demand (:meth:`EmulatedPeripheral.fail`), and disappearing
  and returning (:meth:`EmulatedPeripheral.stop`, :meth:`EmulatedPeripheral.start`).
* :class:`Thermometer` (notified temperature, battery, a writable alarm threshold and a
  write-without-response LED) and :class:`AdvertisingSensor` (BTHome-style service data only).
* :class:`BumbleRadio`, :class:`BumbleClient`, :class:`BumbleScanner`: the bleak backend on Bumble.

What is real: bleak's API, Bumble's host stacks on both sides (HCI, L2CAP, ATT/GATT), HCI packets
over TCP into the mapper. What is not: the radio (Bumble's virtual controllers pass link-layer
PDUs as Python objects) and the platform's stack (BlueZ). Traps handled here: peripherals use
random addresses (the virtual link stamps ACL data with them), advertise every 20 ms (the default
second makes every scan and connect slow), and refuse writes to read-only characteristics
themselves (Bumble's GATT server does not check permissions, and a client would wait for its
30 s ATT timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from bumble import data_types
from bumble.att import ATT_Error, ErrorCode
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink, StreamPacketSink, StreamPacketSource

from kubeedge_mapper_bluetooth.bumble_backend import BumbleClient, BumbleRadio, BumbleScanner

__all__ = [
    "AdvertisingSensor",
    "BumbleClient",
    "BumbleRadio",
    "BumbleScanner",
    "EmulatedAir",
    "EmulatedPeripheral",
    "GattPoint",
    "Thermometer",
    "uuid16",
]

ADVERTISING_INTERVAL_MS = 20
APPLICATION_ERROR = 0x80
"""The ATT error an emulated characteristic answers with while it fails."""
BTHOME = "fcd2"


def uuid16(short: str) -> str:
    """``2a6e`` as the 128-bit UUID bleak reports."""
    return f"0000{short.lower()}-0000-1000-8000-00805f9b34fb"


def _bumble_uuid(text: str) -> UUID:
    return UUID.from_16_bits(int(text, 16)) if len(text) == 4 else UUID(text)


class EmulatedAir:
    """Bumble's virtual link in this process: peripherals join it, adapters reach it over TCP."""

    def __init__(self) -> None:
        self.link = LocalLink()
        self.peripherals: list[EmulatedPeripheral] = []
        self.peak_connections = 0
        """The most connections open at once, counted at the peripherals."""
        self.connections_made = 0
        self._servers: list[asyncio.Server] = []
        self._ports: set[_HciPort] = set()
        self._tasks: set[asyncio.Future[None]] = set()

    async def open_adapter(self, name: str = "hci0") -> str:
        """An HCI port on the air (loopback TCP); its transport spec. Each host that connects gets
        a fresh virtual controller, as a dongle plugged in again starts from reset."""
        server = await asyncio.get_running_loop().create_server(
            lambda: _HciPort(self, name), "127.0.0.1", 0, family=socket.AF_INET
        )
        self._servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"tcp-client:127.0.0.1:{port}"

    def connected(self) -> int:
        return sum(len(p.connections) for p in self.peripherals)

    def _changed(self) -> None:
        self.peak_connections = max(self.peak_connections, self.connected())

    async def close(self) -> None:
        for peripheral in list(self.peripherals):
            await peripheral.stop()
        for server in self._servers:
            server.close()
        for port in list(self._ports):
            port.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


class _HciPort(asyncio.Protocol):
    """One host on an adapter port: H4 packets over TCP to and from its own virtual controller."""

    def __init__(self, air: EmulatedAir, name: str) -> None:
        self.air = air
        self.name = name
        self.controller: Controller | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        # without it each HCI packet after another waits ~40 ms for a delayed ACK (Nagle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.source = StreamPacketSource()
        self.controller = Controller(
            self.name, host_source=self.source, host_sink=StreamPacketSink(transport), link=self.air.link
        )
        self.air._ports.add(self)

    def data_received(self, data: bytes) -> None:
        self.source.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.air._ports.discard(self)
        controller, self.controller = self.controller, None
        if controller is None:
            return
        # the host is gone, and its links with it: the peripherals see a disconnection
        peers = {str(address).split("/")[0] for address in controller.le_connections}
        self.air.link.remove_controller(controller)
        for peripheral in self.air.peripherals:
            if peripheral.address in peers:
                for connection in list(peripheral.connections):
                    task = asyncio.ensure_future(_quietly(connection.disconnect()))
                    self.air._tasks.add(task)
                    task.add_done_callback(self.air._tasks.discard)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _quietly(step: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(step, 2)


@dataclass
class GattPoint:
    """One characteristic of an emulated peripheral, its value kept as the bytes it carries."""

    uuid: str
    """16-bit (``2a6e``) or 128-bit."""
    value: bytes
    readable: bool = True
    writable: bool = False
    write_without_response: bool = False
    notify: bool = False
    size: int | None = None
    """Bytes a write must have (the device's own rule); None: any length."""
    service: str = "181a"
    failing: bool = False
    writes: list[bytes] = field(default_factory=list)
    characteristic: Any = None


class EmulatedPeripheral:
    """A BLE peripheral: a Bumble GATT server advertising on an :class:`EmulatedAir`."""

    def __init__(
        self,
        name: str,
        address: str,
        points: list[GattPoint],
        manufacturer: bytes | None = b"\x01\x02",
        advertising_interval_ms: float = ADVERTISING_INTERVAL_MS,
    ) -> None:
        self.name = name
        self.advertising_interval_ms = advertising_interval_ms
        """Many peripherals at 20 ms cost the scanning host (Python) much CPU: a benchmark of
        dozens uses what real devices do (100 ms to 1 s)."""
        self.address = address
        self.points = {p.uuid: p for p in points}
        self.manufacturer = manufacturer
        self.connections: set[Connection] = set()
        self.service_data: dict[str, bytes] = {}
        self.device: Device | None = None
        self.air: EmulatedAir | None = None
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self.device is not None

    def _characteristics(self) -> list[Service]:
        services: dict[str, list[Characteristic[bytes]]] = {}
        for point in self.points.values():
            flags = Characteristic.Properties(0)
            permissions = Characteristic.Permissions(0)
            if point.readable:
                flags |= Characteristic.Properties.READ
                permissions |= Characteristic.READABLE
            if point.writable:
                flags |= Characteristic.Properties.WRITE
                permissions |= Characteristic.WRITEABLE
            if point.write_without_response:
                flags |= Characteristic.Properties.WRITE_WITHOUT_RESPONSE
                permissions |= Characteristic.WRITEABLE
            if point.notify:
                flags |= Characteristic.Properties.NOTIFY
            point.characteristic = Characteristic(
                _bumble_uuid(point.uuid),
                flags,
                permissions,
                CharacteristicValue(read=self._reader(point), write=self._writer(point)),
            )
            services.setdefault(point.service, []).append(point.characteristic)
        return [Service(_bumble_uuid(uuid), chars) for uuid, chars in services.items()]

    def _reader(self, point: GattPoint) -> Any:
        def read(_connection: Connection) -> bytes:
            if point.failing:
                raise ATT_Error(APPLICATION_ERROR)
            if not point.readable:
                raise ATT_Error(ErrorCode.READ_NOT_PERMITTED)
            return point.value

        return read

    def _writer(self, point: GattPoint) -> Any:
        def write(_connection: Connection, value: bytes) -> None:
            # Bumble's GATT server does not check permissions: refuse here, as a device does
            if not (point.writable or point.write_without_response):
                raise ATT_Error(ErrorCode.WRITE_NOT_PERMITTED)
            if point.failing:
                raise ATT_Error(APPLICATION_ERROR)
            if point.size is not None and len(value) != point.size:
                raise ATT_Error(ErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH)
            point.value = bytes(value)
            point.writes.append(point.value)

        return write

    def _advertising_data(self) -> bytes:
        services = {p.service for p in self.points.values()}
        entries: list[Any] = [
            data_types.Flags(
                AdvertisingData.Flags.LE_GENERAL_DISCOVERABLE_MODE
                | AdvertisingData.Flags.BR_EDR_NOT_SUPPORTED
            ),
            data_types.CompleteLocalName(self.name),
        ]
        short = [_bumble_uuid(s) for s in sorted(services) if len(s) == 4]
        if short:
            entries.append(data_types.IncompleteListOf16BitServiceUUIDs(short))
        for uuid, data in self.service_data.items():
            entries.append(data_types.ServiceData16BitUUID(_bumble_uuid(uuid), data))
        if self.manufacturer is not None:
            entries.append(data_types.ManufacturerSpecificData(0xFFFF, self.manufacturer))
        return bytes(AdvertisingData(entries))

    async def start(self, air: EmulatedAir | None = None) -> None:
        """Join the air (again) and advertise; values and writes are kept across stop/start."""
        if air is not None:
            self.air = air
        assert self.air is not None, "start(air) first"
        if self.device is not None:
            return
        if self not in self.air.peripherals:
            self.air.peripherals.append(self)
        controller = Controller(self.name, link=self.air.link, public_address=self.address)
        device = Device(
            name=self.name, address=Address(self.address), host=Host(controller, AsyncPipeSink(controller))
        )
        services = self._characteristics()
        if services and any(p.readable or p.writable or p.notify for p in self.points.values()):
            device.add_services(services)
        device.advertising_data = self._advertising_data()
        device.on(Device.EVENT_CONNECTION, self._on_connection)
        await device.power_on()
        await device.start_advertising(
            auto_restart=True,
            advertising_interval_min=self.advertising_interval_ms,
            advertising_interval_max=self.advertising_interval_ms,
        )
        self._controller, self.device = controller, device

    def _on_connection(self, connection: Connection) -> None:
        self.connections.add(connection)
        if self.air is not None:
            self.air.connections_made += 1
            self.air._changed()

        def gone(_reason: int) -> None:
            self.connections.discard(connection)

        connection.on(connection.EVENT_DISCONNECTION, gone)

    async def stop(self) -> None:
        """Disappear: drop every connection, stop advertising, leave the air."""
        device, self.device = self.device, None
        controller, self._controller = self._controller, None
        if device is None:
            return
        advertiser = device.legacy_advertiser
        if advertiser is not None:
            advertiser.auto_restart = False  # gone: no advertising again after the disconnection
        with contextlib.suppress(Exception):  # not advertising while connected
            await device.stop_advertising()
        await asyncio.sleep(0.05)  # let advertisements already sent land before the disconnection
        for connection in list(self.connections):
            with contextlib.suppress(Exception):  # the central went first
                await asyncio.wait_for(connection.disconnect(), 2)
        self.connections.clear()
        if controller is not None and self.air is not None:
            self.air.link.remove_controller(controller)

    async def set(self, uuid: str, value: bytes) -> None:
        """Change a characteristic's value on the device; subscribers are notified."""
        point = self.points[uuid]
        point.value = bytes(value)
        if point.notify and self.device is not None and point.characteristic is not None:
            await self.device.notify_subscribers(point.characteristic, point.value)

    def fail(self, uuid: str, failing: bool) -> None:
        """Answer reads and writes of ``uuid`` with an ATT application error (0x80) or stop."""
        self.points[uuid].failing = failing

    async def advertise(self, service_uuid: str, data: bytes) -> None:
        """Put ``data`` in the advertisement's service data of ``service_uuid`` (16-bit)."""
        self.service_data[service_uuid] = bytes(data)
        device = self.device
        if device is not None:
            await device.stop_advertising()
            device.advertising_data = self._advertising_data()
            await device.start_advertising(
                auto_restart=True,
                advertising_interval_min=self.advertising_interval_ms,
                advertising_interval_max=self.advertising_interval_ms,
            )


THERMOMETER_POINTS = {
    "temperature": uuid16("2a6e"),
    "battery": uuid16("2a19"),
    "threshold": "8f1c0001-2b6c-4d3a-9e7f-1a2b3c4d5e6f",
    "led": "8f1c0002-2b6c-4d3a-9e7f-1a2b3c4d5e6f",
}


class Thermometer(EmulatedPeripheral):
    """An Environmental Sensing thermometer: temperature (0x2A6E, sint16 0.01 degC, read and
    notify), battery (0x2A19, uint8 %), an alarm threshold (sint16 0.01 degC, read and write) and
    an LED (uint8, write without response)."""

    def __init__(
        self, name: str = "Thermo-1", address: str = "F0:F0:F0:F0:F0:01", temperature: float = 21.5
    ) -> None:
        super().__init__(
            name,
            address,
            [
                GattPoint("2a6e", struct.pack("<h", round(temperature * 100)), notify=True),
                GattPoint("2a19", bytes([87]), service="180f"),
                GattPoint(THERMOMETER_POINTS["threshold"], struct.pack("<h", 800), writable=True, size=2),
                GattPoint(THERMOMETER_POINTS["led"], b"\x00", write_without_response=True, size=1),
            ],
        )

    @property
    def temperature(self) -> float:
        return float(struct.unpack("<h", self.points["2a6e"].value)[0]) / 100

    async def set_temperature(self, celsius: float) -> None:
        await self.set("2a6e", struct.pack("<h", round(celsius * 100)))

    @property
    def threshold(self) -> float:
        return float(struct.unpack("<h", self.points[THERMOMETER_POINTS["threshold"]].value)[0]) / 100


class AdvertisingSensor(EmulatedPeripheral):
    """A BTHome-style sensor that only advertises: service data 0xFCD2 with a device-info byte
    (0x40: BTHome v2, not encrypted), then temperature (object 0x02, sint16 0.01 degC) and
    humidity (object 0x03, uint16 0.01 %)."""

    def __init__(self, name: str = "Sensor-1", address: str = "F0:F0:F0:F0:F1:01") -> None:
        super().__init__(name, address, [], manufacturer=None)
        self.service_data[BTHOME] = self.encode(20.0, 50.0)

    @staticmethod
    def encode(temperature: float, humidity: float) -> bytes:
        return (
            b"\x40"
            + struct.pack("<Bh", 0x02, round(temperature * 100))
            + struct.pack("<BH", 0x03, round(humidity * 100))
        )

    async def report(self, temperature: float, humidity: float) -> None:
        await self.advertise(BTHOME, self.encode(temperature, humidity))
