"""The edge hub (cloud mode) against a small hub written here that speaks docs/wire.md's channel.

Written while the real cloud (kubeedge-cloud) was being built; tests/test_cloud_edge.py runs the
edge against the real one in separate processes. These keep what only a scripted hub can show
cheaply: what the edge does with a refusal, an untrusted certificate, a malformed or misdirected
message, a hub that does not ack, and exactly what it sends on reconnect. The edge is the real
one, in process (bus, twin in SQLite, registry, the virtual mapper); TLS is real (trustme).
"""

from __future__ import annotations

import asyncio
import http
import itertools
import logging
import os
import platform
import re
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import trustme
import yaml
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from kubeedge.api.channel import (
    MAX_MESSAGE_BYTES,
    Message,
    NodeInfoContent,
    ReportContent,
    Route,
    parse_message,
)
from kubeedge.bus import free_port
from kubeedge.config import EdgeConfig, load_config
from kubeedge.edge.core import EdgeCore
from kubeedge.errors import ConfigError
from kubeedge.testing import wait_for
from kubeedge.testing.edge import EdgeHandle
from sample_devices import device, model

NODE = "edge-1"
TOKEN = "good-token"


def _resource(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind'].lower()}/{meta.get('namespace', 'default')}/{meta['name']}"


class ScriptedHub:
    """A cloud hub reduced to the protocol: objects with versions, sync, acks, reports recorded."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        self.tls = tls
        self.port = free_port()
        self.objects: dict[str, tuple[str, dict[str, Any]]] = {}
        self.reports: list[dict[str, Any]] = []
        self.syncs: list[dict[str, Any]] = []
        self.sent: list[Message] = []
        self.acks: set[str] = set()
        self.errors: list[dict[str, Any]] = []
        self.ack_reports = True
        self.priority = False
        """Say in hub/synced that this hub takes priority reports (a cloud from before them does not)."""
        self.ack_priority = True
        self.node_info = False
        """Say in hub/synced that this hub takes hub/node (a cloud from before it does not)."""
        self.nodes: list[Message] = []
        """hub/node messages received."""
        self.refuse: tuple[int, str] | None = None
        self.connection: ServerConnection | None = None
        self.server: Server | None = None

    @property
    def url(self) -> str:
        return f"wss://localhost:{self.port}"

    def put(self, obj: dict[str, Any], version: str) -> None:
        self.objects[_resource(obj)] = (version, obj)

    async def start(self) -> None:
        self.server = await serve(
            self._serve, "127.0.0.1", self.port, ssl=self.tls, process_request=self._check
        )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.refuse is not None:
            status, reason = self.refuse
            return connection.respond(http.HTTPStatus(status), reason + "\n")
        if request.path != f"/v1/nodes/{NODE}/events":
            return connection.respond(http.HTTPStatus.NOT_FOUND, "no such path\n")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "token is not valid\n")
        return None

    async def send(self, message: Message) -> None:
        assert self.connection is not None
        self.sent.append(message)
        await self.connection.send(message.to_json().decode())

    async def send_object(self, resource: str, operation: str = "update") -> Message:
        version, obj = self.objects[resource]
        message = Message(
            route=Route(source="cloudhub", group="resource", operation=operation, resource=resource),  # type: ignore[arg-type]
            content=obj,
        )
        message.header.resourceversion = version
        await self.send(message)
        return message

    async def _serve(self, connection: ServerConnection) -> None:
        self.connection = connection
        try:
            async for frame in connection:
                message = parse_message(frame)
                route = message.route
                if route.operation == "sync":
                    self.syncs.append(message.content)
                    held = message.content["versions"]
                    sent = 0
                    for resource, (version, _obj) in sorted(
                        self.objects.items(), key=lambda item: not item[0].startswith("devicemodel")
                    ):
                        if held.get(resource) != version:
                            await self.send_object(resource, "insert" if resource not in held else "update")
                            sent += 1
                    for resource in held:
                        if resource not in self.objects:
                            await self.send(
                                Message(
                                    route=Route(
                                        source="cloudhub",
                                        group="resource",
                                        operation="delete",
                                        resource=resource,
                                    )
                                )
                            )
                            sent += 1
                    await self.send(
                        Message(
                            route=Route(source="cloudhub", group="hub", operation="synced"),
                            content={
                                "sent": sent,
                                **({"priority": True} if self.priority else {}),
                                **({"node_info": True} if self.node_info else {}),
                            },
                        )
                    )
                elif route.operation == "report":
                    ReportContent.model_validate(message.content)  # the shape the cloud reads
                    self.reports.append(message.content)
                    if self.ack_priority if message.content.get("priority") else self.ack_reports:
                        ack = Message(route=Route(source="cloudhub", group="hub", operation="ack"))
                        ack.header.parent_msg_id = message.id
                        await self.send(ack)
                elif route.operation == "node":
                    self.nodes.append(message)
                elif route.operation == "ack":
                    self.acks.add(message.header.parent_msg_id)
                elif route.operation == "error":
                    self.errors.append({"parent": message.header.parent_msg_id, **message.content})
        except Exception:  # the connection closed under the test: the edge reconnects
            pass
        finally:
            if self.connection is connection:
                self.connection = None

    def reported(self, key: str, prop: str) -> list[str | None]:
        """Every reported value of one property, in the order the hub received them."""
        return [
            r["devices"][key]["twins"][prop]["reported"]
            for r in self.reports
            if prop in r["devices"].get(key, {}).get("twins", {})
        ]

    def twin(self, key: str, prop: str) -> dict[str, Any] | None:
        found = None
        for report in self.reports:
            found = report["devices"].get(key, {}).get("twins", {}).get(prop, found)
        return found

    def state(self, key: str) -> str | None:
        found = None
        for report in self.reports:
            found = report["devices"].get(key, {}).get("state", found)
        return found


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest_asyncio.fixture
async def hub(ca: trustme.CA) -> AsyncIterator[ScriptedHub]:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(tls)
    scripted = ScriptedHub(tls)
    await scripted.start()
    try:
        yield scripted
    finally:
        await scripted.stop()


@pytest_asyncio.fixture
async def cloud_edge(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[Callable[..., Any]]:
    """``await cloud_edge(hub_url, **cloud_keys)``: an in-process edge in cloud mode."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    handles: list[EdgeHandle] = []

    async def make(url: str, workdir: Path | None = None, **cloud: Any) -> EdgeHandle:
        workdir = workdir or tmp_path / "edge"
        config = EdgeConfig.model_validate(
            {
                "node": NODE,
                "bus": {"listen": f"127.0.0.1:{free_port()}"},
                "dataDir": str(workdir / "data"),
                "mappers": {"virtual": {}},
                "cloud": {
                    "url": url,
                    "token": TOKEN,
                    "caFile": str(ca_file),
                    "batchDelayMs": 20,
                    "reconnectMinMs": 50,
                    "reconnectMaxMs": 300,
                    **cloud,
                },
            }
        )
        core = EdgeCore(config)
        await core.start()
        handle = EdgeHandle(core, workdir)
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        await asyncio.wait_for(handle.stop(), 30)


def edgehub(handle: EdgeHandle) -> Any:
    return handle.core.module("edgehub")


def seed(hub: ScriptedHub, **device_keys: Any) -> None:
    hub.put(model(), "m1")
    hub.put(device("sensor-1", node=NODE, **device_keys), "d1")


async def test_devices_from_the_cloud_are_served_and_their_values_reported(hub, cloud_edge) -> None:
    seed(hub)
    edge = await cloud_edge(hub.url)
    value = await edge.wait_reported("default/sensor-1", "label", "hello")
    assert value == "hello"
    await wait_for(lambda: hub.twin("default/sensor-1", "label"), what="label reported to the hub")
    await wait_for(lambda: hub.state("default/sensor-1") == "online", what="state online at the hub")
    assert hub.syncs[0]["versions"] == {}
    # every object was acked once stored
    assert {m.id for m in hub.sent if m.route.group == "resource"} <= hub.acks
    temperatures = hub.reported("default/sensor-1", "temperature")
    await wait_for(lambda: len(hub.reported("default/sensor-1", "temperature")) > len(temperatures) + 2)
    seen = [float(v) for v in hub.reported("default/sensor-1", "temperature") if v is not None]
    assert seen == sorted(seen), "a property's values reach the cloud in order"
    assert edgehub(edge).link_status().state == "connected"


async def test_a_desired_value_from_the_cloud_is_written_and_observed(hub, cloud_edge) -> None:
    seed(hub)
    edge = await cloud_edge(hub.url)
    await edge.wait_reported("default/sensor-1", "setpoint", "21")
    changed = device("sensor-1", node=NODE)
    changed["spec"]["properties"][1]["desired"] = {"value": "25"}
    hub.put(changed, "d2")
    await hub.send_object("device/default/sensor-1")
    await edge.wait_reported("default/sensor-1", "setpoint", "25")

    def observed() -> bool:
        twin = hub.twin("default/sensor-1", "setpoint")
        return twin is not None and twin["reported"] == "25" and twin["observed_desired"] == "25"

    await wait_for(observed, what="reported and observed desired 25 at the hub")


async def test_an_edge_restarted_without_its_cloud_serves_its_last_devices_and_resyncs_only_changes(
    hub, cloud_edge, tmp_path
) -> None:
    seed(hub)
    edge = await cloud_edge(hub.url, workdir=tmp_path / "edge")
    await edge.wait_reported("default/sensor-1", "label", "hello")
    await edge.stop()
    await hub.stop()
    again = await cloud_edge(hub.url, workdir=tmp_path / "edge")
    assert again.core.context.registry.get("default/sensor-1") is not None
    await again.wait_reported("default/sensor-1", "temperature", lambda v: v is not None)
    assert edgehub(again).link_status().state in ("disconnected", "connecting")
    sent_before = len(hub.sent)
    await hub.start()
    await wait_for(lambda: len(hub.syncs) == 2, what="the edge's second sync")
    assert hub.syncs[1]["versions"] == {
        "devicemodel/default/sensor-model": "m1",
        "device/default/sensor-1": "d1",
    }
    await wait_for(lambda: edgehub(again).synced, what="synced")
    sent = [m for m in hub.sent[sent_before:] if m.route.group == "resource"]
    assert sent == [], "unchanged objects are not sent again"


async def test_reports_wait_in_the_outbox_while_the_cloud_does_not_ack_and_the_newest_arrives(
    hub, cloud_edge
) -> None:
    seed(hub)
    edge = await cloud_edge(hub.url, ackTimeoutMs=60_000)
    await wait_for(lambda: hub.reports, what="a first report")
    hub.ack_reports = False
    await wait_for(lambda: edgehub(edge).outbox.stats.entries > 0, what="entries kept in the outbox")
    before = len(hub.reports)
    await asyncio.sleep(0.5)  # values keep changing; nothing new is sent while a report is unacked
    assert len(hub.reports) == before + 1 or len(hub.reports) == before
    hub.ack_reports = True
    assert hub.connection is not None
    await hub.connection.close()  # the link drops: what was not acked goes again after reconnect
    await wait_for(lambda: edgehub(edge).outbox.stats.entries == 0 and edgehub(edge).synced, timeout=10)
    newest = edge.reported("default/sensor-1", "temperature")
    await wait_for(
        lambda: (
            hub.reported("default/sensor-1", "temperature")[-1:]
            == [edge.reported("default/sensor-1", "temperature")]
        ),
        what=f"the newest temperature ({newest} or later) at the hub",
    )


async def test_a_refused_token_is_said_with_the_clouds_reason_and_retried(hub, cloud_edge, caplog) -> None:
    caplog.set_level(logging.ERROR, "kubeedge.edge.edgehub")
    seed(hub)
    hub.refuse = (401, "token expired at 2026-11-29T10:00:00Z")
    edge = await cloud_edge(hub.url)
    await wait_for(lambda: edgehub(edge).link_status().state == "refused", what="refused")
    status = edgehub(edge).link_status()
    assert "HTTP 401" in status.reason and "token expired at 2026-11-29T10:00:00Z" in status.reason
    assert any("token expired" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    hub.refuse = None  # fixed on the cloud side: the next attempt gets in
    await wait_for(lambda: edgehub(edge).synced, what="connected after the refusal ended")
    await edge.wait_reported("default/sensor-1", "label", "hello")


async def test_an_untrusted_certificate_is_refused_with_the_tls_reason(hub, cloud_edge, tmp_path) -> None:
    seed(hub)
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    edge = await cloud_edge(hub.url, caFile=str(other))
    await wait_for(lambda: edgehub(edge).link_status().state == "refused", what="refused")
    reason = edgehub(edge).link_status().reason
    assert "TLS" in reason and "not trusted" in reason and str(other) in reason
    assert hub.syncs == []


async def test_bad_and_misdirected_messages_are_refused_and_nothing_else_is_disturbed(
    hub, cloud_edge
) -> None:
    seed(hub)
    edge = await cloud_edge(hub.url)
    await edge.wait_reported("default/sensor-1", "label", "hello")
    assert hub.connection is not None
    await hub.connection.send('{"v":1,"route":{"source":"x","group":"nope"}}')
    await wait_for(lambda: hub.errors, what="an error for the malformed message")
    assert hub.errors[0]["code"] == 400
    hub.put(device("elsewhere", node="edge-2"), "e1")
    refused = await hub.send_object("device/default/elsewhere", "insert")
    await wait_for(lambda: any(e["parent"] == refused.id for e in hub.errors), what="a 403")
    error = next(e for e in hub.errors if e["parent"] == refused.id)
    assert error["code"] == 403 and "edge-2" in error["reason"]
    broken = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "b"},
        "spec": {"properties": "x"},
    }
    hub.put(broken, "b1")
    refused = await hub.send_object("device/default/b", "insert")
    await wait_for(lambda: any(e["parent"] == refused.id for e in hub.errors), what="a 400")
    error = next(e for e in hub.errors if e["parent"] == refused.id)
    assert (
        error["code"] == 400
        and "device/default/b" in error["reason"]
        and "spec.properties" in error["reason"]
    )
    assert edge.core.context.registry.get("default/elsewhere") is None
    problems = "\n".join(edge.core.context.registry.source_problems)  # what `device list` shows
    assert "device/default/b: spec.properties" in problems and "edge-2" in problems, problems
    hub.put(device("b", node=NODE), "b2")  # fixed in the cloud: stored, and the problem goes
    fixed = await hub.send_object("device/default/b")
    await wait_for(lambda: fixed.id in hub.acks, what="the fixed object acked")
    assert "device/default/b" not in "\n".join(edge.core.context.registry.source_problems)
    assert edgehub(edge).link_status().state == "connected"
    before = len(hub.reported("default/sensor-1", "temperature"))
    await wait_for(
        lambda: len(hub.reported("default/sensor-1", "temperature")) > before, what="reports go on"
    )


