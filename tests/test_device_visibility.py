"""Nothing idles in silence: what the edge does is logged at info by default, and `device list`
says why a device is not served as a user may expect (another node, no mapper for its protocol,
a manifest kept at its last good version)."""

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from test_cli_edge import client_config, kubeedge

from kubeedge.bus import BusClient, free_port
from kubeedge.testing import wait_for
from kubeedge_mapper_modbus.simulator import ModbusSimulator
from kubeedge_process import spawn
from sample_devices import device, model

NO_BACNET = "no mapper for protocol 'bacnet' is enabled; installed: "


def bacnet_model() -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "ahu", "namespace": "default"},
        "spec": {"protocol": "bacnet", "properties": [{"name": "supply-temp", "type": "FLOAT"}]},
    }


def bacnet_device(name: str = "ahu-3") -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "ahu"},
            "protocol": {"protocolName": "bacnet", "configData": {"deviceInstance": 3}},
            "properties": [
                {
                    "name": "supply-temp",
                    "visitors": {"protocolName": "bacnet", "configData": {"objectType": "analogInput"}},
                }
            ],
        },
    }


def modbus_documents(port: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "DeviceModel",
            "metadata": {"name": "plc", "namespace": "plant"},
            "spec": {"protocol": "modbus", "properties": [{"name": "relay", "type": "INT"}]},
        },
        {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": "plc", "namespace": "plant"},
            "spec": {
                "deviceModelRef": {"name": "plc"},
                "protocol": {
                    "protocolName": "modbus",
                    "configData": {"ip": "127.0.0.1", "port": str(port), "slaveID": 1, "timeout": 500},
                },
                "properties": [
                    {
                        "name": "relay",
                        "collectCycle": 200,
                        "visitors": {
                            "protocolName": "modbus",
                            "configData": {"register": "CoilRegister", "offset": 0, "limit": 1},
                        },
                    }
                ],
            },
        },
    ]


def pushing_device() -> dict[str, Any]:
    pushy = device("pushy")
    pushy["spec"]["properties"][0]["pushMethod"] = {
        "mqtt": {"address": "tcp://127.0.0.1:1883", "topic": "temperature", "qos": 0},
        "dbMethod": {"redis": {"redisClientConfig": {"addr": "127.0.0.1:6379"}}},
    }
    return pushy


class EdgeProcess:
    """``kubeedge [-v...] edge run`` as a user starts it; everything it prints is kept."""

    def __init__(self, tmp_path: Path, mappers: dict[str, Any], *options: str) -> None:
        self.manifests = tmp_path / "manifests"
        self.manifests.mkdir(parents=True, exist_ok=True)
        self.config = tmp_path / "edge.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "node": "edge-1",
                    "bus": {"listen": f"127.0.0.1:{free_port()}"},
                    "dataDir": "data",
                    "manifests": "manifests",
                    "mappers": mappers,
                    "modules": {"standalone": {"debounceMs": 50, "rescanMs": 100}},
                }
            )
        )
        self.options = options
        self.output = ""
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    def write(self, name: str, *documents: dict[str, Any]) -> None:
        """Written whole at once (a rename), so the edge never reads a half-written file."""
        part = self.manifests / f".{name}.part"
        part.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        part.rename(self.manifests / name)

    async def start(self) -> "EdgeProcess":
        self.process = await spawn(*self.options, "edge", "run", "-c", str(self.config))
        self._reader = asyncio.create_task(self._read())  # drained: a full pipe would block the edge
        await self.wait_line(lambda line: "edge edge-1 running" in line, "the edge running", 30)
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.output += line.decode()

    def lines(self, check: Callable[[str], bool]) -> list[str]:
        return [line for line in self.output.splitlines() if check(line)]

    async def wait_line(self, check: Callable[[str], bool], what: str, timeout: float = 15) -> str:
        try:
            return (await wait_for(lambda: self.lines(check), timeout, what=what))[0]
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the edge printed:\n{self.output}") from None

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(2)
            await asyncio.wait_for(self.process.wait(), 20)
        if self._reader is not None:
            await self._reader


