"""Cloud and edge as separate processes on loopback, real TLS (trustme): `kubeedge cloud run` with
the files source, `kubeedge edge run` in cloud mode with the virtual mapper, and between them,
where a test needs to cut the link, a TCP proxy the test controls.

What a user relies on: a manifest in the cloud's folder reaches the right edge and its values come
back into the cloud's status (`device get --cloud`); a desired value set in the cloud is written
and observed; nothing the edge stored is lost to a cut link, a `kill -9` of the edge or a cloud
restart; a restarted cloud does not send unchanged objects again; an edge started while its
cloud is down serves its last devices; a full outbox drops by its policy and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
import trustme
import yaml

from kubeedge.bus import BusClient, free_port
from kubeedge.client import EdgeClient
from kubeedge_process import spawn
from sample_devices import device, model

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 30, what: str = "") -> T:
    """Await ``check()`` until it returns something truthy (it may take a second: a CLI call)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.2)


class Process:
    """A `kubeedge` process whose output is read as it comes (kept for asserts and failures)."""

    def __init__(self, name: str, *args: str) -> None:
        self.name = name
        self.args = args
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self, ready: str, timeout: float = 30) -> None:
        self.lines = []
        self.process = await spawn(*self.args)
        self._reader = asyncio.create_task(self._read())
        await self.wait_line(ready, timeout)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_line(self, pattern: str, timeout: float = 30, start: int = 0) -> str:
        async def found() -> str | None:
            for line in self.lines[start:]:
                if re.search(pattern, line):
                    return line
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"{self.name} exited:\n{self.output}")
            return None

        return await eventually(found, timeout, f"{pattern!r} from {self.name}:\n{self.output[-3000:]}")

    async def stop(self, sig: int = signal.SIGINT) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)