def test_manifests_and_cloud_together_are_refused_naming_both(tmp_path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump({"manifests": "m", "cloud": {"url": "wss://cloud:10000", "token": "t"}}))
    with pytest.raises(ConfigError, match="manifests and cloud are both set"):
        load_config(path)


def test_relative_token_and_ca_files_are_relative_to_the_config_file(tmp_path) -> None:
    path = tmp_path / "conf" / "edge.yaml"
    path.parent.mkdir()
    path.write_text(
        yaml.safe_dump({"cloud": {"url": "wss://cloud:10000", "tokenFile": "token", "caFile": "ca.pem"}})
    )
    cloud = load_config(path).cloud
    assert cloud is not None
    assert cloud.token_file == path.parent / "token" and cloud.ca_file == path.parent / "ca.pem"


def test_a_plain_websocket_is_refused_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="ws:// \\(no TLS\\) only to a loopback address"):
        EdgeConfig.model_validate({"cloud": {"url": "ws://10.1.2.3:10000", "token": "t"}})


def test_the_readmes_cloud_keys_are_a_valid_configuration(tmp_path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"`edge.yaml` \(every key is optional\):\n\n```yaml\n(.*?)```", readme, re.S)
    assert block is not None
    lines = [line[1:] if line.startswith("#") else line for line in block.group(1).splitlines()]
    text = "\n".join(line for line in lines if not line.startswith("manifests:"))
    assert "cloud:" in text
    path = tmp_path / "edge.yaml"
    path.write_text(text)
    cloud = load_config(path).cloud
    assert cloud is not None and cloud.url == "wss://cloud:10000"
    assert cloud.queue.max_bytes == 64 * 1024 * 1024 and cloud.batch_delay_ms == 100
    assert cloud.token_file == tmp_path / "node.token"


