"""The simulated devices' world: values, written values, and faults a test can switch on.

One :data:`SIMULATOR` per process, shared by every virtual driver instance in it, so a test (or
the demo) can make a device unreachable or unhealthy, make a property fail, or look at what was
written.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimulatedProperty:
    generator: str
    value: Any
    step: float = 1.0
    minimum: float | None = None
    maximum: float | None = None
    period: float = 60.0
    amplitude: float = 1.0
    phase: float = 0.0
    visitor: Any = None
    reads: int = 0
    pushes: int = 0
    written: bool = False
    started: float = field(default_factory=time.monotonic)

    def next(self, rng: random.Random) -> Any:
        self.reads += 1
        if self.written or self.generator == "constant":
            return self.value
        if self.generator == "counter":
            value = (self.value or 0) + self.step
            if self.maximum is not None and value > self.maximum:
                value = self.minimum if self.minimum is not None else 0
            self.value = value
        elif self.generator == "random-walk":
            value = (self.value or 0) + rng.uniform(-self.step, self.step)
            if self.minimum is not None:
                value = max(self.minimum, value)
            if self.maximum is not None:
                value = min(self.maximum, value)
            self.value = value
        elif self.generator == "sine":
            phase = 2 * math.pi * (time.monotonic() - self.started) / self.period + self.phase
            return (self.value or 0) + self.amplitude * math.sin(phase)
        return self.value


@dataclass
class SimulatedDevice:
    key: str
    seed: int | None
    properties: dict[str, SimulatedProperty] = field(default_factory=dict)
    reachable: bool = True
    failing: dict[str, str] = field(default_factory=dict)
    failing_writes: dict[str, str] = field(default_factory=dict)
    writes: list[tuple[str, Any]] = field(default_factory=list)
    connects: int = 0
    open_connections: int = 0
    """Drivers connected and not closed yet (a driver's ``close`` must bring it back to 0)."""
    health: str = "online"
    """What the device's health check (``Driver.state``) answers."""
    health_error: str | None = None
    """When set, the health check fails with this message instead."""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - simulation, not cryptography


WRITE_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "double": (float, int),
    "boolean": (bool,),
    "string": (str,),
    "bytes": (bytes,),
}


def check_written(kind: str, value: Any) -> None:
    """A simulated device takes only values of its property's type, as a real one takes only its
    wire form: ValueError for anything else (a str for an int, an int for a boolean)."""
    allowed = WRITE_TYPES.get(kind)
    if allowed is None:
        return
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise ValueError(f"a {kind} property cannot hold {value!r} ({type(value).__name__})")


class Simulator:
    def __init__(self) -> None:
        self.devices: dict[str, SimulatedDevice] = {}

    def device(self, key: str, seed: int | None = None) -> SimulatedDevice:
        if key not in self.devices:
            self.devices[key] = SimulatedDevice(key, seed)
        return self.devices[key]

    def set_reachable(self, key: str, reachable: bool) -> None:
        self.device(key).reachable = reachable

    def fail(self, key: str, prop: str, message: str | None, reads: bool = True) -> None:
        """Make writes (and reads, unless ``reads=False``) of one property fail with ``message``
        (None: work again)."""
        device = self.device(key)
        device.failing.pop(prop, None)
        device.failing_writes.pop(prop, None)
        if message is not None:
            (device.failing if reads else device.failing_writes)[prop] = message

    def set_health(self, key: str, health: str = "online", error: str | None = None) -> None:
        """What the device's health check answers (``online``, ``unhealthy``, ``offline``), or, with
        ``error``, that the check itself fails with that message."""
        device = self.device(key)
        device.health = health
        device.health_error = error

    def reset(self) -> None:
        self.devices.clear()


SIMULATOR = Simulator()