async def test_edge_run_logs_what_it_does_at_info_by_default(tmp_path) -> None:
    plc_port = free_port()
    edge = EdgeProcess(tmp_path, {"virtual": {}, "modbus": {"maxBackoff": 0.5}})
    edge.write(
        "a.yaml",
        model(),
        device("one"),
        device("far-1", node="edge-2"),
        device("far-2", node="edge-2"),
        pushing_device(),
    )
    edge.write("plc.yaml", *modbus_documents(plc_port))
    edge.write("ahu.yaml", bacnet_model(), bacnet_device())
    server = None
    try:
        await edge.start()
        # devices for other nodes: counted once, at start
        others = "2 device(s) in manifests are for other nodes: edge-2 (2)"
        await edge.wait_line(lambda line: line == f"INFO kubeedge.registry: {others}", others)
        # mappers: hello and the snapshot's count, on both sides
        await edge.wait_line(lambda line: "mapper virtual" in line and "says hello" in line, "hello")
        await edge.wait_line(
            lambda line: "mapper virtual: snapshot from edge node edge-1: 2 device(s)" in line, "snapshot"
        )
        # a protocol without a mapper
        unserved = await edge.wait_line(lambda line: NO_BACNET in line, "no bacnet mapper")
        assert unserved.startswith("INFO ") and "1 device(s) of protocol 'bacnet'" in unserved
        assert "modbus" in unserved and "virtual" in unserved
        # what the edge does not serve yet, once per device
        ignored = await edge.wait_line(lambda line: "device default/pushy" in line, "pushMethod ignored")
        assert ignored.startswith("WARNING "), ignored
        assert "ignored: temperature pushMethod.mqtt, pushMethod.dbMethod" in ignored
        # device state transitions with their reason: offline (nothing listens), then online
        offline = await edge.wait_line(lambda line: "device plant/plc: unknown -> offline" in line, "offline")
        assert "cannot connect" in offline and offline.startswith("INFO "), offline
        # ... and the reason is on the device, for `device list`
        code, out = await kubeedge("device", "list", "-c", str(edge.config))
        assert code == 0, out
        row = next(line for line in out.splitlines() if line.strip().startswith("plant/plc"))
        assert "offline" in row and row.rstrip().endswith("]"), out
        number = row.rstrip().rsplit(" ", 1)[1]
        note = next(line for line in out.splitlines() if line.startswith(number + " "))
        assert "cannot connect to Modbus TCP 127.0.0.1:" in note, out
        server = await ModbusSimulator(units=(1,), port=plc_port).start()
        await edge.wait_line(
            lambda line: "device plant/plc: offline -> online: connected" in line, "online", timeout=20
        )
        # a message the edge refuses is logged (at warning: the bus-hardening work rate-limits it)
        bus = BusClient(f"mqtt://{yaml.safe_load(edge.config.read_text())['bus']['listen']}")
        await bus.start()
        try:
            bus.publish("$hw/events/device/default/one/twin/update", b"{not json", qos=1)
            refused = await edge.wait_line(lambda line: "twin: refused (400)" in line, "the refusal")
        finally:
            await bus.stop()
        assert refused.startswith("WARNING ") and "default/one" in refused, refused
        # a change to the other nodes' devices is said again; an unrelated reload is not
        edge.write(
            "a.yaml",
            model(),
            device("one"),
            device("two"),
            device("far-1", node="edge-2"),
            device("far-2", node="edge-2"),
            pushing_device(),
        )
        await edge.wait_line(lambda line: "devices added default/two" in line, "two added")
        edge.write("far.yaml", device("far-3", node="edge-3"))
        await edge.wait_line(
            lambda line: "3 device(s) in manifests are for other nodes: edge-2 (2), edge-3 (1)" in line,
            "the new count",
        )
    finally:
        await edge.stop()
        if server is not None:
            await server.stop()
    assert len(edge.lines(lambda line: others in line)) == 1, edge.output
    assert len(edge.lines(lambda line: "default/pushy: not served by this edge" in line)) == 1, edge.output
    assert len(edge.lines(lambda line: "device plant/plc: unknown -> offline" in line)) == 1, edge.output
    assert "transitions" not in edge.output
    assert edge.process is not None and edge.process.returncode == 0, edge.output