async def test_report_to_cloud_and_report_cycle_decide_what_goes_up(hub, cloud_edge) -> None:
    hub.put(model(), "m1")
    quiet = device("sensor-1", node=NODE)
    props = quiet["spec"]["properties"]
    props[0]["reportCycle"] = 1000  # temperature: at most once a second, whatever it does
    props[2]["reportToCloud"] = False  # label: never
    quiet["spec"]["stateReport"] = {"reportToCloud": False}
    hub.put(quiet, "d1")
    edge = await cloud_edge(hub.url)
    await edge.wait_reported("default/sensor-1", "label", "hello")
    await wait_for(lambda: len(hub.reported("default/sensor-1", "temperature")) >= 4, timeout=15)
    assert hub.twin("default/sensor-1", "setpoint") is not None  # unset: forwarded
    assert hub.twin("default/sensor-1", "label") is None
    assert hub.state("default/sensor-1") is None
    stamps = [
        r["devices"]["default/sensor-1"]["twins"]["temperature"]["reported_at"]
        for r in hub.reports
        if "temperature" in r["devices"].get("default/sensor-1", {}).get("twins", {})
    ]
    # read every 100 ms at the edge; the cloud hears of it once per 1,000 ms cycle (the value
    # sent is the newest read when the cycle ends: a gap is the cycle less up to a read cycle and
    # the mapper's latency, far above the 100 ms of an unthrottled property)
    gaps = [b - a for a, b in itertools.pairwise(stamps[1:])]
    assert gaps and min(gaps) >= 500, stamps


