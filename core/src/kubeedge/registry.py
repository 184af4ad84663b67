"""The devices this edge node serves, with their models: the one place sources feed and modules read.

A source (the standalone manifest folder, later the cloud hub) calls :meth:`DeviceRegistry.replace`
with everything it knows; the registry works out what was added, changed or removed and tells its
listeners. Listeners are told only about devices whose *served form* changed: a status-only
change never reaches a mapper (KubeEdge #6269 restarted devices on every status write).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from kubeedge.api.device import Device, DeviceModel, apply_model_defaults

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedDevice:
    """A device the edge serves, with its model (shared by every device of that model)."""

    device: Device
    """As declared; :meth:`merged` applies the model's defaults."""
    model: DeviceModel

    def merged(self) -> Device:
        """The device as its mapper sees it (computed when asked, to keep the registry small)."""
        return apply_model_defaults(self.device, self.model)

    @property
    def key(self) -> str:
        return self.device.key

    @property
    def protocol(self) -> str:
        return self.device.protocol_name or ""

    def fingerprint(self) -> str:
        """Everything that matters to the edge; the status and bookkeeping metadata do not."""
        spec = self.device.spec.model_dump_json(by_alias=True, exclude_none=True)
        model = self.model.spec.model_dump_json(by_alias=True, exclude_none=True)
        return spec + "\n" + model


class RegistryListener(Protocol):
    def device_added(self, served: ServedDevice) -> None: ...

    def device_updated(self, served: ServedDevice, previous: ServedDevice) -> None: ...

    def device_removed(self, served: ServedDevice) -> None: ...

    def registry_synced(self, keys: set[str]) -> None:
        """The source has given its full set (``keys``); anything else remembered is stale."""


class DeviceRegistry:
    """Devices for one node, keyed ``namespace/name``."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._devices: dict[str, ServedDevice] = {}
        self._listeners: list[RegistryListener] = []

    def add_listener(self, listener: RegistryListener) -> None:
        """Register a listener; it is told about every device already known, as additions."""
        self._listeners.append(listener)
        for served in self._devices.values():
            listener.device_added(served)

    def get(self, key: str) -> ServedDevice | None:
        return self._devices.get(key)

    def __iter__(self) -> Iterator[ServedDevice]:
        return iter(list(self._devices.values()))

    def __len__(self) -> int:
        return len(self._devices)

    def serves(self, device: Device) -> bool:
        return not device.spec.node_name or device.spec.node_name == self.node

    def replace(
        self, devices: Iterable[Device], models: Iterable[DeviceModel], complete: bool = True
    ) -> None:
        """Make the registry hold exactly these devices (those for this node whose model is known).

        ``complete=False`` says the source could not read everything (a broken file it kept the
        last good objects of, or none at start-up): listeners are then not told to forget what
        they remember of devices they were not given.
        """
        by_key = {m.key: m for m in models}
        wanted: dict[str, ServedDevice] = {}
        for device in devices:
            if not self.serves(device):
                log.debug("device %s is for node %s, not %s", device.key, device.spec.node_name, self.node)
                continue
            model = by_key.get(f"{device.namespace}/{device.model_name}")
            if model is None:
                log.warning("device %s: DeviceModel %s not found; not served", device.key, device.model_name)
                continue
            wanted[device.key] = ServedDevice(device, model)
        for key in [k for k in self._devices if k not in wanted]:
            self._remove(key)
        for served in wanted.values():
            self._put(served)
        if complete:
            self._tell("registry_synced", set(self._devices))

    def _tell(self, event: str, *args: object) -> None:
        """Every listener hears of every change: one that fails is logged, the others still hear."""
        for listener in self._listeners:
            try:
                getattr(listener, event)(*args)
            except Exception:
                log.exception("registry: %s failed in %s", event, type(listener).__name__)

    def _put(self, served: ServedDevice) -> None:
        previous = self._devices.get(served.key)
        if previous is not None and previous.fingerprint() == served.fingerprint():
            return
        self._devices[served.key] = served
        if previous is None:
            self._tell("device_added", served)
        else:
            self._tell("device_updated", served, previous)
        log.info(
            "device %s %s (protocol %s)", served.key, "updated" if previous else "added", served.protocol
        )

    def _remove(self, key: str) -> None:
        served = self._devices.pop(key)
        self._tell("device_removed", served)
        log.info("device %s removed", key)