class Proxy:
    """A loopback TCP proxy to the cloud: ``cut()`` drops every connection and refuses new ones
    until ``restore()`` (what a network outage looks like to both sides)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = True
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.up = False
        for a, b in list(self._pairs):
            a.transport.abort()
            b.transport.abort()
        self._pairs.clear()

    def restore(self) -> None:
        self.up = True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, upstream)
        self._pairs.add(pair)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream), pipe(upstream_reader, writer))
        self._pairs.discard(pair)


class Site:
    """One cloud and its edges, in a temporary folder."""

    def __init__(self, root: Path, ca: trustme.CA) -> None:
        self.root = root
        self.ca_file = root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert = ca.issue_cert("127.0.0.1", "localhost")
        (root / "hub.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(root / "hub.key"))
        self.manifests = root / "manifests"
        self.manifests.mkdir()
        self.cloud_port = free_port()
        self.cloud_yaml = root / "cloud.yaml"
        self.cloud_yaml.write_text(
            yaml.safe_dump(
                {
                    "listen": f"127.0.0.1:{self.cloud_port}",
                    "tls": {"certFile": "hub.pem", "keyFile": "hub.key"},
                    "dataDir": "cloud-data",
                    "source": {"kind": "files", "path": "manifests", "debounceMs": 50, "rescanMs": 200},
                    "resend": {"firstMs": 500, "maxMs": 2000},
                    "status": {"flushMs": 20},
                }
            )
        )
        self.cloud = Process("cloud", "cloud", "run", "-c", str(self.cloud_yaml))
        self.edges: dict[str, Process] = {}
        self.ports: dict[str, int] = {}
        self._clients: list[BusClient] = []

    def write(self, name: str, *documents: dict[str, Any]) -> None:
        path = self.manifests / name
        path.with_suffix(".tmp").write_text(yaml.safe_dump_all(documents, sort_keys=False))
        path.with_suffix(".tmp").rename(path)  # the cloud's folder watch sees a whole file

    async def start_cloud(self) -> None:
        await self.cloud.start(r"cloud running")

    async def token(self, node: str) -> str:
        process = await spawn("token", "create", node, "-c", str(self.cloud_yaml))
        out, _ = await process.communicate()
        assert process.returncode == 0, out.decode()
        return next(line for line in out.decode().splitlines() if line.count(".") == 2)

    async def edge_config(self, node: str, port: int | None = None, **cloud: Any) -> Path:
        folder = self.root / node
        folder.mkdir(exist_ok=True)
        token = folder / "node.token"
        if not token.exists():
            token.write_text(await self.token(node) + "\n")
        self.ports.setdefault(node, free_port())
        config = folder / "edge.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "node": node,
                    "bus": {"listen": f"127.0.0.1:{self.ports[node]}"},
                    "dataDir": "data",
                    "mappers": {"virtual": {}},
                    "cloud": {
                        "url": f"wss://127.0.0.1:{port or self.cloud_port}",
                        "tokenFile": "node.token",
                        "caFile": str(self.ca_file),
                        "batchDelayMs": 20,
                        "reconnectMinMs": 100,
                        "reconnectMaxMs": 500,
                        "keepaliveMs": 2000,
                        **cloud,
                    },
                }
            )
        )
        return config

    async def start_edge(self, node: str, port: int | None = None, **cloud: Any) -> Process:
        config = await self.edge_config(node, port, **cloud)
        edge = Process(node, "edge", "run", "-c", str(config))
        self.edges[node] = edge
        await edge.start(rf"edge {node} running")
        return edge

    async def cloud_device(self, key: str) -> dict[str, Any]:
        """``kubeedge device get --cloud -o json``: the device and its status as the cloud holds it."""
        process = await spawn("device", "get", "--cloud", "-c", str(self.cloud_yaml), key, "-o", "json")
        out, _ = await process.communicate()
        text = out.decode()
        assert process.returncode == 0, text
        return dict(json.loads(text[text.index("{") :]))

    async def cloud_twin(self, key: str, prop: str) -> dict[str, Any]:
        status = (await self.cloud_device(key))["status"] or {}
        return dict((status.get("twins") or {}).get(prop) or {})

    async def edge_twin(self, node: str, key: str) -> dict[str, Any]:
        """The edge's twin of a device, asked on its bus (what ``kubeedge device get`` does)."""
        bus = BusClient(f"mqtt://127.0.0.1:{self.ports[node]}", client_id=f"test-{node}-{free_port()}")
        await bus.start()
        try:
            return await EdgeClient(bus, node).twin(key)
        finally:
            await bus.stop()

    async def edge_status(self, node: str) -> str:
        config = self.root / node / "edge.yaml"
        process = await spawn("edge", "status", "-c", str(config))
        out, _ = await process.communicate()
        return out.decode()

    async def close(self) -> None:
        for edge in self.edges.values():
            await edge.stop()
        await self.cloud.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest_asyncio.fixture
