"""Runs the enabled protocol mappers inside the edge process (one bus connection each)."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ValidationError

from kubeedge.errors import ConfigError
from kubeedge.mapper.runtime import MapperRuntime, MapperSettings
from kubeedge.module import EdgeContext, EdgeModule

log = logging.getLogger(__name__)


def mapper_settings(
    protocol: str, driver_cls: Any, settings: dict[str, Any]
) -> tuple[MapperSettings, BaseModel]:
    """Split ``mappers.NAME`` into runtime settings and the driver's own; errors name the key."""
    runtime_keys = {name for name, f in MapperSettings.model_fields.items()} | {
        f.alias for f in MapperSettings.model_fields.values() if f.alias
    }
    runtime = {k: v for k, v in settings.items() if k in runtime_keys}
    own = {k: v for k, v in settings.items() if k not in runtime_keys}
    lines: list[str] = []
    results: list[BaseModel] = []
    for model, values in ((MapperSettings, runtime), (driver_cls.settings_model, own)):
        try:
            results.append(model.model_validate(values))
        except ValidationError as exc:
            lines += [
                f"mappers.{protocol}.{'.'.join(map(str, e['loc']))}: "
                + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
                for e in exc.errors()
            ]
    if lines:
        raise ConfigError("\n".join(lines))
    runtime_settings, driver_settings = results
    assert isinstance(runtime_settings, MapperSettings)
    return runtime_settings, driver_settings


class MappersModule(EdgeModule):
    name = "mappers"

    def __init__(self, context: EdgeContext, settings: BaseModel) -> None:
        super().__init__(context, settings)
        self.runtimes: dict[str, MapperRuntime] = {}

    async def start(self) -> None:
        config = self.context.config
        enabled = config.enabled_mappers()
        registry = self.context.registry
        registry.in_process = set(enabled)
        if not enabled:
            registry.check_mappers()
            return
        host = self.context.host
        statuses = host.require("mapper", enabled)
        drivers = host.drivers(statuses)
        origins = {s.name: (s.distribution, s.version) for s in statuses if s.loaded}
        prepared = []
        for protocol in enabled:
            driver_cls = drivers[protocol]
            prepared.append(
                (
                    protocol,
                    driver_cls,
                    *mapper_settings(protocol, driver_cls, config.mappers[protocol].settings),
                )
            )
        for protocol, driver_cls, runtime_settings, driver_settings in prepared:
            bus = self.context.new_bus_client(f"mapper-{protocol}")
            await bus.start()
            runtime = MapperRuntime(
                driver_cls,
                bus,
                config.node,
                driver_settings,
                runtime_settings,
                distribution=origins[protocol],
            )
            await runtime.start()
            self.runtimes[protocol] = runtime
            log.info("mapper %s started in the edge process", protocol)
        # devices of other protocols wait for a `mapper run` process: said once per protocol
        registry.check_mappers()

    async def stop(self) -> None:
        for runtime in self.runtimes.values():
            await runtime.stop()
            await runtime.bus.stop()
        self.runtimes.clear()
