"""The driver contract, checked on a real driver while the conformance suite runs.

:func:`instrument` makes a subclass of the mapper's driver that calls the real methods and
records what the runtime would otherwise absorb silently: a read that returns the wrong Python
type (the runtime converts ``"7"`` to ``7`` and hides a decoding bug), a batch read with the
wrong number of results, a ``close()`` that raises. The runtime serves devices with that
subclass; nothing of the driver is replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubeedge.driver import Driver, Emit, Property

TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "an int"),
    "float": ((float, int), "a float"),
    "double": ((float, int), "a float"),
    "boolean": ((bool,), "a bool"),
    "string": ((str,), "a str"),
    "bytes": ((bytes, bytearray), "bytes"),
}
"""What a read may return for each twin type (an int is a fine float, a bool is no number)."""


@dataclass
class DriverContract:
    """What the instrumented driver saw; ``violations`` are messages naming the driver method."""

    loose_types: dict[str, str] = field(default_factory=dict)
    """Property name -> why its reads may return another type (the runtime converts it)."""
    violations: list[str] = field(default_factory=list)
    good_connects: int = 0
    failed_connects: int = 0
    closes: int = 0
    _typed: set[str] = field(default_factory=set)

    def violation(self, message: str) -> None:
        if message not in self.violations:
            self.violations.append(message)

    def check_type(self, method: str, prop: Property[Any], value: Any) -> None:
        if isinstance(value, BaseException) or prop.name in self.loose_types or prop.name in self._typed:
            return
        rule = TYPES.get(prop.type)
        if rule is None:
            return
        allowed, wanted = rule
        if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
            return
        self._typed.add(prop.name)
        self.violation(
            f"{method} returned {value!r} ({type(value).__name__}) for {prop.name!r} ({prop.type}): "
            f"return {wanted}. The runtime would convert it silently and hide a decoding "
            f"bug; if the type is intended, give the point `loose_type='why'` in the simulator"
        )


def instrument(driver_cls: type[Driver[Any, Any]], contract: DriverContract) -> type[Driver[Any, Any]]:
    """A subclass of ``driver_cls`` that reports to ``contract``; names and behaviour unchanged."""
    name = driver_cls.__qualname__

    async def connect(self: Any) -> None:
        try:
            await driver_cls.connect(self)
        except BaseException:
            self._conformance_connect = "a failed"
            contract.failed_connects += 1
            raise
        self._conformance_connect = "a good"
        contract.good_connects += 1

    async def close(self: Any) -> None:
        after = getattr(self, "_conformance_connect", "no")
        try:
            await driver_cls.close(self)
        except Exception as exc:
            contract.violation(
                f"{name}.close() raised {type(exc).__name__}: {exc} (called after {after} connect); "
                "close() must not raise, also when connect() failed or never ran"
            )
            raise
        finally:
            contract.closes += 1

    async def read(self: Any, prop: Property[Any]) -> Any:
        value = await driver_cls.read(self, prop)
        contract.check_type(f"{name}.read", prop, value)
        return value

    async def read_many(self: Any, props: Sequence[Property[Any]]) -> list[Any]:
        results = await driver_cls.read_many(self, props)
        if len(results) != len(props):
            contract.violation(
                f"{name}.read_many returned {len(results)} results for {len(props)} properties "
                f"({', '.join(p.name for p in props)}): return one value or exception per property, in order"
            )
        for prop, value in zip(props, results, strict=False):
            contract.check_type(f"{name}.read_many", prop, value)
        return list(results)

    namespace: dict[str, Any] = {
        "__module__": driver_cls.__module__,
        "__qualname__": name,
        "__doc__": driver_cls.__doc__,
        "connect": connect,
        "close": close,
        "read": read,
        "read_many": read_many,
    }
    if driver_cls.supports_push():

        async def subscribe(self: Any, props: Sequence[Property[Any]], emit: Emit) -> None:
            by_name = {p.name: p for p in props}

            def checked(prop_name: str, value: Any) -> None:
                if prop_name in by_name:
                    contract.check_type(f"{name}.subscribe (emit)", by_name[prop_name], value)
                emit(prop_name, value)

            await driver_cls.subscribe(self, props, checked)

        namespace["subscribe"] = subscribe
    return type(driver_cls.__name__, (driver_cls,), namespace)
