"""The pytest plugin behind ``kubeedge.testing`` (registered as ``pytest11`` entry point ``kubeedge``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeedge.testing.brokers import Mosquitto


@pytest.fixture(scope="session")
def mosquitto_url() -> Iterator[str]:
    """A Mosquitto broker for the whole session (``max_queued_messages 0``)."""
    broker = Mosquitto().start()
    try:
        yield broker.url
    finally:
        broker.close()


@pytest.fixture
def mosquitto_factory() -> Iterator[Callable[..., Mosquitto]]:
    """Start extra Mosquitto brokers (for tests that stop and restart one)."""
    started: list[Mosquitto] = []

    def make(port: int | None = None) -> Mosquitto:
        broker = Mosquitto(port).start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.close()


@pytest.fixture(params=["embedded", "mosquitto"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Run the test on both buses: ``embedded`` (the edge starts amqtt) and a Mosquitto URL."""
    if request.param == "embedded":
        return "embedded"
    return str(request.getfixturevalue("mosquitto_url"))


try:
    import pytest_asyncio
except ImportError:  # the async fixtures need pytest-asyncio; the rest works without
    pass
else:

    @pytest_asyncio.fixture
    async def embedded_url() -> AsyncIterator[str]:
        """The embedded broker (amqtt, with the edge's `$` topic fix) on a free loopback port."""
        from kubeedge.bus import EmbeddedBroker, free_port

        broker = EmbeddedBroker("127.0.0.1", free_port())
        await broker.start()
        try:
            yield broker.url
        finally:
            await broker.stop()

    @pytest_asyncio.fixture
    async def edge(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
        """``await edge(bus_url=..., mappers={...})`` starts an edge in process; stopped after the test."""
        from kubeedge.testing.edge import EdgeHandle, start_edge

        handles: list[EdgeHandle] = []

        async def make(bus_url: str = "embedded", workdir: Path | None = None, **kwargs: Any) -> EdgeHandle:
            handle = await start_edge(workdir or tmp_path / f"edge{len(handles)}", bus_url, **kwargs)
            handles.append(handle)
            return handle

        yield make
        for handle in handles:
            await asyncio.wait_for(handle.stop(), 30)
