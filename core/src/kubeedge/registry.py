"""The devices this edge node serves, with their models: the one place sources feed and modules read.

A source (the standalone manifest folder, later the cloud hub) calls :meth:`DeviceRegistry.replace`
with everything it knows; the registry works out what was added, changed or removed and tells its
listeners. Listeners are told only about devices whose *served form* changed: a status-only
change never reaches a mapper (KubeEdge #6269 restarted devices on every status write).

It also keeps what a user needs to see why a device is not served as they expect: the devices of
the source that are for other nodes, the problems the source reported (a manifest kept at its
last good version), and which protocols have a mapper (:meth:`DeviceRegistry.unserved_reason`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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


@dataclass(frozen=True)
class OtherNodeDevice:
    """A device the source holds for another node: not served here, shown by ``device list --all``."""

    key: str
    node: str
    protocol: str
    model: str


MAX_SOURCE_PROBLEMS = 20
"""Source problems kept for ``device list`` (every one is logged)."""


class RegistryListener(Protocol):
    def device_added(self, served: ServedDevice) -> None: ...

    def device_updated(self, served: ServedDevice, previous: ServedDevice) -> None: ...

    def device_removed(self, served: ServedDevice) -> None: ...

    def registry_synced(self, keys: set[str]) -> None:
        """The source has given its full set (``keys``); anything else remembered is stale."""

    # A listener may also have ``mapper_gone(protocol, reason)``: the mapper of ``protocol`` said
    # goodbye (or its will came), so its devices are unserved for ``reason``.


class DeviceRegistry:
    """Devices for one node, keyed ``namespace/name``."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._devices: dict[str, ServedDevice] = {}
        self._listeners: list[RegistryListener] = []
        self.other_nodes: dict[str, OtherNodeDevice] = {}
        """Devices of the source that are for other nodes, by key."""
        self._other_summary = ""
        self.problems: dict[str, str] = {}
        """A problem per device key, from the source (a manifest kept at its last good version)."""
        self.source_problems: list[str] = []
        """The source's problems (files not read or kept at their last good version)."""
        self.in_process: set[str] = set()
        """Protocols whose mappers run in the edge process (set by the mappers module)."""
        self.hellos: set[str] = set()
        """Protocols whose mapper said hello on the bus (in the edge process or its own)."""
        self.gone: dict[str, str] = {}
        """Protocol -> why its mapper no longer serves it (it said goodbye or its link dropped)."""
        self._installed: list[str] | None = None
        self._unserved_logged: set[str] = set()
        self._mappers_known = False
        self._ignored_logged: dict[str, str] = {}

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
        others: dict[str, OtherNodeDevice] = {}
        for device in devices:
            if not self.serves(device):
                log.debug("device %s is for node %s, not %s", device.key, device.spec.node_name, self.node)
                others[device.key] = OtherNodeDevice(
                    device.key,
                    device.spec.node_name or "",
                    device.protocol_name or "",
                    device.model_name or "",
                )
                continue
            model = by_key.get(f"{device.namespace}/{device.model_name}")
            if model is None:
                log.warning("device %s: DeviceModel %s not found; not served", device.key, device.model_name)
                continue
            wanted[device.key] = ServedDevice(device, model)
        changes: dict[str, list[str]] = {"added": [], "updated": [], "removed": []}
        for key in [k for k in self._devices if k not in wanted]:
            self._remove(key)
            changes["removed"].append(key)
        for served in wanted.values():
            change = self._put(served)
            if change:
                changes[change].append(served.key)
        self._log_changes(changes)
        if complete or others:
            self._set_other_nodes(others, complete)
        if complete:
            self._tell("registry_synced", set(self._devices))
        if self._mappers_known:
            self.check_mappers()

    def _log_changes(self, changes: dict[str, list[str]]) -> None:
        """One line for a reload: the devices by name when few, else how many."""
        parts = []
        for change, keys in changes.items():
            if keys:
                shown = ", ".join(sorted(keys)[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
                parts.append(f"{change} {shown}")
        if parts:
            log.info("devices %s (%d served)", "; ".join(parts), len(self._devices))

    def _set_other_nodes(self, others: dict[str, OtherNodeDevice], complete: bool) -> None:
        """Remember them, and say how many there are per node when that changes (at start too)."""
        if not complete:  # a partial read: add what was read, forget nothing
            others = {**self.other_nodes, **others}
        self.other_nodes = others
        per_node = Counter(d.node for d in others.values())
        summary = ", ".join(f"{node} ({count})" for node, count in sorted(per_node.items()))
        if summary != self._other_summary:
            if others:
                log.info("%d device(s) in manifests are for other nodes: %s", len(others), summary)
            else:
                log.info("no device in manifests is for another node any more")
            self._other_summary = summary

    def report_problems(self, per_device: Mapping[str, str], general: Sequence[str]) -> None:
        """The source's problems, shown by ``device list``: per device (a manifest kept at its last
        good version) and in general (also files that could not be read at all)."""
        self.problems = dict(per_device)
        self.source_problems = list(general[:MAX_SOURCE_PROBLEMS])
        if len(general) > MAX_SOURCE_PROBLEMS:
            self.source_problems.append(f"... and {len(general) - MAX_SOURCE_PROBLEMS} more (see the log)")

    # ----------------------------------------------------------------- mappers

    def mapper_said_hello(self, protocol: str) -> None:
        """A mapper for ``protocol`` is on the bus: its devices are served (their reason goes)."""
        self.hellos.add(protocol)
        self.gone.pop(protocol, None)
        self._unserved_logged.discard(protocol)

    def mapper_said_goodbye(self, protocol: str, why: str) -> None:
        """``protocol``'s mapper stopped (``why``: "stopped") or its bus connection dropped
        without a goodbye ("connection lost": the broker published its will): its devices are
        unserved, with that reason, until a mapper says hello again."""
        self.hellos.discard(protocol)
        if protocol in self.in_process:
            return
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        count = sum(1 for s in self._devices.values() if s.protocol == protocol)
        if why == "stopped":
            self.gone[protocol] = f"its mapper ({protocol}) stopped at {at}"
            log.info("mapper %s stopped; its %d device(s) are unserved until it runs again", protocol, count)
        else:
            self.gone[protocol] = (
                f"its mapper ({protocol}) went away at {at}: its bus connection dropped without a goodbye"
            )
            log.warning(
                "mapper %s went away (its bus connection dropped without a goodbye: a crash or a lost "
                "link); its %d device(s) are unserved until it says hello again",
                protocol,
                count,
            )
        self._unserved_logged.add(protocol)  # said just now
        for listener in self._listeners:
            # optional for listeners: the twin module marks the devices unknown (so the cloud hears)
            gone = getattr(listener, "mapper_gone", None)
            if gone is None:
                continue
            try:
                gone(protocol, self.gone[protocol])
            except Exception:
                log.exception("registry: mapper_gone failed in %s", type(listener).__name__)

    def unserved_reason(self, protocol: str) -> str | None:
        """Why devices of ``protocol`` have no mapper, or None if one runs (or is starting)."""
        if protocol in self.hellos or protocol in self.in_process:
            return None
        if protocol in self.gone:
            return self.gone[protocol]
        if not protocol:
            return "the device names no protocol (spec.protocol.protocolName)"
        if self._installed is None:
            from kubeedge.plugins import installed_plugins

            self._installed = sorted(installed_plugins("mapper"))
        installed = ", ".join(self._installed) or "none"
        return f"no mapper for protocol {protocol!r} is enabled; installed: {installed}"

    def check_mappers(self) -> None:
        """Log once per protocol whose devices have no mapper (again after one said hello and
        said goodbye)."""
        self._mappers_known = True
        waiting = Counter(s.protocol for s in self._devices.values())
        for protocol, count in sorted(waiting.items()):
            reason = self.unserved_reason(protocol)
            if reason is None or protocol in self._unserved_logged:
                continue
            self._unserved_logged.add(protocol)
            if protocol in (self._installed or []):
                hint = f"enable it under mappers: in edge.yaml, or run: kubeedge mapper run {protocol}"
            else:
                hint = f"install a mapper for it (kubeedge-mapper-{protocol}) and enable it"
            log.info("%d device(s) of protocol %r wait for a mapper: %s (%s)", count, protocol, reason, hint)

    def _tell(self, event: str, *args: object) -> None:
        """Every listener hears of every change: one that fails is logged, the others still hear."""
        for listener in self._listeners:
            try:
                getattr(listener, event)(*args)
            except Exception:
                log.exception("registry: %s failed in %s", event, type(listener).__name__)

    def _put(self, served: ServedDevice) -> str | None:
        """Add or update; returns "added", "updated" or None (unchanged)."""
        previous = self._devices.get(served.key)
        if previous is not None and previous.fingerprint() == served.fingerprint():
            return None
        self._devices[served.key] = served
        if previous is None:
            self._tell("device_added", served)
        else:
            self._tell("device_updated", served, previous)
        log.debug(
            "device %s %s (protocol %s)", served.key, "updated" if previous else "added", served.protocol
        )
        self._log_ignored(served)
        return "updated" if previous else "added"

    def _log_ignored(self, served: ServedDevice) -> None:
        """Settings the edge does not serve yet are named once per device (and again if they change)."""
        ignored = []
        for prop in served.device.spec.properties or []:
            push = prop.push_method
            if push is None:
                continue
            kinds = [
                name
                for name in ("http", "mqtt", "otel", "db_method", "anomaly_detection")
                if getattr(push, name) is not None
            ]
            if kinds:
                ignored.append(f"{prop.name} " + ", ".join(f"pushMethod.{_camel(k)}" for k in kinds))
        text = "; ".join(ignored)
        if text and self._ignored_logged.get(served.key) != text:
            log.warning(
                "device %s: not served by this edge yet, ignored: %s",
                served.key,
                text,
            )
        if text:
            self._ignored_logged[served.key] = text
        else:
            self._ignored_logged.pop(served.key, None)

    def _remove(self, key: str) -> None:
        served = self._devices.pop(key)
        self._ignored_logged.pop(key, None)
        self._tell("device_removed", served)
        log.debug("device %s removed", key)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)
