"""The edge process: the bus (embedded broker or external), the registry, the assignment
publisher and the enabled edge modules, started in order and stopped in reverse."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from typing import Any

from pydantic import ValidationError

from kubeedge.api import topics
from kubeedge.bus import BusClient, EmbeddedBroker
from kubeedge.config import EdgeConfig
from kubeedge.edge.assignments import AssignmentPublisher, status_payload
from kubeedge.errors import ConfigError, PluginError
from kubeedge.memory import trim, trim_periodically
from kubeedge.module import EdgeContext, EdgeModule
from kubeedge.plugins import PluginHost
from kubeedge.registry import DeviceRegistry
from kubeedge.supervisor import Supervised, Supervisor

log = logging.getLogger(__name__)

BUILTIN_MODULES = ("twin", "standalone", "edgehub", "mappers")


class EdgeCore:
    def __init__(self, config: EdgeConfig, host: PluginHost | None = None) -> None:
        self.config = config
        self.host = host or PluginHost()
        self.broker: EmbeddedBroker | None = None
        self.context: EdgeContext | None = None
        self.assignments: AssignmentPublisher | None = None
        self.modules: list[EdgeModule] = []
        self._trimmer: Supervised | None = None
        self.supervisor = Supervisor()
        self.supervisor.on_fatal = self._fatal
        self.supervisor.on_change = self._report_health
        self.failed = asyncio.Event()
        """Set when a task of the edge failed beyond repair; :attr:`failure` says why. Whoever
        runs the edge stops it then (``kubeedge edge run`` exits with status 1)."""
        self.failure: str | None = None

    def enabled_modules(self) -> list[str]:
        config = self.config
        names = []
        for name in BUILTIN_MODULES:
            entry = config.modules.get(name)
            if entry is not None and not entry.enabled:
                continue
            if name == "standalone" and config.manifests is None and entry is None:
                continue
            # the device source: a manifest folder or the cloud (never both: EdgeConfig refuses it)
            if name == "edgehub" and config.cloud is None and entry is None:
                continue
            names.append(name)
        names += [n for n, e in config.modules.items() if e.enabled and n not in names]
        return names

    def _module_classes(self) -> dict[str, Any]:
        enabled = self.enabled_modules()
        self.host.require("edge_module", enabled)
        classes = {cls.name: cls for cls in self.host.collect("kubeedge_register_edge_modules")}
        missing = [n for n in enabled if n not in classes]
        if missing:
            raise PluginError(f"edge module(s) {', '.join(missing)} registered no module class of that name")
        return {n: classes[n] for n in enabled}

    async def start(self) -> None:
        config = self.config
        classes = self._module_classes()
        settings = {}
        for name, cls in classes.items():
            entry = config.modules.get(name)
            try:
                settings[name] = cls.settings_model.model_validate(entry.settings if entry else {})
            except ValidationError as exc:
                lines = [
                    f"modules.{name}.{'.'.join(map(str, e['loc']))}: "
                    + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
                    for e in exc.errors()
                ]
                raise ConfigError("\n".join(lines)) from None
        if config.bus.url == "embedded":
            host, port = config.bus.listen_address
            self.broker = EmbeddedBroker(host, port)
            await self.broker.start()
            bus_url = self.broker.url
        else:
            bus_url = config.bus.url
        publisher_instance = _instance_id()
        bus = BusClient.from_config(
            config.bus,
            f"{config.node}-edge",
            bus_url,
            will=(
                topics.edge_topic(config.node, topics.EDGE_STATUS),
                status_payload("offline", publisher_instance),
                1,
                True,
            ),
        )
        try:
            await bus.start()
        except ConnectionError:
            if self.broker is not None:
                await self.broker.stop()
            raise
        if bus.runner is not None:
            self.supervisor.watch("bus", bus.runner)
        registry = DeviceRegistry(config.node)
        self.context = EdgeContext(config, bus_url, bus, registry, self.host, supervisor=self.supervisor)
        self.assignments = AssignmentPublisher(config.node, bus, registry, publisher_instance)
        self.assignments.start()
        try:
            for name, cls in sorted(classes.items(), key=lambda item: item[1].order):
                module = cls(self.context, settings[name])
                await module.start()
                self.modules.append(module)
                self.context.modules[name] = module
                log.info("edge module %s started", name)
            mappers = self.context.modules.get("mappers")
            self.assignments.in_process = sorted(getattr(mappers, "runtimes", {}))
            self.assignments.announce()
            # What start-up built (models, devices, twins) lives as long as the process: take it out
            # of the garbage collector's full scans, which otherwise pause the loop for tens of ms.
            gc.collect()
            gc.freeze()
            if trim():  # else this C library cannot (musl, macOS): a trimmer would end at once
                self._trimmer = self.supervisor.spawn("memory-trim", trim_periodically)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        self.supervisor.stop(cancel=False)  # tasks that end from here on are stopping, not failing
        if self._trimmer is not None:
            self._trimmer.cancel()
            self._trimmer = None
        for module in reversed(self.modules):
            try:
                await module.stop()
            except Exception:
                log.exception("edge module %s failed to stop", module.name)
        self.modules.clear()
        if self.context is not None:
            if self.assignments is not None:
                self.assignments.stop()
            await self.context.bus.stop()
            self.context = None
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None
        self.supervisor.stop()

    def _fatal(self, reason: str) -> None:
        self.failure = reason
        self.failed.set()

    def _report_health(self) -> None:
        """Put the supervisor's problems into the edge's retained status (its health check)."""
        if self.assignments is not None:
            self.assignments.problems = self.supervisor.problems
            self.assignments.announce()

    def module(self, name: str) -> Any:
        assert self.context is not None
        return self.context.modules.get(name)


def _instance_id() -> str:
    return uuid.uuid4().hex
