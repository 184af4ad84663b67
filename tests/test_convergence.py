"""Desired values converge, level-triggered, whatever the device does (docs/design.md,
"Desired values converge"): an edge process with the Modbus mapper, a real pymodbus server in
the test process, restarted, changed by hand, refusing writes, reverting."""

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeedge.api import topics
from kubeedge.bus import BusClient, free_port
from kubeedge.client import EdgeClient, EdgeRequestError
from kubeedge.testing import wait_for
from kubeedge_mapper_modbus.simulator import ModbusSimulator
from kubeedge_process import start_edge

KEY = "plant/plc-1"
RELAY = {"register": "CoilRegister", "offset": 3}
SETPOINT = {"register": "HoldingRegister", "offset": 10, "dataType": "uint16"}
CONVERGENCE = {"initialBackoff": 0.3, "maxBackoff": 1.0, "errorAfter": 3, "hold": 5}


def manifests(port: int, relay: str = "true", setpoint: str | None = None) -> list[dict[str, Any]]:
    model = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "plc", "namespace": "plant"},
        "spec": {
            "protocol": "modbus",
            "properties": [
                {"name": "relay", "type": "BOOLEAN", "accessMode": "ReadWrite"},
                {"name": "setpoint", "type": "INT", "accessMode": "ReadWrite"},
            ],
        },
    }
    properties: list[dict[str, Any]] = [
        {
            "name": "relay",
            "collectCycle": 100,
            "desired": {"value": relay},
            "visitors": {"protocolName": "modbus", "configData": RELAY},
        },
        {
            "name": "setpoint",
            "collectCycle": 100,
            "visitors": {"protocolName": "modbus", "configData": SETPOINT},
        },
    ]
    if setpoint is not None:
        properties[1]["desired"] = {"value": setpoint}
    device = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "plc-1", "namespace": "plant"},
        "spec": {
            "deviceModelRef": {"name": "plc"},
            "protocol": {
                "protocolName": "modbus",
                "configData": {
                    "communicateMode": "TCP",
                    "ip": "127.0.0.1",
                    "port": str(port),
                    "slaveID": 1,
                    "timeout": 500,
                },
            },
            "properties": properties,
        },
    }
    return [model, device]