async def test_verbose_levels_keep_amqtt_transitions_quiet_until_vv(tmp_path) -> None:
    outputs = {}
    for options in (("-v",), ("-vv",)):
        edge = EdgeProcess(tmp_path / options[0].strip("-"), {"virtual": {}}, *options)
        edge.write("a.yaml", model(), device("one"))
        try:
            await edge.start()
            # the mapper's bus connection has gone through amqtt's state machine by now
            await edge.wait_line(lambda line: "snapshot from edge node" in line, "snapshot")
        finally:
            await edge.stop()
        outputs[options[0]] = edge.output
    assert "DEBUG kubeedge." in outputs["-v"]  # -v: one level more of ours
    assert "transitions" not in outputs["-v"]
    assert "DEBUG transitions" in outputs["-vv"]
    assert "DEBUG amqtt" in outputs["-vv"]


async def test_device_list_shows_other_nodes_and_devices_without_a_mapper(edge, tmp_path) -> None:
    handle = await edge()
    handle.write_manifest(
        "a.yaml",
        model(),
        device("one"),
        device("far-1", node="edge-2"),
        device("far-2", node="edge-2"),
    )
    handle.write_manifest("ahu.yaml", bacnet_model(), bacnet_device())
    await handle.wait_reported("default/one", "label", "hello")
    await wait_for(lambda: "default/ahu-3" in handle.twin.devices, what="ahu-3 in the twin")
    config = str(client_config(handle, tmp_path))

    code, out = await kubeedge("device", "list", "-c", config)
    assert code == 0, out
    row = next(line for line in out.splitlines() if line.strip().startswith("default/ahu-3"))
    assert "bacnet" in row and "unknown" in row and row.rstrip().endswith("[1]"), out
    note = next(line for line in out.splitlines() if line.startswith("[1] "))
    assert note.startswith(f"[1] {NO_BACNET}") and "modbus" in note and "virtual" in note, out
    assert "far-1" not in out
    assert "2 device(s) in the manifests are for other nodes (device list --all shows them)" in out

    code, out = await kubeedge("device", "list", "--all", "-c", config)
    assert code == 0, out
    far = [line.split() for line in out.splitlines() if line.strip().startswith("default/far-")]
    assert [words[:5] for words in far] == [
        ["default/far-1", "virtual", "sensor-model", "other", "node:"],
        ["default/far-2", "virtual", "sensor-model", "other", "node:"],
    ]
    assert all(words[5] == "edge-2" for words in far), out

    code, out = await kubeedge("device", "list", "--all", "-c", config, "-o", "json")
    assert code == 0, out
    listed = {item["device"]["id"]: item["device"] for item in json.loads(out)}
    assert listed["default/far-1"]["state"] == "other node: edge-2"
    assert listed["default/ahu-3"]["state"] == "unknown"
    assert listed["default/ahu-3"]["attributes"]["stateReason"]["value"].startswith(NO_BACNET)
    assert "stateReason" not in listed["default/one"].get("attributes", {})

    code, out = await kubeedge("device", "get", "-c", config, "default/ahu-3")
    assert code == 0, out
    assert re.search(r"state unknown .*\n  state reason: " + re.escape(NO_BACNET), out), out
    code, out = await kubeedge("device", "get", "-c", config, "default/far-1")
    assert code == 1
    assert "device default/far-1 is for node edge-2 (spec.nodeName), not served by edge node edge-1" in out

    # a mapper for bacnet says hello (as `kubeedge mapper run bacnet` would): the reason goes
    bus = BusClient(handle.core.context.bus_url)
    await bus.start()
    try:
        bus.publish(
            "$ke/edge/edge-1/mappers/bacnet/hello",
            json.dumps({"version": 1, "instance": "x", "name": "bacnet-mapper"}).encode(),
            qos=1,
        )
        await wait_for(lambda: "bacnet" in handle.core.context.registry.hellos, what="bacnet hello")
    finally:
        await bus.stop()
    code, out = await kubeedge("device", "get", "-c", config, "default/ahu-3", "-o", "json")
    assert code == 0, out
    entry = json.loads(out)["device"]
    assert entry.get("state") != "unknown" and "stateReason" not in entry.get("attributes", {}), entry


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE devices (
    id TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL, description TEXT, state TEXT,
    last_online TEXT, attributes TEXT
);
CREATE TABLE twins (
    device_id TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, optional INTEGER NOT NULL,
    expected TEXT, expected_ts INTEGER, expected_cloud INTEGER NOT NULL, expected_edge INTEGER NOT NULL,
    actual TEXT, actual_ts INTEGER, actual_cloud INTEGER NOT NULL, actual_edge INTEGER NOT NULL,
    metadata TEXT, error TEXT, spec_desired TEXT, PRIMARY KEY (device_id, name)
) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO devices VALUES ('default/one', 'default', 'one', NULL, 'offline', NULL, NULL);
INSERT INTO twins VALUES ('default/one', 'setpoint', 'float', 0, '12.5', 1, 0, 1, '12.5', 1, 0, 1,
                          NULL, NULL, NULL);
