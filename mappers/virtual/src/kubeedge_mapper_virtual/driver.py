"""The virtual protocol driver.

Protocol ``configData`` (all optional)::

    seed: 7            # random-walk generators repeat with the same seed
    latencyMs: 2       # simulated time per read

Visitor ``configData``::

    generator: sine    # constant (default) | counter | random-walk | sine
    value: 21.5        # initial (or constant) value; for sine, the centre
    step: 0.5          # counter increment; random-walk largest step
    min: 0             # counter wraps / random-walk stays within [min, max]
    max: 100
    period: 60         # sine period, seconds
    amplitude: 2       # sine amplitude
    push: true         # the device pushes the value (as BACnet COV or BLE notify do): not polled
    pushIntervalMs: 500  # how often a pushed property sends its next value

A written value is kept: every later read returns it. The device's health check
(:meth:`VirtualDriver.state`) answers what ``SIMULATOR.set_health`` says.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubeedge import DeviceError, DeviceUnreachable, Driver, Emit, Property
from kubeedge_mapper_virtual.simulator import SIMULATOR, SimulatedDevice, SimulatedProperty, check_written


class _Config(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class VirtualDeviceConfig(_Config):
    seed: int | None = None
    latency_ms: float = Field(default=0, ge=0)


class VirtualVisitor(_Config):
    generator: Literal["constant", "counter", "random-walk", "sine"] = "constant"
    value: float | int | bool | str | None = None
    step: float = 1.0
    min: float | None = None
    max: float | None = None
    period: float = Field(default=60.0, gt=0)
    amplitude: float = 1.0
    push: bool = False
    push_interval_ms: float = Field(default=1000.0, gt=0)


class VirtualDriver(Driver[VirtualDeviceConfig, VirtualVisitor]):
    protocol = "virtual"
    config_model = VirtualDeviceConfig
    visitor_model = VirtualVisitor
    max_batch = 64

    sim: SimulatedDevice

    async def connect(self) -> None:
        self.sim = SIMULATOR.device(self.device.key, self.config.seed)
        if not self.sim.reachable:
            raise DeviceUnreachable(f"virtual device {self.device.key} is switched off")
        self.sim.connects += 1
        self.sim.open_connections += 1
        self._connected = True

    async def close(self) -> None:
        if getattr(self, "_connected", False):
            self._connected = False
            self.sim.open_connections -= 1

    async def read(self, prop: Property[VirtualVisitor]) -> Any:
        return (await self.read_many([prop]))[0]

    async def read_many(self, props: Any) -> list[Any]:
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        if not self.sim.reachable:
            raise DeviceUnreachable(f"virtual device {self.device.key} is switched off")
        results: list[Any] = []
        for prop in props:
            failure = self.sim.failing.get(prop.name)
            if failure:
                results.append(DeviceError(failure, code="simulated"))
                continue
            results.append(_typed(prop.type, self._property(prop).next(self.sim.rng)))
        return results

    async def write(self, prop: Property[VirtualVisitor], value: Any) -> None:
        if not self.sim.reachable:
            raise DeviceUnreachable(f"virtual device {self.device.key} is switched off")
        failure = self.sim.failing.get(prop.name) or self.sim.failing_writes.get(prop.name)
        if failure:
            raise DeviceError(failure, code="simulated")
        try:
            check_written(prop.type, value)
        except ValueError as exc:
            raise DeviceError(str(exc), code="simulated") from None
        simulated = self._property(prop)
        simulated.value = value
        simulated.written = True
        self.sim.writes.append((prop.name, value))

    async def state(self) -> str:
        if self.sim.health_error:
            raise DeviceError(self.sim.health_error, code="simulated")
        return self.sim.health

    def pushes(self, prop: Property[VirtualVisitor]) -> bool:
        return prop.visitor.push

    async def subscribe(self, props: Sequence[Property[VirtualVisitor]], emit: Emit) -> None:
        """Each property sends its next value every ``pushIntervalMs`` (a failing one, its error)."""
        loop = asyncio.get_running_loop()
        due = {prop.name: loop.time() for prop in props}
        while True:
            if not self.sim.reachable:
                raise DeviceUnreachable(f"virtual device {self.device.key} is switched off")
            now = loop.time()
            for prop in props:
                if due[prop.name] > now:
                    continue
                due[prop.name] = now + prop.visitor.push_interval_ms / 1000
                failure = self.sim.failing.get(prop.name)
                if failure:
                    emit(prop.name, DeviceError(failure, code="simulated"))
                    continue
                simulated = self._property(prop)
                simulated.pushes += 1
                emit(prop.name, _typed(prop.type, simulated.next(self.sim.rng)))
            await asyncio.sleep(max(0.0, min(due.values()) - loop.time()))

    def _property(self, prop: Property[VirtualVisitor]) -> SimulatedProperty:
        simulated = self.sim.properties.get(prop.name)
        if simulated is None or simulated.visitor != prop.visitor:  # new, or reconfigured
            v = prop.visitor
            simulated = SimulatedProperty(
                generator=v.generator,
                value=v.value if v.value is not None else _zero(prop.type),
                step=v.step,
                minimum=v.min,
                maximum=v.max,
                period=v.period,
                amplitude=v.amplitude,
                phase=self.sim.rng.uniform(0, 2 * math.pi) if v.generator == "sine" else 0.0,
                visitor=v,
            )
            self.sim.properties[prop.name] = simulated
        return simulated


def _zero(kind: str) -> Any:
    return {"boolean": False, "string": "", "bytes": b"", "stream": ""}.get(kind, 0)


def _typed(kind: str, value: Any) -> Any:
    if kind == "int":
        return round(value) if isinstance(value, float) else int(value)
    if kind in ("float", "double"):
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "on")
    if kind == "bytes" and isinstance(value, str):
        return base64.b64decode(value)  # configData cannot hold bytes: they are written as base64
    return value
