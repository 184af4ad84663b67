"""The cloud on a real Kubernetes API server (kube-apiserver 1.20.2 and etcd from
``hack/test-cluster.sh``): Devices and DeviceModels managed with kubectl.

Two layers: the Kubernetes source in this process against the real server (list and watch,
resume, 410 Gone, status patches and what they must not cause), then cloud and edge as separate
processes (`kubeedge cloud run` with ``source: {kind: kubernetes}``, `kubeedge edge run` with the
virtual mapper) driven by the real kubectl, as the README's kubectl section does.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import trustme
import yaml
from kube_cluster import Cluster, kube_cluster  # noqa: F401  (the session fixture)
from test_cloud_edge import Process, eventually

from kubeedge.bus import BusClient, free_port
from kubeedge.client import EdgeClient
from kubeedge_cloud.config import CloudConfig
from kubeedge_cloud.leader import ReplicaSettings
from kubeedge_cloud.module import CloudContext
from kubeedge_cloud.nodes import NodeSettings
from kubeedge_cloud.sources.kubernetes import KubernetesSettings, KubernetesSource
from kubeedge_cloud.sources.source import Gone, WatchEvent
from kubeedge_process import spawn
from sample_devices import device, model

REPO = Path(__file__).resolve().parents[1]


def manifest(*documents: dict[str, Any]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


@pytest_asyncio.fixture
async def source(kube_cluster: Cluster, tmp_path: Path) -> AsyncIterator[tuple[KubernetesSource, str]]:  # noqa: F811
    """The Kubernetes source in this process, on a fresh namespace of the real server."""
    namespace = kube_cluster.new_namespace("src")
    config = CloudConfig(dataDir=tmp_path, baseDir=tmp_path)
    settings = KubernetesSettings(
        kubeconfig=str(kube_cluster.kubeconfig), namespaces=[namespace], statusIntervalMs=0
    )
    made = KubernetesSource(CloudContext(config=config), settings)
    await made.start()
    try:
        yield made, namespace
    finally:
        await made.stop()


class Watching:
    """The source's watch read by a task of its own, so a test can wait for an event with a
    timeout without cancelling the watch."""

    def __init__(self, src: KubernetesSource, revision: str) -> None:
        self.queue: asyncio.Queue[WatchEvent | BaseException] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._pump(src, revision))

    async def _pump(self, src: KubernetesSource, revision: str) -> None:
        try:
            async for event in src.watch(revision):
                self.queue.put_nowait(event)
        except Exception as exc:
            self.queue.put_nowait(exc)

    async def next(self, timeout: float = 20) -> WatchEvent:
        item = await asyncio.wait_for(self.queue.get(), timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_the_source_lists_then_watches_changes_and_deletions(
    source: tuple[KubernetesSource, str],
    kube_cluster: Cluster,  # noqa: F811
) -> None:
    src, ns = source
    await kube_cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=manifest(model(namespace=ns), device(namespace=ns))
    )
    listing = await src.list()
    assert sorted(o.resource for o in listing.objects) == [
        f"device/{ns}/sensor-1",
        f"devicemodel/{ns}/sensor-model",
    ]
    events = Watching(src, listing.revision)
    try:
        changed = device(namespace=ns)
        changed["spec"]["properties"][1]["desired"] = {"value": "25"}
        await kube_cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest(changed))
        put = await events.next()
        assert put.type == "put" and put.object.resource == f"device/{ns}/sensor-1"
        assert put.object.content()["spec"]["properties"][1]["desired"] == {"value": "25"}
        # what the edge receives carries no server bookkeeping
        assert set(put.object.content()["metadata"]) <= {"name", "namespace", "labels", "annotations", "uid"}

        await kube_cluster.kubectl("delete", "-n", ns, "device", "sensor-1")
        gone = await events.next()
        assert (gone.type, gone.object.resource) == ("delete", f"device/{ns}/sensor-1")
    finally:
        await events.close()


async def test_status_writes_land_in_the_status_subresource_and_never_reach_the_watch(
    source: tuple[KubernetesSource, str],
    kube_cluster: Cluster,  # noqa: F811
) -> None:
    src, ns = source
    await kube_cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=manifest(model(namespace=ns), device(namespace=ns))
    )
    listing = await src.list()
    events = Watching(src, listing.revision)
    try:
        key = f"{ns}/sensor-1"
        for value in ("21.5", "22.0", "22.5"):
            await src.write_status(
                {
                    key: (
                        "edge-1",
                        {
                            "twins": {
                                "temperature": {
                                    "reported": value,
                                    "reported_at": 1754450000000,
                                    "type": "float",
                                }
                            },
                            "state": "online",
                            "last_online_time": "2026-11-29T20:00:00Z",
                        },
                    )
                }
            )
        await src.write_status(
            {
                key: (
                    "edge-1",
                    {"twins": {"setpoint": {"observed_desired": "25", "observed_desired_at": 1754450000001}}},
                )
            }
        )
        got = json.loads(
            (await kube_cluster.kubectl("get", "-n", ns, "device", "sensor-1", "-o", "json")).stdout
        )
        status = got["status"]
        assert status["state"] == "online" and status["lastOnlineTime"] == "2026-11-29T20:00:00Z"
        twins = {t["propertyName"]: t for t in status["twins"]}
        assert twins["temperature"]["reported"] == {
            "value": "22.5",
            "metadata": {"type": "float", "timestamp": "1754450000000"},
        }
        assert twins["setpoint"]["observedDesired"]["value"] == "25"
        # the status writes changed the resourceVersion, not what the edge receives: no event
        with pytest.raises(TimeoutError):
            await events.next(timeout=2)
        # a user's spec change still comes through, after them
        await kube_cluster.kubectl(
            "patch",
            "-n",
            ns,
            "device",
            "sensor-1",
            "--type",
            "merge",
            "-p",
            '{"metadata":{"labels":{"room":"b"}}}',
        )
        event = await events.next()
        assert event.object.obj.metadata.labels == {"room": "b"}
    finally:
        await events.close()


async def test_a_flapping_device_is_coalesced_into_few_patches_and_the_newest_value_wins(
    source: tuple[KubernetesSource, str],
    kube_cluster: Cluster,  # noqa: F811
) -> None:
    src, ns = source
    src.config.status_interval_ms = 1000
    await kube_cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=manifest(model(namespace=ns), device(namespace=ns))
    )
    await src.list()
    key = f"{ns}/sensor-1"
    # 50 reports for one device at once: every one is acked, and they cost at most two patches
    # (the first, and one carrying the other 49 merged)
    await asyncio.gather(
        *(
            src.write_status(
                {key: ("edge-1", {"twins": {"temperature": {"reported": str(n), "reported_at": n}}})}
            )
            for n in range(50)
        )
    )
    assert src.patches <= 2
    got = json.loads((await kube_cluster.kubectl("get", "-n", ns, "device", "sensor-1", "-o", "json")).stdout)
    assert got["status"]["twins"][0]["reported"]["value"] == "49"


async def test_an_observed_desired_value_goes_ahead_of_the_queue(
    source: tuple[KubernetesSource, str],
    kube_cluster: Cluster,  # noqa: F811
) -> None:
    src, ns = source
    src.limiter_rate(rate=2, burst=1)  # two patches a second: a queue builds up
    names = [f"d{n}" for n in range(8)]
    await kube_cluster.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=manifest(model(namespace=ns), *(device(n, namespace=ns) for n in names)),
    )
    await src.list()
    queued = [
        asyncio.ensure_future(
            src.write_status(
                {f"{ns}/{n}": ("edge-1", {"twins": {"temperature": {"reported": "1", "reported_at": 1}}})}
            )
        )
        for n in names[:7]
    ]
    await asyncio.sleep(0)  # all seven queued
    await src.write_status(
        {
            f"{ns}/d7": (
                "edge-1",
                {"twins": {"setpoint": {"observed_desired": "25", "observed_desired_at": 2}}},
            )
        }
    )
    # when the answer to the desired value is written, most of those queued before it are not
    assert sum(1 for task in queued if task.done()) <= 2
    await asyncio.gather(*queued)


async def test_a_watch_from_a_revision_the_server_no_longer_has_is_gone(
    source: tuple[KubernetesSource, str],
) -> None:
    src, _ = source
    too_old = json.dumps({s.key: "1" for s in src.streams})
    events = Watching(src, too_old)
    with pytest.raises(Gone, match="410"):
        await events.next()


async def test_a_renewed_watch_resumes_from_its_revision(
    source: tuple[KubernetesSource, str],
    kube_cluster: Cluster,  # noqa: F811
) -> None:
    src, ns = source
    src.config.watch_timeout_s = 1  # each watch request ends after a second and is made again
    listing = await src.list()
    events = Watching(src, listing.revision)
    try:
        await asyncio.sleep(2.5)  # let two renewals pass (what is asserted is the event below)
        await kube_cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest(model(namespace=ns)))
        event = await events.next()
        assert (event.type, event.object.resource) == ("put", f"devicemodel/{ns}/sensor-model")
    finally:
        await events.close()


class Informer:
    """What the device controller does with a source: list, watch, list again on Gone."""

    def __init__(self, src: KubernetesSource) -> None:
        self.objects: dict[str, WatchEvent | None] = {}
        self.gone = 0
        self.task = asyncio.ensure_future(self._run(src))

    async def _run(self, src: KubernetesSource) -> None:
        while True:
            listing = await src.list()
            self.objects = {o.resource: None for o in listing.objects}
            try:
                async for event in src.watch(listing.revision):
                    if event.type == "delete":
                        self.objects.pop(event.object.resource, None)
                    else:
                        self.objects[event.object.resource] = event
            except Gone:
                self.gone += 1

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_after_the_api_server_restarts_nothing_is_missed(
    source: tuple[KubernetesSource, str],
    kube_cluster: Cluster,  # noqa: F811
) -> None:
    src, ns = source
    await kube_cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=manifest(model(namespace=ns), device("before", namespace=ns))
    )
    informer = Informer(src)
    try:
        await eventually(lambda: _true(f"device/{ns}/before" in informer.objects), what="the first listing")
        await asyncio.to_thread(kube_cluster.restart_apiserver)
        # made right after the restart, while the watch is still reconnecting
        await kube_cluster.kubectl(
            "apply", "-n", ns, "-f", "-", input=manifest(device("after", namespace=ns))
        )
        await kube_cluster.kubectl("delete", "-n", ns, "device", "before")

        async def caught_up() -> bool:
            return f"device/{ns}/after" in informer.objects and f"device/{ns}/before" not in informer.objects

        await eventually(caught_up, timeout=60, what="the device made and the one deleted after the restart")
        # the restarted server's watch cache starts after the revision the watch had: it says 410
        # Gone and the informer lists again (as client-go does)
        assert informer.gone >= 1
    finally:
        await informer.close()


async def _true(value: bool) -> bool:
    return value


# --------------------------------------------------------------------------- cloud and edge processes


class KubeSite:
    """`kubeedge cloud run` on the real API server and `kubeedge edge run` processes."""

    def __init__(self, root: Path, ca: trustme.CA, cluster: Cluster, namespace: str, **source: Any) -> None:
        self.root = root
        self.cluster = cluster
        self.namespace = namespace
        self.ca_file = root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert = ca.issue_cert("127.0.0.1", "localhost")
        (root / "hub.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(root / "hub.key"))
        self.cloud_port = free_port()
        self.cloud_yaml = root / "cloud.yaml"
        self.cloud_yaml.write_text(
            yaml.safe_dump(
                {
                    "listen": f"127.0.0.1:{self.cloud_port}",
                    "tls": {"certFile": "hub.pem", "keyFile": "hub.key"},
                    "dataDir": "cloud-data",
                    "source": {
                        "kind": "kubernetes",
                        "kubeconfig": str(cluster.kubeconfig),
                        "namespaces": [namespace],
                        "statusIntervalMs": 100,
                        "nodes": {"renewSeconds": 0.5},
                        **source,
                    },
                    "resend": {"firstMs": 500, "maxMs": 2000},
                    "status": {"flushMs": 20},
                }
            )
        )
        self.cloud = Process("cloud", "cloud", "run", "-c", str(self.cloud_yaml))
        self.edges: dict[str, Process] = {}

    async def start_cloud(self) -> None:
        await self.cloud.start(r"cloud running")

    async def start_edge(self, node: str, **cloud: Any) -> Process:
        folder = self.root / node
        folder.mkdir(exist_ok=True)
        process = await spawn("token", "create", node, "-c", str(self.cloud_yaml))
        out, _ = await process.communicate()
        assert process.returncode == 0, out.decode()
        token = next(line for line in out.decode().splitlines() if line.count(".") == 2)
        (folder / "node.token").write_text(token + "\n")
        config = folder / "edge.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "node": node,
                    "bus": {"listen": f"127.0.0.1:{free_port()}"},
                    "dataDir": "data",
                    "mappers": {"virtual": {}},
                    "cloud": {
                        "url": f"wss://127.0.0.1:{self.cloud_port}",
                        "tokenFile": "node.token",
                        "caFile": str(self.ca_file),
                        "batchDelayMs": 20,
                        "reconnectMinMs": 100,
                        "reconnectMaxMs": 500,
                        **cloud,
                    },
                }
            )
        )
        edge = Process(node, "edge", "run", "-c", str(config))
        self.edges[node] = edge
        await edge.start(rf"edge {node} running")
        return edge

    async def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return await self.cluster.kubectl("-n", self.namespace, *args, input=input, check=check)

    async def get(self, name: str) -> dict[str, Any]:
        return dict(json.loads((await self.kubectl("get", "device", name, "-o", "json")).stdout))

    async def twin(self, name: str, prop: str) -> dict[str, Any]:
        for twin in ((await self.get(name)).get("status") or {}).get("twins") or []:
            if twin.get("propertyName") == prop:
                return dict(twin)
        return {}

    async def close(self) -> None:
        for edge in self.edges.values():
            await edge.stop()
        await self.cloud.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest_asyncio.fixture
async def site(tmp_path: Path, ca: trustme.CA, kube_cluster: Cluster) -> AsyncIterator[KubeSite]:  # noqa: F811
    made = KubeSite(tmp_path, ca, kube_cluster, kube_cluster.new_namespace("e2e"))
    try:
        yield made
    finally:
        await made.close()


async def test_kubectl_end_to_end_as_the_readme_says(site: KubeSite) -> None:
    """The README's kubectl section, on its example (in a namespace of its own)."""
    example = REPO / "examples" / "kubernetes" / "thermostat.yaml"
    await site.kubectl("apply", "-f", str(example))
    await site.start_cloud()
    await site.start_edge("edge-1")

    # reported values and the state come back into the Device's status
    async def reported(prop: str) -> str | None:
        return ((await site.twin("thermostat", prop)).get("reported") or {}).get("value")

    await eventually(lambda: _true_if(reported("setpoint"), "21"), what="setpoint reported in the status")
    await eventually(lambda: reported("temperature"), what="a temperature reported in the status")
    listed = (await site.kubectl("get", "devices")).stdout
    assert listed.split("\n")[0].split() == ["NAME", "MODEL", "NODE", "STATE", "AGE"], listed
    assert listed.split("\n")[1].split()[:4] == ["thermostat", "thermostat-model", "edge-1", "online"], listed
    as_yaml = yaml.safe_load((await site.kubectl("get", "device", "thermostat", "-o", "yaml")).stdout)
    assert as_yaml["status"]["state"] == "online" and as_yaml["status"]["lastOnlineTime"]
    temperature = next(t for t in as_yaml["status"]["twins"] if t["propertyName"] == "temperature")
    assert temperature["reported"]["metadata"]["type"] == "float"
    assert temperature["reported"]["metadata"]["timestamp"].isdigit()

    async def observed(value: str) -> bool:
        twin = await site.twin("thermostat", "setpoint")
        return (twin.get("observedDesired") or {}).get("value") == value and (twin.get("reported") or {}).get(
            "value"
        ) == value

    # the README's short way: a JSON patch of the one value
    await site.kubectl(
        "patch",
        "device",
        "thermostat",
        "--type",
        "json",
        "-p",
        '[{"op": "replace", "path": "/spec/properties/1/desired/value", "value": "25"}]',
    )
    await eventually(lambda: observed("25"), what="setpoint 25 reported and observed")

    # a merge patch gives the whole properties list
    properties = yaml.safe_load_all(example.read_text())
    spec_properties = next(d for d in properties if d["kind"] == "Device")["spec"]["properties"]
    spec_properties[1]["desired"] = {"value": "12"}
    patch = json.dumps({"spec": {"properties": spec_properties}})
    await site.kubectl("patch", "device", "thermostat", "--type", "merge", "-p", patch)
    await eventually(lambda: observed("12"), what="setpoint 12 reported and observed")

    explained = (await site.cluster.kubectl("explain", "device.spec")).stdout
    assert "nodeName" in explained and "properties" in explained, explained

    # the cloud's own view reads the same status from the API server
    process = await spawn(
        "device", "get", "--cloud", f"{site.namespace}/thermostat", "-c", str(site.cloud_yaml), "-o", "json"
    )
    out, _ = await process.communicate()
    text = out.decode()
    assert process.returncode == 0, text
    held = json.loads(text[text.index("{") :])
    assert held["status"]["state"] == "online" and held["status"]["twins"]["setpoint"]["reported"] == "12", (
        held
    )

    # a bad manifest is refused by the API server, said as such (422 Invalid)
    bad = device("sensor-2", namespace=site.namespace, node="edge-1")
    bad["spec"]["properties"][0]["collectCycle"] = -5
    refused = await site.kubectl("apply", "-f", "-", input=manifest(bad), check=False)
    assert refused.returncode != 0
    assert 'The Device "sensor-2" is invalid' in refused.stderr, refused.stderr
    assert "spec.properties.collectCycle: Invalid value: -5" in refused.stderr, refused.stderr