"""


async def test_a_twin_database_of_schema_1_is_migrated_and_keeps_its_twins(edge, tmp_path) -> None:
    """The state reason added a column: an edge opens the database an older edge wrote."""
    import sqlite3

    from kubeedge_mapper_virtual import SIMULATOR

    workdir = tmp_path / "old"
    (workdir / "data").mkdir(parents=True)
    with sqlite3.connect(workdir / "data" / "twins.db") as db:
        db.executescript(V1_SCHEMA)
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "a.yaml").write_text(yaml.safe_dump_all([model(), device("one")]))
    handle = await edge(workdir=workdir)
    assert handle.twin.devices["default/one"].twins["setpoint"].expected == "12.5"
    await handle.wait_reported("default/one", "setpoint", "12.5")  # the kept desired value, written
    SIMULATOR.set_reachable("default/one", False)
    await handle.wait_state("default/one", "offline")
    await wait_for(lambda: handle.twin.devices["default/one"].state_reason, what="the offline reason")
    await handle.stop()
    with sqlite3.connect(workdir / "data" / "twins.db") as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
        (reason,) = db.execute("SELECT state_reason FROM devices WHERE id = 'default/one'").fetchone()
    assert "switched off" in reason


async def test_a_manifest_kept_at_its_last_good_version_shows_in_device_list(edge, tmp_path) -> None:
    handle = await edge()
    path = handle.write_manifest("a.yaml", model(), device("one"), device("two"))
    await handle.wait_reported("default/one", "label", "hello")
    config = str(client_config(handle, tmp_path))
    standalone = handle.core.module("standalone")
    reloads = standalone.reloads
    broken = device("one", properties=[{"name": "label", "collectCycle": -5}])
    handle.write_manifest("a.yaml", model(), broken, device("two"))
    handle.write_manifest("b.yaml", device("three", model_name="no-such-model"))
    await wait_for(
        lambda: standalone.reloads > reloads and "default/one" in handle.core.context.registry.problems
    )

    code, out = await kubeedge("device", "list", "-c", config)
    assert code == 0, out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip().startswith("default/")}
    assert rows["default/one"].rstrip().endswith("[1]"), out
    note = next(line for line in out.splitlines() if line.startswith("[1] "))
    assert note.startswith("[1] manifest kept at its last good version: ") and str(path) in note, out
    assert "collectCycle" in note, out
    problems = out.split("manifest problems (also in the edge's log):", 1)[1]
    assert "a.yaml:" in problems and "(its last good version is served)" in problems, out
    assert "b.yaml" in problems and "no-such-model" in problems and "(not loaded)" in problems, out

    code, out = await kubeedge("device", "get", "-c", config, "default/one")
    assert code == 0, out
    assert "problem: manifest kept at its last good version: " in out

    # fixed: the problem goes
    handle.write_manifest("a.yaml", model(), device("one"), device("two"))
    (handle.manifests / "b.yaml").unlink()
    await wait_for(lambda: not handle.core.context.registry.problems, what="problems cleared")
    code, out = await kubeedge("device", "list", "-c", config, "-o", "json")
    assert code == 0, out
    assert all("problem" not in item["device"].get("attributes", {}) for item in json.loads(out))
    code, out = await kubeedge("device", "list", "-c", config)
    assert "manifest problems" not in out and "[1]" not in out, out


async def test_a_mapper_run_process_logs_at_info_and_ends_the_no_mapper_reason(edge, tmp_path) -> None:
    handle = await edge(mappers={})  # no mapper in the edge process
    handle.write_manifest("a.yaml", model(), device("one"))
    await wait_for(lambda: "default/one" in handle.twin.devices, what="one in the twin")
    config = client_config(handle, tmp_path)
    code, out = await kubeedge("device", "get", "-c", str(config), "default/one")
    assert code == 0 and "state reason: no mapper for protocol 'virtual' is enabled" in out, out

    process = await spawn("mapper", "run", "virtual", "-c", str(config))
    output = b""

    async def read() -> None:
        nonlocal output
        assert process.stdout is not None
        while line := await process.stdout.readline():
            output += line

    reader = asyncio.create_task(read())
    try:
        await wait_for(
            lambda: b"device default/one: unknown -> online: connected" in output, 20, what="online"
        )
        code, out = await kubeedge("device", "list", "-c", str(config), "-o", "json")
        assert code == 0, out
        (item,) = json.loads(out)
        assert item["device"]["state"] == "online", item
        assert "stateReason" not in item["device"].get("attributes", {}), item
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
        await reader
    text = output.decode()
    assert "INFO kubeedge.mapper.runtime: mapper virtual: hello to edge node edge-1" in text, text
    assert "mapper virtual: snapshot from edge node edge-1: 1 device(s); 1 (re)started" in text, text
    # stopped: the goodbye ends its service, and device list says so
    registry = handle.core.context.registry
    await wait_for(lambda: "virtual" in registry.gone, what="the goodbye of the stopped mapper")
    code, out = await kubeedge("device", "list", "-c", str(config), "-o", "json")
    (item,) = json.loads(out)
    assert item["device"]["state"] == "unknown", item
    reason = item["device"]["attributes"]["stateReason"]["value"]
    assert reason.startswith("its mapper (virtual) stopped at "), reason


async def test_a_mapper_killed_with_sigkill_is_noticed_through_its_will(edge, tmp_path) -> None:
    """A crashed `mapper run` sends no goodbye: the broker publishes its will instead, and the
    edge stops counting it as serving the devices (it said "online" for them forever before)."""
    handle = await edge(mappers={})
    handle.write_manifest("a.yaml", model(), device("one"))
    await wait_for(lambda: "default/one" in handle.twin.devices, what="one in the twin")
    config = client_config(handle, tmp_path)
    registry = handle.core.context.registry

    async def run_mapper() -> asyncio.subprocess.Process:
        process = await spawn("mapper", "run", "virtual", "-c", str(config))
        await wait_for(lambda: "virtual" in registry.hellos, 20, what="the mapper's hello")
        return process

    first = await run_mapper()
    try:
        await handle.wait_reported("default/one", "label", "hello")
    finally:
        first.kill()
        await first.wait()
    await wait_for(lambda: "virtual" in registry.gone, 10, what="the killed mapper's will")
    code, out = await kubeedge("device", "get", "-c", str(config), "default/one", "-o", "json")
    assert code == 0, out
    entry = json.loads(out)["device"]
    assert entry["state"] == "unknown", entry
    assert "went away at" in entry["attributes"]["stateReason"]["value"], entry
    assert "its bus connection dropped without a goodbye" in entry["attributes"]["stateReason"]["value"]
    # a desired value set meanwhile says why it does not land
    code, out = await kubeedge(
        "twin", "set", "-c", str(config), "default/one", "label", "bye", "--timeout", "1"
    )
    assert code != 0 and "the device is unknown: its mapper (virtual) went away at" in out, out
    # stored too, so what reports state upstream (the cloud's Device status) says unknown as well
    stored = handle.twin.devices["default/one"]
    assert stored.state == "unknown" and "went away at" in (stored.state_reason or ""), stored

    # a new process serves them again; an older process's will arriving late ends nothing
    second = await run_mapper()
    try:
        assert "virtual" not in registry.gone
        await wait_for(lambda: stored.state == "online", 20, what="online again under the new mapper")
        code, out = await kubeedge("device", "get", "-c", str(config), "default/one", "-o", "json")
        assert "stateReason" not in json.loads(out)["device"].get("attributes", {}), out
        current = handle.core.assignments.hellos["virtual"].instance
        bus = BusClient(handle.core.context.bus_url)
        await bus.start()
        try:
            topic = "$ke/edge/edge-1/mappers/virtual/goodbye"
            stale = {"instance": "an-older-process", "reason": "connection lost"}
            bus.publish(topic, json.dumps(stale).encode(), qos=1)
            # then the current one's, on the same topic from the same client (so after it)
            bus.publish(topic, json.dumps({"instance": current, "reason": "stopped"}).encode(), qos=1)
            await wait_for(lambda: "virtual" in registry.gone, 10, what="the current mapper's goodbye")
        finally:
            await bus.stop()
        assert registry.gone["virtual"].startswith("its mapper (virtual) stopped at "), registry.gone
    finally:
        second.terminate()
        await asyncio.wait_for(second.wait(), 10)
