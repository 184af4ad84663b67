"""The coordinator every Zigbee device of the mapper is reached through: one zigpy
``ControllerApplication`` per radio, started by the first device that needs it, shared by all,
and shut down with the last.

When the radio is lost (unplugged, its TCP link gone), zigpy only reports it: the coordinator
wakes every device waiting on it (:meth:`Coordinator.lost`), the devices go offline with the
reason, and the first device to reconnect (with the runtime's back-off) starts the radio again.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import weakref
from typing import Any

import zigpy.config as zconf
import zigpy.device
import zigpy.types as t

from kubeedge import DeviceUnreachable
from kubeedge_mapper_zigbee.config import RADIO_APPS, ZigbeeSettings

log = logging.getLogger(__name__)


def app_class(settings: ZigbeeSettings) -> Any:
    """The radio library's ``ControllerApplication`` (imported only when the radio is used)."""
    module_name, distribution = RADIO_APPS[settings.radio]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise DeviceUnreachable(
            f"radio {settings.radio.value!r} needs {distribution}: "
            f"pip install 'kubeedge-mapper-zigbee[{settings.radio.value}]'"
        ) from None
    return module.ControllerApplication


def zigpy_config(settings: ZigbeeSettings) -> dict[str, Any]:
    device: dict[str, Any] = {
        zconf.CONF_DEVICE_PATH: settings.path,
        zconf.CONF_DEVICE_BAUDRATE: settings.baudrate,
    }
    if settings.flow_control is not None:
        device[zconf.CONF_DEVICE_FLOW_CONTROL] = settings.flow_control
    network: dict[str, Any] = {}
    net = settings.network
    if net.channel is not None:
        network[zconf.CONF_NWK_CHANNEL] = net.channel
    if net.pan_id is not None:
        network[zconf.CONF_NWK_PAN_ID] = net.pan_id
    if net.extended_pan_id is not None:
        network[zconf.CONF_NWK_EXTENDED_PAN_ID] = net.extended_pan_id
    if net.network_key is not None:
        network[zconf.CONF_NWK_KEY] = net.network_key
    database = settings.database_path()
    database.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        zconf.CONF_DEVICE: device,
        zconf.CONF_DATABASE: str(database),
        zconf.CONF_NWK_BACKUP_ENABLED: False,
        zconf.CONF_TOPO_SCAN_ENABLED: False,
    }
    if network:
        config[zconf.CONF_NWK] = network
    return config


class Coordinator:
    """A started zigpy application, the devices using it, and whether the radio is still there."""

    def __init__(self, settings: ZigbeeSettings, app: Any) -> None:
        self.settings = settings
        self.app = app
        self.users = 0
        self.lost = asyncio.Event()
        """Set when the radio is lost: every device using it goes offline."""
        self.lost_reason = ""
        self.closing: asyncio.Future[None] | None = None
        self.left: dict[str, asyncio.Event] = {}
        """IEEE -> set when that device leaves the network."""
        app.add_listener(self)

    # zigpy application listener callbacks (called by name)
    def connection_lost(self, exc: Exception) -> None:
        self.lost_reason = f"radio lost: {exc or type(exc).__name__}"
        log.warning("zigbee coordinator %s: %s", self.settings.path, self.lost_reason)
        self.lost.set()
        _forget(self)
        # shut the lost application down now (its database too), not when its last device lets
        # go: the next start opens the same database and port
        self.closing = asyncio.ensure_future(self.close())
        _closing()[self.settings.key()] = self.closing

    def device_left(self, device: zigpy.device.Device) -> None:
        event = self.left.get(str(device.ieee))
        if event is not None:
            event.set()

    device_removed = device_left

    def device(self, ieee: str) -> zigpy.device.Device:
        """The joined device of this address; :class:`DeviceUnreachable` if it never joined."""
        if self.lost.is_set():
            raise DeviceUnreachable(self.lost_reason)
        try:
            return self.app.get_device(ieee=t.EUI64.convert(ieee))
        except KeyError:
            raise DeviceUnreachable(
                f"{ieee} has not joined the network (pair it: kubeedge mapper discover zigbee"
                " -O permitJoin=60)"
            ) from None

    async def close(self) -> None:
        try:
            await self.app.shutdown()
        except Exception:  # the radio may be gone already
            log.debug("zigbee coordinator shutdown failed", exc_info=True)


_coordinators: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, Coordinator]] = (
    weakref.WeakKeyDictionary()
)
_closings: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, asyncio.Future[None]]] = (
    weakref.WeakKeyDictionary()
)
_starting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _known() -> dict[Any, Coordinator]:
    return _coordinators.setdefault(asyncio.get_running_loop(), {})


def _closing() -> dict[Any, asyncio.Future[None]]:
    return _closings.setdefault(asyncio.get_running_loop(), {})


def _forget(coordinator: Coordinator) -> None:
    known = _known()
    key = coordinator.settings.key()
    if known.get(key) is coordinator:
        del known[key]


async def start(settings: ZigbeeSettings, *, auto_form: bool | None = None) -> Any:
    """A zigpy application for the settings, started (the network formed if allowed)."""
    cls = app_class(settings)
    try:
        return await asyncio.wait_for(
            cls.new(zigpy_config(settings), auto_form=settings.form if auto_form is None else auto_form),
            settings.startup_timeout,
        )
    except (OSError, TimeoutError) as exc:
        raise DeviceUnreachable(
            f"radio {settings.radio.value} at {settings.path}: {exc or 'no answer'}"
        ) from exc
    except Exception as exc:  # zigpy raises its own errors for a radio that does not start
        raise DeviceUnreachable(
            f"radio {settings.radio.value} at {settings.path} did not start: {type(exc).__name__}: {exc}"
        ) from exc


async def acquire(settings: ZigbeeSettings) -> Coordinator:
    """The running coordinator for these settings (started on first use); :func:`release` it."""
    lock = _starting.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:  # one start at a time: the radio is opened once
        known = _known()
        coordinator = known.get(settings.key())
        closing = _closing().pop(settings.key(), None)
        if closing is not None:  # a lost application still shutting down
            await asyncio.shield(closing)
        if coordinator is None:
            coordinator = known[settings.key()] = Coordinator(settings, await start(settings))
        coordinator.users += 1
        return coordinator


async def release(coordinator: Coordinator) -> None:
    coordinator.users -= 1
    if coordinator.users <= 0:
        _forget(coordinator)
        if coordinator.closing is None:
            await coordinator.close()
