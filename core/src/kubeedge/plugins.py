"""The plugin host: finds plugins through entry points and loads only the enabled ones.

Entry point groups, one per kind of plugin (the entry point's *name* is the plugin's name; for a
mapper it is the protocol name, as in ``spec.protocol.protocolName``)::

    [project.entry-points."kubeedge.mappers"]
    modbus = "kubeedge_mapper_modbus.plugin"

Rules (docs/design.md, "Plugins"):

* configuration decides what is imported; a plugin that is installed but not enabled is never
  imported, so a heavy protocol library costs nothing unless used;
* an enabled name that is not installed, a name provided by two distributions, a plugin that fails
  to import and a plugin that implements no hook are all errors that name the plugin (and its
  distribution), reported together, never hiding the plugins that did load.
"""

from __future__ import annotations

import importlib.metadata as metadata
import logging
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, cast

import pluggy

from kubeedge import hookspecs
from kubeedge.driver import Driver
from kubeedge.errors import PluginError

log = logging.getLogger(__name__)

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)

PluginKind = Literal["mapper", "edge_module", "cloud_module", "cli"]
ENTRY_POINT_GROUPS: dict[PluginKind, str] = {
    "mapper": "kubeedge.mappers",
    "edge_module": "kubeedge.edge_modules",
    "cloud_module": "kubeedge.cloud_modules",
    "cli": "kubeedge.cli",
}
KIND_LABELS: dict[PluginKind, str] = {
    "mapper": "mapper",
    "edge_module": "edge module",
    "cloud_module": "cloud module",
    "cli": "command plugin",
}


@dataclass(frozen=True)
class Installed:
    """One entry point of one installed distribution (nothing imported yet)."""

    kind: PluginKind
    name: str
    target: str
    """What the entry point names, e.g. ``kubeedge_mapper_modbus.plugin``."""
    distribution: str
    version: str
    entry_point: metadata.EntryPoint

    @property
    def label(self) -> str:
        return f"{KIND_LABELS[self.kind]} {self.name!r} ({self.distribution} {self.version})"


@dataclass
class PluginStatus:
    """What became of one plugin name: installed or not, enabled or not, loaded or why not."""

    kind: PluginKind
    name: str
    enabled: bool
    installed: list[Installed]
    loaded: bool = False
    error: str | None = None

    @property
    def distribution(self) -> str:
        return ", ".join(i.distribution for i in self.installed) or "-"

    @property
    def version(self) -> str:
        return ", ".join(i.version for i in self.installed) or "-"


def installed_plugins(kind: PluginKind) -> dict[str, list[Installed]]:
    """Every installed plugin of a kind, by name; a name with two entries is a conflict."""
    found: dict[str, list[Installed]] = defaultdict(list)
    seen: set[tuple[str, str, str]] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUPS[kind]):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        key = (ep.name, dist_name, ep.value)
        if key in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(key)
        found[ep.name].append(Installed(kind, ep.name, ep.value, dist_name, version, ep))
    return dict(sorted(found.items()))


