"""An edge's own facts on its Node (``hub/node``, docs/wire.md), on the real API server.

The cloud (`kubeedge cloud run`, Kubernetes source) runs as deploy/'s ServiceAccount, so the
facts, labels included, are shown to need no right beyond ``patch nodes/status``; the edge is a
real `kubeedge edge run` process on this machine, whose facts the Node must show; a websocket
client speaking the channel stands in for an edge that sends bad facts.
"""

from __future__ import annotations

import json
import os
import platform
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
import trustme
from kube_cluster import Cluster, kube_cluster  # noqa: F401  (the session fixture)
from test_cloud_edge import eventually
from test_kubernetes import DEPLOY, KubeSite

from hub_client import HubClient
from kubeedge.api.channel import Message, Route
from kubeedge_process import spawn

CLOUD_IDENTITY = "system:serviceaccount:kubeedge:kubeedge-cloud"
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


@pytest_asyncio.fixture
async def site(tmp_path: Path, kube_cluster: Cluster) -> AsyncIterator[KubeSite]:  # noqa: F811
    """The cloud with deploy/'s rights only (a client certificate naming its ServiceAccount)."""
    await kube_cluster.kubectl("apply", "-f", str(DEPLOY / "rbac.yaml"))
    made = KubeSite(
        tmp_path,
        trustme.CA(),
        kube_cluster,
        kube_cluster.new_namespace("nodes"),
        kubeconfig=str(kube_cluster.user(CLOUD_IDENTITY)),
        namespaces=[],
        replica={"leaseNamespace": "kubeedge"},
    )
    try:
        yield made
    finally:
        await made.close()


async def _node(cluster: Cluster, name: str) -> dict[str, Any] | None:
    done = await cluster.kubectl("get", "node", name, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _machine() -> dict[str, str]:
    """This machine's facts, read as a kubelet's sources read them."""
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kb = next(line.split()[1] for line in meminfo if line.startswith("MemTotal:"))
    return {
        "architecture": GOARCH[platform.machine()],
        "kernelVersion": os.uname().release,
        "osImage": platform.freedesktop_os_release()["PRETTY_NAME"],
        "machineID": Path("/etc/machine-id").read_text().strip(),
        "bootID": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        "memory": f"{total_kb}Ki",
    }


async def test_a_connected_edge_s_node_shows_its_machine_and_offers_no_pods(site: KubeSite) -> None:
    cluster = site.cluster
    machine = _machine()
    await site.start_cloud()
    await site.start_edge("edge-facts")

    async def told() -> dict[str, Any] | None:
        node = await _node(cluster, "edge-facts")
        info = ((node or {}).get("status") or {}).get("nodeInfo") or {}
        return node if info.get("machineID") else None

    node = await eventually(told, what="edge-facts' Node with the edge's facts")
    info = node["status"]["nodeInfo"]
    assert {
        key: info[key] for key in ("architecture", "kernelVersion", "osImage", "machineID", "bootID")
    } == {key: machine[key] for key in ("architecture", "kernelVersion", "osImage", "machineID", "bootID")}
    assert info["operatingSystem"] == "linux"
    assert info["kubeletVersion"].startswith("kubeedge-py/")
    for offered in (node["status"]["capacity"], node["status"]["allocatable"]):
        assert offered == {"cpu": str(os.cpu_count()), "memory": machine["memory"], "pods": "0"}
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/arch"] == machine["architecture"]
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["node-role.kubernetes.io/edge"] == ""
    assert node["metadata"]["annotations"]["kubeedge.io/mappers"] == "virtual"
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"

    # what a user sees
    wide = (await cluster.kubectl("get", "node", "edge-facts", "-o", "wide")).stdout.splitlines()
    header, row = wide[0], wide[1]
    assert row[header.index("OS-IMAGE") :].startswith(machine["osImage"]), wide
    assert row[header.index("KERNEL-VERSION") :].startswith(machine["kernelVersion"]), wide
    arch = (await cluster.kubectl("get", "node", "edge-facts", "-L", "kubernetes.io/arch")).stdout
    assert arch.splitlines()[1].split()[-1] == machine["architecture"], arch
    # labels went through nodes/status: the cloud still may not patch Nodes themselves
    can = await cluster.kubectl("auth", "can-i", "patch", "nodes", "--as", CLOUD_IDENTITY, check=False)
    assert can.stdout.strip() == "no"
    assert "forbidden" not in site.cloud.output.lower(), site.cloud.output


async def test_bad_facts_are_refused_naming_the_field_and_good_ones_replace_the_last(site: KubeSite) -> None:
    """An edge sending bad facts gets a hub error naming the field; its connection and the
    other edges' Nodes go on; facts that change are written again."""
    cluster = site.cluster
    await site.start_cloud()
    await site.start_edge("edge-good")
    await eventually(
        lambda: _node_field(cluster, "edge-good", "machineID"), what="edge-good's facts on its Node"
    )

    process = await spawn("token", "create", "edge-raw", "-c", str(site.cloud_yaml))
    out, _ = await process.communicate()
    token = next(line for line in out.decode().splitlines() if line.count(".") == 2)
    tls = ssl.create_default_context(cafile=str(site.ca_file))
    client = await HubClient.open(f"wss://127.0.0.1:{site.cloud_port}", "edge-raw", token, tls)
    try:
        await client.sync()
        while (synced := await client.next_of("hub")).route.operation != "synced":
            pass
        assert synced.content["node_info"] is True

        facts = {"architecture": "arm64", "operating_system": "linux", "os_image": "Test OS 1"}
        await client.send(_node_message(facts))
        await eventually(
            lambda: _node_field(cluster, "edge-raw", "osImage", "Test OS 1"), what="edge-raw's first facts"
        )

        bad = _node_message({**facts, "capacity": {"memory": "a lot"}})
        await client.send(bad)
        answer = await client.answer_to(bad)
        assert answer.route.operation == "error" and answer.content["code"] == 400, answer
        assert answer.content["reason"].startswith("hub/node: content.capacity.memory:"), answer.content

        await client.send(_node_message({**facts, "os_image": "Test OS 2", "capacity": {"cpu": "8"}}))
        node = await eventually(
            lambda: _node_field(cluster, "edge-raw", "osImage", "Test OS 2"), what="edge-raw's new facts"
        )
        assert node["status"]["capacity"]["cpu"] == "8"
        assert node["metadata"]["labels"]["kubernetes.io/arch"] == "arm64"
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
    finally:
        await client.close()
    good = await _node(cluster, "edge-good")
    assert good is not None and good["status"]["nodeInfo"]["machineID"] == _machine()["machineID"]
    assert next(c for c in good["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"


def _node_message(content: dict[str, Any]) -> Message:
    return Message(route=Route(source="edgehub", group="hub", operation="node"), content=content)


async def _node_field(
    cluster: Cluster, name: str, key: str, value: str | None = None
) -> dict[str, Any] | None:
    """The Node once its ``status.nodeInfo[key]`` is set (to ``value``, if given)."""
    node = await _node(cluster, name)
    got = (((node or {}).get("status") or {}).get("nodeInfo") or {}).get(key)
    return node if got and (value is None or got == value) else None
