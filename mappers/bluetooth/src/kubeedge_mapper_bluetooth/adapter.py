"""A Bluetooth adapter as the mapper's devices share it: connection slots, one scanner, one radio.

A BLE adapter holds a handful of connections at once (3 to 7 on common controllers). Every device
of an adapter takes a slot (:meth:`Adapter.take_slot`) while it is connected and waits in line
(first come, first served) when none is free, so a busy adapter delays a poll instead of failing
it; a device that waits longer than its ``connectTimeout`` is reported offline with the reason.
Advertisements are watched by one scanner per adapter, started when a device first needs it
(every connection starts from a recent advertisement; advertisement-only sensors read nothing
else) and stopped with the adapter: advertised values cost no connection and no slot.

Adapters live per event loop, shared by the drivers on it, and close when the last driver leaves.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from kubeedge import DeviceUnreachable
from kubeedge_mapper_bluetooth.config import BluetoothSettings

log = logging.getLogger(__name__)

Listener = Callable[[BLEDevice, AdvertisementData], None]
NO_BLUEZ = (
    "no D-Bus system bus, so no BlueZ: run bluetoothd (and dbus), or use backend: bumble"
    " with the adapter's HCI transport"
)
RECENT_S = 5.0
"""An advertisement this recent shows a device is there (else :meth:`Adapter.find` waits for one)."""


class Adapter:
    """One adapter: its slots (:meth:`take_slot`), its scanner (:meth:`listen`, :meth:`find`), and the
    keyword arguments that make bleak use it (:meth:`client_kwargs`)."""

    def __init__(self, name: str, settings: BluetoothSettings) -> None:
        self.name = name
        self.capacity = settings.slots(name)
        self.in_use = 0
        self.waiting = 0
        self.peak = 0
        """The most connections held at once (what a test of the slot limit looks at)."""
        self.connects = 0
        """Connections opened so far (connection churn)."""
        self._slots = asyncio.Semaphore(self.capacity)
        self._scan_mode = settings.scan_mode
        self._listeners: set[Listener] = set()
        self._scanner: BleakScanner | None = None
        self._scan_lock = asyncio.Lock()
        self.seen: dict[str, tuple[BLEDevice, AdvertisementData, float]] = {}
        self.users = 0
        self.radio: Any = None
        self._backend: Any = None
        self._scanner_backend: Any = None
        if settings.backend == "bumble":
            from kubeedge_mapper_bluetooth.bumble_backend import BumbleClient, BumbleRadio, BumbleScanner

            own = settings.adapters.get(name)
            if own is None or not own.transport:
                raise DeviceUnreachable(
                    f"adapter {name!r} has no HCI transport: give mappers.bluetooth.adapters.{name}.transport"
                )
            self.radio = BumbleRadio(transport=own.transport)
            self._backend, self._scanner_backend = BumbleClient, BumbleScanner

    def backend_kwargs(self) -> dict[str, Any]:
        """What bleak's ``BleakClient``/``BleakScanner`` need to use this adapter."""
        if self.radio is not None:
            return {"radio": self.radio}
        return {"bluez": {"adapter": self.name}}

    def client_kwargs(self) -> dict[str, Any]:
        return {"backend": self._backend, **self.backend_kwargs()}

    # ------------------------------------------------------------------ slots

    async def take_slot(self, timeout: float, who: str) -> None:
        """Wait in line for a connection slot, at most ``timeout`` seconds; :meth:`give_slot` it
        back. Cancelled while waiting, it holds nothing."""
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout)
        except TimeoutError:
            raise DeviceUnreachable(
                f"{who}: no free connection slot on adapter {self.name} within {timeout:g}s"
                f" ({self.in_use} of {self.capacity} in use, {self.waiting - 1} waiting)"
            ) from None
        finally:
            self.waiting -= 1
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)

    def give_slot(self) -> None:
        self.in_use -= 1
        self._slots.release()

    # ---------------------------------------------------------------- scanning

    def _on_advertisement(self, device: BLEDevice, data: AdvertisementData) -> None:
        self.seen[device.address.upper()] = (device, data, time.monotonic())
        for listener in list(self._listeners):
            try:
                listener(device, data)
            except Exception:  # one device's bad listener must not stop the others'
                log.exception("adapter %s: advertisement listener failed", self.name)

    async def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every advertisement until the returned function is called."""
        async with self._scan_lock:
            self._listeners.add(listener)
            if self._scanner is None:
                scanner = BleakScanner(
                    self._on_advertisement,
                    scanning_mode=self._scan_mode,
                    backend=self._scanner_backend,
                    **self.backend_kwargs(),
                )
                try:
                    await scanner.start()
                except FileNotFoundError as exc:  # bleak on Linux: no D-Bus system bus socket
                    self._listeners.discard(listener)
                    raise DeviceUnreachable(f"adapter {self.name}: {NO_BLUEZ} ({exc})") from exc
                except BaseException:
                    self._listeners.discard(listener)
                    raise
                self._scanner = scanner

        def stop() -> None:
            self._listeners.discard(listener)

        return stop

    async def find(
        self, matches: Callable[[BLEDevice, AdvertisementData], bool], timeout: float
    ) -> tuple[BLEDevice, AdvertisementData]:
        """The first device whose advertisement ``matches`` (a recent one counts); raises
        ``TimeoutError`` after ``timeout`` seconds."""
        now = time.monotonic()
        for device, data, when in list(self.seen.values()):
            if now - when < RECENT_S and matches(device, data):
                return device, data
        found: asyncio.Future[tuple[BLEDevice, AdvertisementData]] = (
            asyncio.get_running_loop().create_future()
        )

        def check(device: BLEDevice, data: AdvertisementData) -> None:
            if not found.done() and matches(device, data):
                found.set_result((device, data))

        stop = await self.listen(check)
        try:
            return await asyncio.wait_for(found, timeout)
        finally:
            stop()

    def not_heard(self, address: str) -> None:
        """Drop the last advertisement of ``address``: after a disconnection a device advertises
        again only after a while, and a connection attempt before that is lost (it holds the
        adapter's initiator until it times out). The next :meth:`find` waits for a new one."""
        self.seen.pop(address.upper(), None)

    def forget(self, address: str) -> None:
        """Drop what was heard from ``address`` (it went away): the next :meth:`find` waits for
        a new advertisement instead of trying to connect to a device that is not there."""
        self.seen.pop(address.upper(), None)
        if self.radio is not None:  # and its attribute table: it may come back with another
            self.radio.gatt_cache.pop(address.upper(), None)

    async def close(self) -> None:
        scanner, self._scanner = self._scanner, None
        self._listeners.clear()
        if scanner is not None:
            try:
                await scanner.stop()
            except Exception:
                log.debug("adapter %s: stopping the scanner failed", self.name, exc_info=True)
        if self.radio is not None:
            await self.radio.close()


_adapters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Adapter]] = (
    weakref.WeakKeyDictionary()
)


def adapters() -> dict[str, Adapter]:
    """The adapters open on the running event loop, by name."""
    return _adapters.setdefault(asyncio.get_running_loop(), {})


def acquire(name: str, settings: BluetoothSettings) -> Adapter:
    """The adapter ``name`` on this loop (created on first use); :func:`release` it when done."""
    known = adapters()
    adapter = known.get(name)
    if adapter is None:
        adapter = known[name] = Adapter(name, settings)
    adapter.users += 1
    return adapter


async def release(adapter: Adapter) -> None:
    adapter.users -= 1
    if adapter.users <= 0:
        known = adapters()
        if known.get(adapter.name) is adapter:
            del known[adapter.name]
        await adapter.close()