class Edge:
    """``kubeedge edge run`` as its own process, and a client of it."""

    def __init__(self, tmp_path: Path, device_port: int, convergence: dict[str, float]) -> None:
        self.dir = tmp_path
        self.bus_port = free_port()
        (tmp_path / "manifests").mkdir()
        (tmp_path / "manifests" / "plc.yaml").write_text(yaml.safe_dump_all(manifests(device_port)))
        config = {
            "node": "edge-1",
            "bus": {"listen": f"127.0.0.1:{self.bus_port}"},
            "dataDir": "data",
            "manifests": "manifests",
            "mappers": {"modbus": {"maxBackoff": 0.5, "readTimeout": 2}},
            "modules": {"twin": {"convergence": convergence}},
        }
        self.config = tmp_path / "edge.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.process: asyncio.subprocess.Process | None = None
        self.bus: BusClient | None = None
        self.client: EdgeClient | None = None

    async def start(self) -> "Edge":
        self.process, _ = await start_edge(self.config)
        assert self.process.stdout is not None
        self.log = asyncio.create_task(self.process.stdout.read())  # drained: a full pipe blocks it
        self.bus = BusClient(f"mqtt://127.0.0.1:{self.bus_port}")
        await self.bus.start()
        self.client = EdgeClient(self.bus, "edge-1")
        return self

    async def stop(self, sig: int = signal.SIGINT) -> None:
        if self.bus is not None:
            await self.bus.stop()
            self.bus = None
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)
            await asyncio.wait_for(self.process.wait(), 20)
            await self.log

    async def twin(self, name: str) -> dict[str, Any]:
        assert self.client is not None
        return dict((await self.client.twin(KEY)).get(name) or {})

    async def wait_twin(self, name: str, check: Any, what: str, timeout: float = 15) -> dict[str, Any]:
        last: dict[str, Any] = {}

        async def probe() -> bool:
            nonlocal last
            last = await self.twin(name)
            return bool(check(last))

        try:
            await until(probe, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the twin of {name}: {last}") from None
        return last


async def until(check: Any, timeout: float, what: str) -> None:
    """Poll an async ``check`` until it is truthy; fail naming ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


def reported(twin: dict[str, Any]) -> str | None:
    return (twin.get("actual") or {}).get("value")


def error(twin: dict[str, Any]) -> str:
    return str((twin.get("metadata") or {}).get("error") or "")


def writes(server: ModbusSimulator) -> int:
    return sum(n for (_unit, request), n in server.requests.items() if "Write" in request)


@pytest.fixture
async def plant(request, tmp_path: Path) -> AsyncIterator[tuple[Edge, ModbusSimulator]]:
    server = await ModbusSimulator(units=(1,)).start()
    edge = Edge(tmp_path, server.port, {**CONVERGENCE, **getattr(request, "param", {})})
    try:
        yield await edge.start(), server
    finally:
        await edge.stop()
        with contextlib.suppress(Exception):
            await server.stop()


async def coil(server: ModbusSimulator) -> bool:
    return bool((await server.get(1, "CoilRegister", 3, 1))[0])


async def test_a_device_restarted_with_reset_state_is_written_again(plant) -> None:
    edge, server = plant
    await until(lambda: coil(server), 15, "the desired relay=true written to the device")
    await edge.wait_twin("relay", lambda t: reported(t) == "true", "relay reported true")

    # The device restarts: same address, every coil and register back to 0.
    port = server.port
    await server.stop()
    await asyncio.sleep(1.0)  # long enough for the mapper to see it gone
    fresh = await ModbusSimulator(units=(1,), port=port).start()
    try:
        assert not await coil(fresh)
        await until(lambda: coil(fresh), 15, "relay=true written again after the restart")
        twin = await edge.wait_twin("relay", lambda t: reported(t) == "true", "relay reported true")
        assert twin["expected"]["value"] == "true"
        assert error(twin) == ""
    finally:
        await fresh.stop()


async def test_a_change_made_at_the_device_is_undone(plant) -> None:
    edge, server = plant
    await until(lambda: coil(server), 15, "the desired relay=true written to the device")
    await edge.wait_twin("relay", lambda t: reported(t) == "true", "relay reported true")
    before = writes(server)
    await server.set(1, "CoilRegister", 3, [False])  # someone switched it off by hand
    await until(lambda: coil(server), 10, "relay=true written again after a change at the device")
    assert writes(server) > before
    twin = await edge.wait_twin("relay", lambda t: reported(t) == "true", "relay reported true")
    assert error(twin) == ""


async def test_desired_values_are_written_again_after_an_edge_restart(plant) -> None:
    edge, server = plant
    await until(lambda: coil(server), 15, "the desired relay=true written to the device")
    await edge.wait_twin("relay", lambda t: reported(t) == "true", "relay reported true")
    await edge.stop(signal.SIGKILL)
    await server.set(1, "CoilRegister", 3, [False])  # the device reset while the edge was down
    await edge.start()
    await until(lambda: coil(server), 15, "relay=true written again after the edge restarted")
    await edge.wait_twin("relay", lambda t: reported(t) == "true", "relay reported true")


async def test_a_refused_value_shows_its_error_and_is_retried_with_back_off(plant) -> None:
    edge, server = plant
    await edge.wait_twin("setpoint", lambda t: reported(t) == "0", "setpoint reported")
    server.failing[1] |= {(6, 10), (16, 10)}  # the device refuses writes to the setpoint register
    assert edge.client is not None
    await edge.client.set_desired(KEY, "setpoint", "42")
    twin = await edge.wait_twin("setpoint", lambda t: "write of '42' failed" in error(t), "the write error")
    assert reported(twin) == "0"

    # Retried, but spaced out: back-off 0.3 s doubling up to 1 s, not every 100 ms read cycle.
    start = writes(server)
    await asyncio.sleep(4)
    retried = writes(server) - start
    assert 2 <= retried <= 10, retried  # one per 100 ms cycle would be ~40

    # The device accepts writes again: the next retry lands, and the error goes.
    server.failing[1].clear()
    twin = await edge.wait_twin("setpoint", lambda t: reported(t) == "42", "setpoint 42 reported")
    assert (await server.get(1, "HoldingRegister", 10, 1))[0] == 42
    await edge.wait_twin("setpoint", lambda t: error(t) == "", "the error cleared")


async def test_a_device_that_keeps_reverting_is_shown_and_setting_again_retries_at_once(plant) -> None:
    edge, server = plant
    await until(lambda: coil(server), 15, "the desired relay=true written to the device")
    await edge.wait_twin("relay", lambda t: reported(t) == "true", "relay reported true")

    async def revert() -> None:  # a device (or a person) that switches the relay off again and again
        while True:
            if await coil(server):
                await asyncio.sleep(0.25)
                await server.set(1, "CoilRegister", 3, [False])
            await asyncio.sleep(0.05)

    reverter = asyncio.create_task(revert())
    try:
        twin = await edge.wait_twin(
            "relay", lambda t: "does not hold" in error(t), "the 'does not hold' error", timeout=30
        )
        assert "desired value 'true'" in error(twin) and "attempts" in error(twin)
    finally:
        reverter.cancel()
        await asyncio.gather(reverter, return_exceptions=True)
    # Left alone, the next retry (at most maxBackoff later) holds and the error goes.
    await server.set(1, "CoilRegister", 3, [False])
    await edge.wait_twin(
        "relay", lambda t: reported(t) == "true" and not error(t), "relay back to true without error"
    )


@pytest.mark.parametrize("plant", [{"initialBackoff": 60, "maxBackoff": 120}], indirect=True)
async def test_setting_the_same_desired_value_again_retries_at_once(plant) -> None:
    edge, server = plant
    await edge.wait_twin("setpoint", lambda t: reported(t) == "0", "setpoint reported")
    server.failing[1] |= {(6, 10), (16, 10)}
    assert edge.client is not None
    await edge.client.set_desired(KEY, "setpoint", "42")
    await edge.wait_twin("setpoint", lambda t: "write of '42' failed" in error(t), "the write error")
    server.failing[1].clear()  # fixed at the device; the next retry would be 30-60 s away
    await asyncio.sleep(1)
    assert reported(await edge.twin("setpoint")) == "0"
    await edge.client.set_desired(KEY, "setpoint", "42")  # the same value, set again
    await edge.client.wait_reported(KEY, "setpoint", "42", timeout=5)


async def test_twin_set_of_an_unchanged_value_that_does_not_hold_says_why(plant) -> None:
    edge, server = plant
    await edge.wait_twin("setpoint", lambda t: reported(t) == "0", "setpoint reported")
    server.failing[1] |= {(6, 10), (16, 10)}
    assert edge.client is not None
    await edge.client.set_desired(KEY, "setpoint", "7")
    with pytest.raises(EdgeRequestError) as refused:
        await edge.client.wait_reported(KEY, "setpoint", "7", timeout=5)
    assert "write of '7' failed" in str(refused.value)


class GoStyleMapper:
    """What a KubeEdge Go mapper does on the bus: report every cycle (its report carries the
    expected value too), write on every delta, never compare a reading with the desired value."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.relay = "false"  # the device's coil
        self.refuse = False  # the device ignores writes
        self.deltas: list[float] = []

    async def start(self) -> "GoStyleMapper":
        self.bus = BusClient(self.url)
        await self.bus.start()

        def on_delta(_topic: str, payload: bytes) -> None:
            delta = json.loads(payload).get("delta") or {}
            if "relay" in delta:
                self.deltas.append(time.monotonic())
                if not self.refuse:
                    self.relay = delta["relay"]  # the write

        self.bus.subscribe(topics.device_topic("plant", "plc-1", topics.TWIN_UPDATE_DELTA), on_delta, qos=1)
        self.reporter = asyncio.create_task(self._report())
        return self

    async def _report(self) -> None:
        topic = topics.device_topic("plant", "plc-1", topics.TWIN_UPDATE)
        while True:
            relay = {"actual": {"value": self.relay, "metadata": {}}, "metadata": {"type": "boolean"}}
            relay["expected"] = {"value": "true", "metadata": {}}
            body = {"event_id": "", "timestamp": int(time.time() * 1000), "twin": {"relay": relay}}
            self.bus.publish(topic, json.dumps(body).encode())
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.reporter.cancel()
        await asyncio.gather(self.reporter, return_exceptions=True)
        await self.bus.stop()


async def test_a_kubeedge_go_style_mapper_converges_without_a_flood_of_deltas(edge) -> None:
    """The twin owns convergence, so a mapper that only writes on deltas converges too."""
    handle = await edge(mappers={}, modules={"twin": {"convergence": CONVERGENCE}})
    documents = manifests(free_port())
    documents[1]["spec"]["properties"] = documents[1]["spec"]["properties"][:1]
    handle.write_manifest("plc.yaml", *documents)  # modbus: no mapper of ours serves it here
    await wait_for(lambda: handle.record(KEY, "relay"), 10, what="the device's twins")
    mapper = await GoStyleMapper(str(handle.core.context.bus_url)).start()
    try:
        # The device reports the relay off: the twin sends the delta again and it lands.
        await wait_for(lambda: handle.reported(KEY, "relay") == "true", 10, what="relay reported true")
        mapper.relay = "false"  # switched off at the device
        await wait_for(lambda: handle.reported(KEY, "relay") == "true", 10, what="relay written again")

        # A device that ignores the write, reported 20 times a second: KubeEdge's edgecore would
        # send a delta after every report (~80 in 4 s); back-off 0.3 s doubling to 1 s sends few.
        mapper.refuse, mapper.relay = True, "false"
        sent = len(mapper.deltas)
        await asyncio.sleep(4)
        resent = len(mapper.deltas) - sent
        assert 2 <= resent <= 10, resent
        assert "does not hold" in handle.error(KEY, "relay")
        assert "'true'" in handle.error(KEY, "relay") and "'false'" in handle.error(KEY, "relay")
    finally:
        await mapper.stop()