async def site(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[Site]:
    made = Site(tmp_path, ca)
    try:
        yield made
    finally:
        await made.close()


def reported(twin: dict[str, Any], prop: str) -> str | None:
    return ((twin.get(prop) or {}).get("actual") or {}).get("value")


async def test_a_manifest_in_the_cloud_reaches_its_edge_and_values_come_back(site: Site) -> None:
    site.write("plant.yaml", model(), device("sensor-1", node="edge-1"), device("sensor-2", node="edge-2"))
    await site.start_cloud()
    await site.start_edge("edge-1")
    await site.start_edge("edge-2")

    async def label_in_cloud(key: str) -> bool:
        return (await site.cloud_twin(key, "label")).get("reported") == "hello"

    await eventually(lambda: label_in_cloud("default/sensor-1"), what="sensor-1's label in the cloud")
    await eventually(lambda: label_in_cloud("default/sensor-2"), what="sensor-2's label in the cloud")
    one = await site.cloud_device("default/sensor-1")
    assert one["status"]["node"] == "edge-1" and one["status"]["state"] == "online"
    assert one["status"]["twins"]["temperature"]["reported"] is not None
    # each edge serves exactly its own device
    membership = await site.edge_twin("edge-1", "default/sensor-1")
    assert reported(membership, "label") == "hello"
    with pytest.raises(Exception, match="does not exist"):
        await site.edge_twin("edge-1", "default/sensor-2")

    # a desired value set in the cloud is written to the device and comes back observed
    changed = device("sensor-1", node="edge-1")
    changed["spec"]["properties"][1]["desired"] = {"value": "25"}
    site.write("plant.yaml", model(), changed, device("sensor-2", node="edge-2"))

    async def setpoint_held() -> bool:
        twin = await site.cloud_twin("default/sensor-1", "setpoint")
        return twin.get("reported") == "25" and twin.get("observed_desired") == "25"

    await eventually(setpoint_held, what="setpoint 25 reported and observed in the cloud")
    status = await site.edge_status("edge-1")
    assert re.search(r"cloud\s+wss://127.0.0.1:\d+ connected, synced, 2 object\(s\) held", status), status


async def test_a_cut_link_loses_nothing_and_the_newest_values_arrive(site: Site) -> None:
    site.write("plant.yaml", model(), device("sensor-1", node="edge-1"))
    await site.start_cloud()
    proxy = Proxy(site.cloud_port)
    await proxy.start()
    try:
        edge = await site.start_edge("edge-1", port=proxy.port)
        await edge.wait_line(r"in sync with")
        await eventually(
            lambda: _reported_in_cloud(site, "default/sensor-1", "temperature"), what="a first temperature"
        )
        proxy.cut()
        await edge.wait_line(r"edgehub: .*connection lost|edgehub: .*retrying", timeout=15)
        before_cut = float(await _reported_in_cloud(site, "default/sensor-1", "temperature") or 0)
        await asyncio.sleep(2)  # the counter goes on at the edge; nothing reaches the cloud
        status = await site.edge_status("edge-1")
        assert "disconnected" in status and not re.search(r"outbox\s+0 entr", status), status
        assert float(await _reported_in_cloud(site, "default/sensor-1", "temperature") or 0) == before_cut
        at_edge = float(reported(await site.edge_twin("edge-1", "default/sensor-1"), "temperature") or 0)
        assert at_edge > before_cut
        proxy.restore()

        async def caught_up() -> bool:
            value = await _reported_in_cloud(site, "default/sensor-1", "temperature")
            return value is not None and float(value) >= at_edge

        await eventually(caught_up, what=f"the cloud's temperature at {at_edge} or later after the cut")
        assert (await site.cloud_twin("default/sensor-1", "label"))["reported"] == "hello"
    finally:
        await proxy.stop()


async def _reported_in_cloud(site: Site, key: str, prop: str) -> str | None:
    value = (await site.cloud_twin(key, prop)).get("reported")
    return str(value) if value is not None else None


async def test_an_edge_killed_mid_stream_loses_nothing_it_stored(site: Site) -> None:
    site.write("plant.yaml", model(), device("sensor-1", node="edge-1"))
    await site.start_cloud()
    edge = await site.start_edge("edge-1")
    await eventually(
        lambda: _reported_in_cloud(site, "default/sensor-1", "temperature"),
        what="values flowing to the cloud",
    )
    await asyncio.sleep(1)
    await edge.stop(signal.SIGKILL)
    # Started again without its mapper, the edge's twin holds what it stored before the kill; the
    # cloud must end up with exactly that (changes stored but not yet forwarded at the kill too).
    config = site.root / "edge-1" / "edge.yaml"
    data = yaml.safe_load(config.read_text())
    data["mappers"] = {}
    config.write_text(yaml.safe_dump(data))
    again = Process("edge-1", "edge", "run", "-c", str(config))
    site.edges["edge-1"] = again
    await again.start(r"edge edge-1 running")
    stored = reported(await site.edge_twin("edge-1", "default/sensor-1"), "temperature")
    assert stored is not None

    async def same_in_cloud() -> bool:
        value = await _reported_in_cloud(site, "default/sensor-1", "temperature")
        return value is not None and float(value) == float(stored)

    await eventually(same_in_cloud, what=f"the cloud's temperature equal to the edge's stored {stored}")


async def test_a_cloud_restart_resyncs_without_sending_unchanged_objects(site: Site) -> None:
    site.write("plant.yaml", model(), device("sensor-1", node="edge-1"))
    await site.start_cloud()
    edge = await site.start_edge("edge-1")
    await edge.wait_line(r"in sync with .*\(2 change\(s\) received; 2 object\(s\) held\)")
    mark = len(edge.lines)
    await site.cloud.stop()
    await edge.wait_line(r"edgehub: .*retrying with back-off", start=mark)
    await site.start_cloud()
    line = await edge.wait_line(r"in sync with", start=mark)
    assert "(0 change(s) received; 2 object(s) held)" in line, line
    sent = await site.cloud.wait_line(r"synced \(edge-1\): \d+ object\(s\) sent")  # the restarted cloud
    assert "1 synced (edge-1): 0 object(s) sent, 2 held already" in sent, sent
    await eventually(
        lambda: _reported_in_cloud(site, "default/sensor-1", "label"), what="reports after the restart"
    )


async def test_an_edge_started_while_its_cloud_is_down_serves_its_last_devices(site: Site) -> None:
    site.write("plant.yaml", model(), device("sensor-1", node="edge-1"))
    await site.start_cloud()
    edge = await site.start_edge("edge-1")
    await edge.wait_line(r"in sync with")
    await edge.stop()
    await site.cloud.stop()
    edge = await site.start_edge("edge-1")
    assert any("2 object(s) from the last connection" in line for line in edge.lines), edge.output

    async def served() -> bool:
        twin = await site.edge_twin("edge-1", "default/sensor-1")
        return reported(twin, "label") == "hello"

    await eventually(served, what="the last known device served without the cloud")
    status = await site.edge_status("edge-1")
    assert re.search(r"cloud\s+\S+ disconnected, 2 object\(s\) held", status), status
    process = await spawn("edge", "status", "-c", str(site.root / "edge-1" / "edge.yaml"), "-o", "json")
    out, _ = await process.communicate()
    cloud = json.loads(out.decode()[out.decode().index("{") :])["cloud"]
    assert cloud["state"] == "disconnected" and cloud["objects"] == 2 and cloud["reason"], cloud


async def test_a_full_outbox_drops_the_oldest_and_says_so(site: Site) -> None:
    devices = [device(f"sensor-{i}", node="edge-1") for i in range(24)]
    site.write("plant.yaml", model(), *devices)
    await site.start_cloud()
    proxy = Proxy(site.cloud_port)
    await proxy.start()
    try:
        edge = await site.start_edge("edge-1", port=proxy.port, queue={"maxBytes": 4096})
        await edge.wait_line(r"in sync with")
        proxy.cut()  # 24 temperatures keep changing: more than 4096 bytes wait for the cloud
        await edge.wait_line(r"outbox full .*dropped the \d+ oldest", timeout=30)

        async def dropped_shown() -> str | None:
            status = await site.edge_status("edge-1")
            found = re.search(r"dropped \[?\S*?(\d+)", status)
            return status if found and int(found.group(1)) > 0 else None

        status = await dropped_shown() or await eventually(dropped_shown, what="dropped entries shown")
        assert "of 4096 bytes" in status, status
        mark = len(edge.lines)
        proxy.restore()
        await edge.wait_line(r"in sync with", start=mark)
        # what was dropped is not lost for good: a later change of the property goes up again
        await eventually(
            lambda: _reported_in_cloud(site, "default/sensor-0", "temperature"),
            what="sensor-0's temperature in the cloud after the link came back",
        )
    finally:
        await proxy.stop()


async def test_a_token_for_another_node_is_refused_with_the_reason(site: Site) -> None:
    site.write("plant.yaml", model(), device("sensor-1", node="edge-1"))
    await site.start_cloud()
    folder = site.root / "edge-1"
    folder.mkdir()
    (folder / "node.token").write_text(await site.token("edge-2"))
    edge = await site.start_edge("edge-1")
    line = await edge.wait_line(r"ERROR .*edgehub: .*refused the connection")
    assert "HTTP 403" in line and "edge-2" in line, line
    status = await site.edge_status("edge-1")
    assert "refused" in status and "HTTP 403" in status, status
    (folder / "node.token").write_text(await site.token("edge-1"))  # read again on the next attempt
    await edge.wait_line(r"in sync with")
