"""An edge running in the test's event loop, with helpers to write manifests and wait for twins."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from kubeedge.client import EdgeClient
from kubeedge.config import EdgeConfig
from kubeedge.edge.core import EdgeCore

T = TypeVar("T")


async def wait_for(
    check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or check!r}")
        await asyncio.sleep(interval)


class EdgeHandle:
    """A running edge plus what a test needs to look at it."""

    def __init__(self, core: EdgeCore, manifests: Path) -> None:
        self.core = core
        self.manifests = manifests
        self._client: EdgeClient | None = None
        self._twin = core.module("twin")  # kept, so a test can look at it after stopping

    @property
    def config(self) -> EdgeConfig:
        return self.core.config

    @property
    def twin(self) -> Any:
        return self._twin

    @property
    def bus(self) -> Any:
        assert self.core.context is not None
        return self.core.context.bus

    def write_manifest(self, name: str, *documents: dict[str, Any]) -> Path:
        path = self.manifests / name
        path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        return path

    def record(self, key: str, prop: str) -> Any:
        device = self.twin.devices.get(key)
        return device.twins.get(prop) if device is not None else None

    def reported(self, key: str, prop: str) -> str | None:
        record = self.record(key, prop)
        return record.actual if record is not None else None

    def error(self, key: str, prop: str) -> str:
        """The property's error text ("" when it has none, or is not known yet)."""
        record = self.record(key, prop)
        return (record.error or "") if record is not None else ""

    def state(self, key: str) -> str | None:
        device = self.twin.devices.get(key)
        return device.state if device is not None else None

    async def wait_reported(
        self,
        key: str,
        prop: str,
        predicate: Callable[[str | None], bool] | str | None = None,
        timeout: float = 10,
    ) -> str:
        """Wait until the twin reports a value for ``prop`` (equal to / accepted by ``predicate``)."""

        def check() -> tuple[str] | None:
            value = self.reported(key, prop)
            if value is None:
                return None
            ok = predicate is None or (predicate(value) if callable(predicate) else value == predicate)
            return (value,) if ok else None  # a tuple: an empty string is a reported value too

        (value,) = await wait_for(check, timeout, what=f"{key} {prop} reported {predicate!r}")
        return value

    async def wait_state(self, key: str, state: str, timeout: float = 10) -> None:
        await wait_for(lambda: self.state(key) == state, timeout, what=f"{key} state {state}")

    async def client(self) -> EdgeClient:
        """An :class:`EdgeClient` on its own bus connection (what the CLI does)."""
        if self._client is None:
            assert self.core.context is not None
            bus = self.core.context.new_bus_client("test-client")
            await bus.start()
            self._client = EdgeClient(bus, self.config.node)
        return self._client

    async def stop(self) -> None:
        """Stop the edge (a second call does nothing)."""
        if self.core.context is None:
            return
        if self._client is not None:
            await self._client.bus.stop()
            self._client = None
        await self.core.stop()


async def start_edge(
    tmp: Path,
    bus_url: str = "embedded",
    mappers: dict[str, Any] | None = None,
    node: str = "edge-1",
    **extra: Any,
) -> EdgeHandle:
    """Start an edge in this event loop: data in ``tmp/data``, manifests followed in ``tmp/manifests``."""
    manifests = tmp / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    bus: dict[str, Any] = {"url": bus_url, **extra.pop("bus", {})}
    if bus_url == "embedded":
        from kubeedge.bus import free_port

        bus["listen"] = f"127.0.0.1:{free_port()}"
    config = EdgeConfig.model_validate(
        {
            "node": node,
            "bus": bus,
            "dataDir": str(tmp / "data"),
            "manifests": str(manifests),
            "mappers": mappers if mappers is not None else {"virtual": {}},
            "modules": {"standalone": {"debounceMs": 50, "rescanMs": 100}},
            **extra,
        }
    )
    core = EdgeCore(config)
    await core.start()
    return EdgeHandle(core, manifests)