async def test_an_oversized_message_from_the_cloud_closes_the_link_and_the_edge_resyncs(
    hub, cloud_edge
) -> None:
    seed(hub)
    edge = await cloud_edge(hub.url)
    await wait_for(lambda: edgehub(edge).synced, what="synced")
    assert hub.connection is not None
    await hub.connection.send("x" * (MAX_MESSAGE_BYTES + 1))  # over the channel's 4 MiB
    await wait_for(lambda: len(hub.syncs) == 2, what="a new connection and sync after the oversized frame")
    assert hub.syncs[1]["versions"] == {
        "devicemodel/default/sensor-model": "m1",
        "device/default/sensor-1": "d1",
    }
    await wait_for(lambda: edgehub(edge).synced, what="synced again")
    assert edge.core.context.registry.get("default/sensor-1") is not None


async def test_an_answer_to_a_desired_value_passes_a_telemetry_report_held_by_the_cloud(
    hub, cloud_edge
) -> None:
    """A cloud that takes priority reports: while the edge's telemetry report waits for its ack
    (the cloud's writes are slow), the observed desired value and then the reported value that
    reaches it still go up, in a priority report of their own; nothing is lost or goes backwards."""
    seed(hub)
    hub.priority = True
    edge = await cloud_edge(hub.url, ackTimeoutMs=60_000)
    await edge.wait_reported("default/sensor-1", "setpoint", "21")
    await wait_for(lambda: hub.state("default/sensor-1") == "online", what="state online at the hub")
    hub.ack_reports = False  # telemetry is held from now on
    held = len(hub.reports)
    await wait_for(
        lambda: any(not r.get("priority") for r in hub.reports[held:]), what="a telemetry report held"
    )
    changed = device("sensor-1", node=NODE)
    changed["spec"]["properties"][1]["desired"] = {"value": "25"}
    hub.put(changed, "d2")
    await hub.send_object("device/default/sensor-1")

    def answered() -> bool:
        twin = hub.twin("default/sensor-1", "setpoint")
        return twin is not None and twin["observed_desired"] == "25" and twin["reported"] == "25"

    await wait_for(answered, what="observed desired 25 and reported 25 at the hub, telemetry held")
    unacked = [r for r in hub.reports[held:] if not r.get("priority")]
    assert len(unacked) == 1, "one telemetry report in flight, its ack still withheld"
    for report in (r for r in hub.reports if r.get("priority")):
        for change in report["devices"].values():
            assert set(change) <= {"twins", "state", "last_online_time"}
            assert "twins" in change or "state" in change
            assert "temperature" not in change.get("twins", {}), "telemetry in the priority lane"

    hub.ack_reports = True
    assert hub.connection is not None
    await hub.connection.close()  # the held report goes again after the reconnect
    await wait_for(lambda: edgehub(edge).outbox.stats.entries == 0 and edgehub(edge).synced, timeout=15)
    seen = [float(v) for v in hub.reported("default/sensor-1", "temperature") if v is not None]
    assert seen == sorted(seen), "a property's values reach the cloud in order across both lanes"
    newest = edge.reported("default/sensor-1", "temperature")
    await wait_for(
        lambda: float(hub.reported("default/sensor-1", "temperature")[-1] or 0) >= float(newest or 0),
        what=f"the newest temperature ({newest} or later) at the hub",
    )
    final = hub.twin("default/sensor-1", "setpoint")
    assert final is not None and (final["observed_desired"], final["reported"]) == ("25", "25"), (
        "the answer is not overwritten by an older value"
    )