class PluginHost:
    """One pluggy manager for the process; loads plugins by kind and collects their hooks."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._origin: dict[str, Installed] = {}

    def load(
        self, kind: PluginKind, enabled: Collection[str], origin: str = "enabled in the configuration"
    ) -> list[PluginStatus]:
        """Import and register the enabled plugins of a kind; report on every installed one too.

        Never raises for a bad plugin: each status carries its own error, so one broken plugin
        cannot hide the others. Use :meth:`require` to turn errors into a :class:`PluginError`.
        """
        available = installed_plugins(kind)
        statuses = []
        for name in sorted(set(available) | set(enabled)):
            status = PluginStatus(kind, name, name in enabled, available.get(name, []))
            if status.enabled:
                self._load_one(status, available, origin)
            elif len(status.installed) > 1:
                status.error = self._duplicate_message(status)
            statuses.append(status)
        return statuses

    def require(
        self, kind: PluginKind, enabled: Collection[str], origin: str = "enabled in the configuration"
    ) -> list[PluginStatus]:
        """:meth:`load`, raising one :class:`PluginError` listing every enabled plugin that failed."""
        statuses = self.load(kind, enabled, origin)
        errors = [s.error for s in statuses if s.enabled and s.error]
        if errors:
            raise PluginError("\n".join(errors))
        return statuses

    def _load_one(self, status: PluginStatus, available: dict[str, list[Installed]], origin: str) -> None:
        label = KIND_LABELS[status.kind]
        if not status.installed:
            names = ", ".join(available) or "none"
            status.error = (
                f"{label} {status.name!r} is {origin} but not installed (installed {label}s: {names})"
            )
            return
        if len(status.installed) > 1:
            status.error = self._duplicate_message(status)
            return
        (entry,) = status.installed
        plugin_name = f"{status.kind}:{status.name}"
        if self.pm.has_plugin(plugin_name):
            status.loaded = True
            return
        try:
            module = entry.entry_point.load()
        except Exception as exc:  # any import failure must name the plugin, not stop the rest
            log.debug("import of %s failed", entry.label, exc_info=True)
            status.error = f"{entry.label} failed to import {entry.target}: {type(exc).__name__}: {exc}"
            return
        if self.pm.is_registered(module):
            status.loaded = True
            return
        self.pm.register(module, name=plugin_name)
        self._origin[plugin_name] = entry
        if not self.pm.get_hookcallers(module):
            self.pm.unregister(module)
            status.error = (
                f"{entry.label} implements no kubeedge hook; its functions must be marked with "
                "kubeedge.hookimpl (a marker made for another project name is ignored by pluggy)"
            )
            return
        status.loaded = True

    @staticmethod
    def _duplicate_message(status: PluginStatus) -> str:
        providers = "; ".join(f"{i.distribution} {i.version} ({i.target})" for i in status.installed)
        return (
            f"{KIND_LABELS[status.kind]} {status.name!r} is provided by more than one installed "
            f"distribution: {providers}; uninstall all but one"
        )

    def drivers(self, statuses: list[PluginStatus]) -> dict[str, type[Driver[Any, Any]]]:
        """The driver class of every loaded mapper, keyed by protocol.

        Raises :class:`PluginError` if a mapper registers no driver for its own name, registers
        something that is not a :class:`~kubeedge.Driver`, or claims another mapper's protocol.
        """
        drivers: dict[str, type[Driver[Any, Any]]] = {}
        owners: dict[str, str] = {}
        errors: list[str] = []
        for impl in self.pm.hook.kubeedge_register_drivers.get_hookimpls():
            origin = self._origin.get(impl.plugin_name)
            label = origin.label if origin else f"plugin {impl.plugin_name!r}"
            registered = cast(list[Any], impl.function() or [])
            for cls in registered:
                if not (isinstance(cls, type) and issubclass(cls, Driver)):
                    errors.append(f"{label} registered {cls!r}, which is not a kubeedge.Driver subclass")
                    continue
                protocol = getattr(cls, "protocol", None)
                if not isinstance(protocol, str):
                    errors.append(f"{label} registered {cls.__qualname__}, which names no protocol")
                    continue
                if protocol in owners:
                    errors.append(
                        f"{label} registers protocol {protocol!r}, already registered by {owners[protocol]}"
                    )
                    continue
                drivers[protocol] = cls
                owners[protocol] = label
        for status in statuses:
            if status.kind == "mapper" and status.loaded and status.name not in drivers:
                status.loaded = False
                status.error = (
                    f"{status.installed[0].label} registers no driver for protocol {status.name!r}"
                    f" (it registered: {', '.join(sorted(drivers)) or 'nothing'})"
                )
                errors.append(status.error)
        if errors:
            raise PluginError("\n".join(errors))
        return drivers

    def collect(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call a ``kubeedge_register_*`` hook and flatten the lists it returns."""
        results: list[list[Any]] = getattr(self.pm.hook, hook)(**kwargs)
        return [item for result in results for item in (result or [])]


def mapper_drivers(protocols: Collection[str]) -> dict[str, type[Driver[Any, Any]] | str]:
    """The driver class of each installed mapper among ``protocols``, imported but never started
    (``kubeedge validate`` runs its configData models); for each one without, the reason.

    Each mapper is loaded by a host of its own, so one that fails to load never hides another.
    """
    installed = installed_plugins("mapper")
    found: dict[str, type[Driver[Any, Any]] | str] = {}
    for protocol in sorted(protocols):
        if protocol not in installed:
            found[protocol] = "mapper not installed"
            continue
        host = PluginHost()
        try:
            statuses = host.require("mapper", [protocol], origin="used by a device")
            found[protocol] = host.drivers(statuses)[protocol]
        except PluginError as exc:
            found[protocol] = f"mapper could not be loaded ({exc})"
    return found