async def test_a_desired_value_patched_while_the_edge_is_offline_lands_when_it_reconnects(
    site: KubeSite,
) -> None:
    ns = site.namespace
    await site.kubectl(
        "apply",
        "-f",
        "-",
        input=manifest(model(namespace=ns), device("sensor-1", namespace=ns, node="edge-1")),
    )
    await site.start_cloud()
    edge = await site.start_edge("edge-1")

    async def label_reported() -> bool:
        return ((await site.twin("sensor-1", "label")).get("reported") or {}).get("value") == "hello"

    await eventually(label_reported, what="label reported")
    await edge.stop()
    await site.kubectl(
        "patch",
        "device",
        "sensor-1",
        "--type",
        "json",
        "-p",
        '[{"op": "add", "path": "/spec/properties/1/desired", "value": {"value": "28"}}]',
    )
    await edge.start(r"edge edge-1 running")

    async def observed() -> bool:
        twin = await site.twin("sensor-1", "setpoint")
        return (twin.get("observedDesired") or {}).get("value") == "28"

    await eventually(observed, what="setpoint 28 observed after the edge reconnected")


async def test_each_connected_edge_is_a_node_with_a_lease_and_ready_follows_the_connection(
    site: KubeSite,
) -> None:
    cluster = site.cluster
    await site.start_cloud()
    edge = await site.start_edge("edge-1")

    async def node() -> dict[str, Any] | None:
        done = await cluster.kubectl("get", "node", "edge-1", "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    async def ready() -> str | None:
        got = await node()
        conditions = (got or {}).get("status", {}).get("conditions") or []
        return next((c["status"] for c in conditions if c["type"] == "Ready"), None)

    async def renewed_after(stamp: str) -> str | None:
        done = await cluster.kubectl(
            "get", "lease", "-n", "kube-node-lease", "edge-1", "-o", "json", check=False
        )
        if done.returncode != 0:
            return None
        renew = str(json.loads(done.stdout)["spec"]["renewTime"])
        return renew if renew > stamp else None

    await eventually(lambda: _true_if(ready(), "True"), what="node edge-1 Ready")
    listed = (await cluster.kubectl("get", "nodes")).stdout
    assert any(line.split()[:3] == ["edge-1", "Ready", "edge"] for line in listed.splitlines()), listed
    described = await node()
    assert described is not None
    assert {"type": "Hostname", "address": "edge-1"} in described["status"]["addresses"]
    first = await eventually(lambda: renewed_after(""), what="edge-1's Lease")
    await eventually(lambda: renewed_after(first), what="edge-1's Lease renewed")

    # the edge killed: NotReady as soon as the hub sees its connection drop
    await edge.stop(signal.SIGKILL)
    await eventually(
        lambda: _true_if(ready(), "False"), timeout=10, what="node edge-1 NotReady after kill -9"
    )
    await edge.start(r"edge edge-1 running")
    await eventually(lambda: _true_if(ready(), "True"), what="node edge-1 Ready again")

    # a Node a user deletes stays deleted while the edge stays connected (heartbeats go on) ...
    await cluster.kubectl("delete", "node", "edge-1")
    stamp = await eventually(lambda: renewed_after(""), what="a Lease renewal after the delete")
    await eventually(lambda: renewed_after(stamp), what="another Lease renewal")
    assert await node() is None
    # ... and comes back when the edge connects again
    await edge.stop()
    await edge.start(r"edge edge-1 running")
    await eventually(lambda: _true_if(ready(), "True"), what="node edge-1 made again on reconnect")


async def _true_if(value: Any, expected: str) -> bool:
    return (await value) == expected


DEPLOY = REPO / "deploy"
CLOUD_IDENTITY = "system:serviceaccount:kubeedge:kubeedge-cloud"


async def test_deploy_validates_and_the_cloud_runs_with_only_the_rights_it_gives(
    tmp_path: Path,
    ca: trustme.CA,
    kube_cluster: Cluster,  # noqa: F811
) -> None:
    cluster = kube_cluster
    await cluster.kubectl("apply", "-f", str(DEPLOY / "rbac.yaml"))
    await cluster.kubectl("apply", "-f", str(DEPLOY / "cloud.yaml"))  # Deployment, Service, ConfigMap
    deployed = yaml.safe_load(DEPLOY.joinpath("cloud.yaml").read_text().split("---")[0])
    assert yaml.safe_load(deployed["data"]["cloud.yaml"])["source"]["kind"] == "kubernetes"

    async def can(*args: str) -> str:
        done = await cluster.kubectl("auth", "can-i", *args, "--as", CLOUD_IDENTITY, check=False)
        return done.stdout.strip()

    assert await can("patch", "devices", "--subresource=status", "-A") == "yes"
    assert await can("watch", "devices.devices.kubeedge.io", "-A") == "yes"
    assert await can("patch", "devices.devices.kubeedge.io", "-A") == "no"  # never the spec
    assert await can("delete", "nodes") == "no"
    assert await can("get", "secrets", "-A") == "no"
    # replicas: the leader lists the edge Nodes and their Leases; the replica serving a Node is
    # an annotation written through nodes/status, so never a patch of the Node itself
    assert await can("list", "nodes") == "yes"
    assert await can("patch", "nodes") == "no"
    assert await can("list", "leases", "-n", "kube-node-lease") == "yes"
    assert await can("update", "leases", "-n", "kube-node-lease") == "no"
    # the leader election: its one Lease in the cloud's namespace, read and replaced
    assert await can("create", "leases", "-n", "kubeedge") == "yes"
    assert await can("update", "leases/kubeedge-cloud", "-n", "kubeedge") == "yes"
    assert await can("get", "leases/kubeedge-cloud", "-n", "kubeedge") == "yes"
    assert await can("update", "leases/another", "-n", "kubeedge") == "no"
    assert await can("list", "leases", "-n", "kubeedge") == "no"

    # the cloud as that ServiceAccount (a client certificate naming it), all namespaces
    kubeconfig = cluster.user(CLOUD_IDENTITY)
    namespace = cluster.new_namespace("rbac")
    site = KubeSite(
        tmp_path,
        ca,
        cluster,
        namespace,
        kubeconfig=str(kubeconfig),
        namespaces=[],
        replica={"leaseNamespace": "kubeedge"},  # where deploy/ lets it keep the leader's Lease
    )
    try:
        await site.kubectl(
            "apply",
            "-f",
            "-",
            input=manifest(model(namespace=namespace), device("meter", namespace=namespace, node="edge-sa")),
        )
        await site.start_cloud()
        await site.start_edge("edge-sa")

        async def label_reported() -> bool:
            return ((await site.twin("meter", "label")).get("reported") or {}).get("value") == "hello"

        await eventually(
            label_reported, what="meter's label reported by the cloud running as its ServiceAccount"
        )

        async def lease() -> bool:
            done = await cluster.kubectl("get", "lease", "-n", "kube-node-lease", "edge-sa", check=False)
            return done.returncode == 0

        await eventually(lease, what="edge-sa's Lease")
        assert "forbidden" not in site.cloud.output.lower(), site.cloud.output
    finally:
        await site.close()


def test_the_cloud_readme_names_every_setting_of_the_kubernetes_source() -> None:
    table = (REPO / "cloud" / "README.md").read_text()
    documented = set(re.findall(r"`source\.([a-zA-Z]+(?:\.[a-zA-Z]+)?)`", table))
    sections = {"nodes": NodeSettings, "replica": ReplicaSettings}
    expected = {f.alias or n for n, f in KubernetesSettings.model_fields.items() if n not in sections}
    for section, settings in sections.items():
        expected |= {f"{section}.{f.alias or n}" for n, f in settings.model_fields.items()}
    assert sorted(expected - documented) == []


async def test_an_answer_to_a_desired_value_is_not_held_behind_telemetry(
    tmp_path: Path,
    ca: trustme.CA,
    kube_cluster: Cluster,  # noqa: F811
) -> None:
    """Telemetry patched at most once in ten minutes per device (``statusIntervalMs``): from each
    device's first patch on, the edge's telemetry report waits that long for its ack. A desired
    value patched meanwhile still lands, observedDesired and then the reported value that reaches
    it (the edge's priority lane, and the writer letting such a device past its interval), while
    the other devices' telemetry stays held. Nothing held is lost: a cloud restarted with a short
    interval gets the newest values, and the answer is not overwritten by an older one."""
    namespace = kube_cluster.new_namespace("prio")
    site = KubeSite(tmp_path, ca, kube_cluster, namespace, statusIntervalMs=600_000)
    names = ["sensor-1", "sensor-2", "sensor-3"]
    try:
        await site.kubectl(
            "apply",
            "-f",
            "-",
            input=manifest(
                model(namespace=namespace), *(device(n, namespace=namespace, node="edge-1") for n in names)
            ),
        )
        await site.start_cloud()
        # a report's ack is waited for longer than the test lasts (not sent again after 10 s)
        await site.start_edge("edge-1", ackTimeoutMs=600_000)

        async def state(name: str) -> str | None:
            return ((await site.get(name)).get("status") or {}).get("state")

        async def all_online() -> bool:
            return [await state(name) for name in names] == ["online"] * len(names)

        # a change of state goes first too: from here on, every device has had its first patch
        await eventually(all_online, what="every device online")

        async def temperature(name: str) -> str | None:
            return ((await site.twin(name, "temperature")).get("reported") or {}).get("value")

        held = {name: await temperature(name) for name in ("sensor-1", "sensor-3")}
        await site.kubectl(
            "patch",
            "device",
            "sensor-2",
            "--type",
            "json",
            "-p",
            '[{"op": "add", "path": "/spec/properties/1/desired", "value": {"value": "28"}}]',
        )

        async def answered() -> bool:
            twin = await site.twin("sensor-2", "setpoint")
            values = [(twin.get(side) or {}).get("value") for side in ("observedDesired", "reported")]
            return values == ["28", "28"]

        await eventually(answered, timeout=60, what="setpoint 28 observed and reported, telemetry held")
        assert {name: await temperature(name) for name in held} == held, "the telemetry was held meanwhile"

        await site.cloud.stop()
        config = yaml.safe_load(site.cloud_yaml.read_text())
        config["source"]["statusIntervalMs"] = 100
        site.cloud_yaml.write_text(yaml.safe_dump(config))
        await site.start_cloud()
        edge_values = {name: await _edge_temperature(site, name) for name in held}

        async def caught_up() -> bool:
            values = {n: float(await temperature(n) or 0) for n in held}
            return all(values[n] >= edge_values[n] for n in held)

        await eventually(caught_up, what=f"temperatures at {edge_values} or later after the restart")
        assert await answered(), "the answer is not overwritten by an older value"
    finally:
        await site.close()


async def _edge_temperature(site: KubeSite, name: str) -> float:
    """The edge's own temperature of ``name``, asked on its bus (what ``kubeedge device get`` does)."""
    edge = yaml.safe_load((site.root / "edge-1" / "edge.yaml").read_text())
    bus = BusClient(f"mqtt://{edge['bus']['listen']}", client_id=f"test-temperature-{free_port()}")
    await bus.start()
    try:
        twin = await EdgeClient(bus, "edge-1").twin(f"{site.namespace}/{name}")
    finally:
        await bus.stop()
    return float(twin["temperature"]["actual"]["value"])