async def test_a_cloud_that_does_not_say_priority_gets_one_report_at_a_time_as_before(
    hub, cloud_edge
) -> None:
    seed(hub)  # hub.priority stays False: a cloud from before priority reports
    edge = await cloud_edge(hub.url)
    await edge.wait_reported("default/sensor-1", "setpoint", "21")
    changed = device("sensor-1", node=NODE)
    changed["spec"]["properties"][1]["desired"] = {"value": "25"}
    hub.put(changed, "d2")
    await hub.send_object("device/default/sensor-1")
    await wait_for(
        lambda: (hub.twin("default/sensor-1", "setpoint") or {}).get("reported") == "25",
        what="setpoint 25 reported at the hub",
    )
    # such a cloud refuses a field it does not know (extra="forbid" there): none is sent
    assert all(set(r) == {"devices"} for r in hub.reports)
    assert edgehub(edge).stats.priority_reports_sent == 0


async def test_the_edge_tells_its_facts_only_to_a_cloud_that_takes_them(hub, cloud_edge, tmp_path) -> None:
    """hub/node goes after each hub/synced of a cloud that said node_info, never to one that did
    not (a cloud from before it refuses the operation: its route shape does not know it)."""
    seed(hub)  # hub.node_info stays False: a cloud from before hub/node
    edge = await cloud_edge(hub.url)
    await edge.wait_reported("default/sensor-1", "label", "hello")
    await wait_for(lambda: hub.twin("default/sensor-1", "label"), what="label reported to the hub")
    assert hub.nodes == [] and edgehub(edge).stats.node_info_sent == 0
    assert all(m.route.operation != "node" for m in hub.sent)
    await edge.stop()

    hub.node_info = True  # the same edge (its stored objects) against a cloud that takes them
    edge = await cloud_edge(hub.url)
    await wait_for(lambda: len(hub.nodes) == 1, what="hub/node after hub/synced")
    info = NodeInfoContent.model_validate(hub.nodes[0].content)  # the shape the cloud reads
    assert info.architecture == {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}[platform.machine()]
    assert info.operating_system == "linux"
    assert info.kernel_version == platform.release()
    machine_id, boot_id = _machine_ids()
    assert (info.machine_id, info.boot_id) == (machine_id, boot_id)
    assert (
        info.capacity is not None and info.capacity.pods == "0" and info.capacity.cpu == str(os.cpu_count())
    )
    assert info.mappers == ["virtual"]
    assert len(hub.syncs) == 2
    # a reconnection is a new sync: the facts go again after its hub/synced
    assert hub.connection is not None
    await hub.connection.close()
    await wait_for(lambda: len(hub.nodes) == 2, what="hub/node again after the resync")
    assert len(hub.syncs) == 3


def _machine_ids() -> tuple[str, str]:
    """This machine's ids as systemd and the kernel say them."""
    machine = Path("/etc/machine-id").read_text().strip()
    return machine, Path("/proc/sys/kernel/random/boot_id").read_text().strip()
