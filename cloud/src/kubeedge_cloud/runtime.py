"""The cloud process: the source, the device controller and the hub (plus any extra cloud
modules), found through the ``kubeedge.cloud_modules`` entry points, started in order and
stopped in reverse."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import BaseModel, ValidationError

from kubeedge.errors import ConfigError, PluginError
from kubeedge.memory import trim_periodically
from kubeedge.plugins import PluginHost
from kubeedge_cloud.config import CloudConfig, error_line
from kubeedge_cloud.module import CloudContext, CloudModule

log = logging.getLogger(__name__)

CORE_MODULES = ("hub", "devices")


class CloudCore:
    def __init__(self, config: CloudConfig, host: PluginHost | None = None) -> None:
        self.config = config
        self.context = CloudContext(config, host or PluginHost())
        self.context.supervisor.on_fatal = self._fatal
        self.modules: list[CloudModule] = []
        self.failed = asyncio.Event()
        self.failure: str | None = None

    def module_names(self) -> list[str]:
        extra = [n for n in self.config.modules if n not in CORE_MODULES]
        return [*CORE_MODULES, self.config.source.kind, *extra]

    def build(self) -> list[CloudModule]:
        """Load the modules' classes and check their settings; nothing starts yet."""
        names = self.module_names()
        host = self.context.host
        host.require("cloud_module", names)
        classes = {cls.name: cls for cls in host.collect("kubeedge_register_cloud_modules")}
        missing = [n for n in names if n not in classes]
        if missing:
            raise PluginError(f"cloud module(s) {', '.join(missing)} registered no module class of that name")
        modules = []
        errors = []
        for name in names:
            cls = classes[name]
            if name == self.config.source.kind:
                raw, where = self.config.source.settings, "source"
            else:
                raw, where = self.config.modules.get(name) or {}, f"modules.{name}"
            try:
                settings: BaseModel = cls.settings_model.model_validate(raw)
            except ValidationError as exc:
                errors += [f"{where}.{error_line(e)}" for e in exc.errors()]
                continue
            modules.append(cls(self.context, settings))
        if errors:
            raise ConfigError("\n".join(errors))
        return sorted(modules, key=lambda m: m.order)

    async def start(self) -> None:
        modules = self.build()
        try:
            for module in modules:
                await module.start()
                self.modules.append(module)
                self.context.modules[module.name] = module
                log.info("cloud module %s started", module.name)
            # a connect storm leaves the heap large after the handshakes' garbage is gone
            self.context.supervisor.spawn("memory-trim", trim_periodically)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        self.context.supervisor.stop(cancel=False)
        for module in reversed(self.modules):
            try:
                await module.stop()
            except Exception:
                log.exception("cloud module %s failed to stop", module.name)
        self.modules.clear()
        self.context.modules.clear()
        self.context.supervisor.stop()

    def module(self, name: str) -> Any:
        return self.context.modules.get(name)

    def _fatal(self, reason: str) -> None:
        self.failure = reason
        self.failed.set()
