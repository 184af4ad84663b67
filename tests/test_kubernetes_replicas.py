"""Two or more cloud replicas on one real API server (``hack/test-cluster.sh``): active-active,
each serving the edges connected to it, a ``coordination.k8s.io`` Lease leader for the chores of
the whole cluster (docs/design.md, "Replicas").

First the parts in this process against the real server (the leader election, a late
disconnection on the old replica, the leader's node monitor), then two `kubeedge cloud run`
processes with four `kubeedge edge run` processes, one replica killed with -9.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import trustme
import yaml
from kube_cluster import Cluster, kube_cluster  # noqa: F401  (the session fixture)
from pydantic import ValidationError
from test_cloud_edge import Process, Proxy, eventually

from kubeedge.bus import free_port
from kubeedge.config import EdgeConfig
from kubeedge_cloud.leader import LeaderElector, ReplicaSettings
from kubeedge_cloud.nodes import REPLICA_ANNOTATION, NodeKeeper, NodeMonitor, NodeSettings
from kubeedge_process import spawn
from sample_devices import device, model

REPO = Path(__file__).resolve().parents[1]
CLOUD_IDENTITY = "system:serviceaccount:kubeedge:kubeedge-cloud"


def manifest(*documents: dict[str, Any]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


# --------------------------------------------------------------------------- settings


def test_the_replica_is_named_by_its_setting_else_pod_name_else_host_and_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ReplicaSettings(id="cloud-7").replica_id() == "cloud-7"
    monkeypatch.setenv("POD_NAME", "kubeedge-cloud-5d9f-abcde")
    assert ReplicaSettings().replica_id() == "kubeedge-cloud-5d9f-abcde"
    monkeypatch.delenv("POD_NAME")
    assert ReplicaSettings().replica_id().endswith(f"-{__import__('os').getpid()}")
    monkeypatch.setenv("POD_NAMESPACE", "kubeedge")
    assert ReplicaSettings().namespace("from-kubeconfig") == "kubeedge"
    assert ReplicaSettings(leaseNamespace="ops").namespace("from-kubeconfig") == "ops"
    monkeypatch.delenv("POD_NAMESPACE")
    assert ReplicaSettings().namespace("from-kubeconfig") == "from-kubeconfig"


def test_election_timings_that_would_let_two_leaders_overlap_are_refused() -> None:
    with pytest.raises(
        ValidationError, match="leaseDurationSeconds must be greater than renewDeadlineSeconds"
    ):
        ReplicaSettings(leaseDurationSeconds=10, renewDeadlineSeconds=10)
    with pytest.raises(
        ValidationError, match=r"renewDeadlineSeconds must be greater than 1\.2 x retryPeriodSeconds"
    ):
        ReplicaSettings(renewDeadlineSeconds=2, retryPeriodSeconds=2)
    defaults = ReplicaSettings()  # client-go's
    assert (
        defaults.lease_duration_seconds,
        defaults.renew_deadline_seconds,
        defaults.retry_period_seconds,
    ) == (
        15,
        10.0,
        2.0,
    )


def test_an_edge_names_several_hubs_and_existing_configurations_stay_valid() -> None:
    one = EdgeConfig.model_validate({"cloud": {"url": "wss://a:10000", "token": "t"}}).cloud
    assert one is not None and one.hubs == ["wss://a:10000"]
    listed = EdgeConfig.model_validate(
        {"cloud": {"urls": ["wss://a:10000", "wss://b:10000"], "token": "t"}}
    ).cloud
    assert (
        listed is not None
        and listed.url == "wss://a:10000"
        and listed.hubs == ["wss://a:10000", "wss://b:10000"]
    )
    both = EdgeConfig.model_validate(
        {"cloud": {"url": "wss://a:10000", "urls": ["wss://b:10000"], "token": "t"}}
    )
    assert both.cloud is not None and both.cloud.hubs == ["wss://a:10000", "wss://b:10000"]
    with pytest.raises(ValidationError, match=r"cloud\.urls\.1[\s\S]*must be wss://host:port"):
        EdgeConfig.model_validate({"cloud": {"urls": ["wss://a:10000", "http://b"], "token": "t"}})
    with pytest.raises(ValidationError, match="set url"):
        EdgeConfig.model_validate({"cloud": {"token": "t"}})


# --------------------------------------------------------------------------- in this process


@pytest_asyncio.fixture
async def api(kube_cluster: Cluster) -> AsyncIterator[Any]:  # noqa: F811
    """An API client (cluster admin) on the real server."""
    from kubernetes.aio import client, config

    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(kube_cluster.kubeconfig), client_configuration=configuration, persist_config=False
    )
    made = client.ApiClient(configuration)
    try:
        yield made
    finally:
        await made.close()


async def _lease(api: Any, namespace: str, name: str) -> Any:
    from kubernetes.aio import client

    return (await client.CoordinationV1Api(api).read_namespaced_lease(name, namespace)).spec


async def _node(api: Any, name: str) -> Any:
    from kubernetes.aio import client

    try:
        return await client.CoreV1Api(api).read_node(name)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _ready(node: Any) -> Any:
    conditions = (node.status.conditions if node is not None and node.status else None) or []
    return next((c for c in conditions if c.type == "Ready"), None)


async def _idle() -> None:
    await asyncio.Event().wait()


async def test_one_replica_leads_and_a_clean_stop_hands_the_lease_over_at_once(
    api: Any,
    kube_cluster: Cluster,  # noqa: F811
) -> None:
    namespace = kube_cluster.new_namespace("lead")
    # a long lease: the hand-over below must not wait for it to run out
    settings = ReplicaSettings(leaseDurationSeconds=30, renewDeadlineSeconds=5, retryPeriodSeconds=0.2)
    first = LeaderElector(api, settings, "replica-a", namespace, _idle)
    second = LeaderElector(api, settings, "replica-b", namespace, _idle)
    first.start()
    try:
        await asyncio.wait_for(first.leading.wait(), 10)
        second.start()
        spec = await _lease(api, namespace, "kubeedge-cloud")
        assert spec.holder_identity == "replica-a" and spec.lease_duration_seconds == 30

        # replica-b tries every 0.2 s while replica-a renews: the Lease stays replica-a's
        async def renewed_twice() -> bool:
            now = (await _lease(api, namespace, "kubeedge-cloud")).renew_time
            return now > spec.renew_time and not second.leading.is_set()

        await eventually(renewed_twice, what="replica-a's renewals")
        await eventually(renewed_twice, what="more of replica-a's renewals")
        assert not second.leading.is_set()

        started = time.monotonic()
        await first.stop()  # releases: the holder is cleared
        await asyncio.wait_for(second.leading.wait(), 10)
        assert time.monotonic() - started < 10  # well within the 30 s lease
        spec = await _lease(api, namespace, "kubeedge-cloud")
        assert spec.holder_identity == "replica-b" and spec.lease_transitions == 1
    finally:
        await first.stop()
        await second.stop()


async def test_a_leader_cut_off_from_the_api_server_stops_leading_before_another_may_take_over(
    api: Any,
    kube_cluster: Cluster,  # noqa: F811
) -> None:
    from kubernetes.aio import client, config

    namespace = kube_cluster.new_namespace("cut")
    # replica-a reaches the API server through a loopback proxy that the test cuts
    proxy = Proxy(int((kube_cluster.folder / "apiserver.port").read_text()))
    await proxy.start()
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(kube_cluster.kubeconfig), client_configuration=configuration, persist_config=False
    )
    configuration.host = f"https://127.0.0.1:{proxy.port}"
    cut_api = client.ApiClient(configuration)
    settings = ReplicaSettings(leaseDurationSeconds=4, renewDeadlineSeconds=2, retryPeriodSeconds=0.2)
    stopped_leading = asyncio.Event()

    async def chores() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped_leading.set()

    first = LeaderElector(cut_api, settings, "replica-a", namespace, chores)
    second = LeaderElector(api, settings, "replica-b", namespace, _idle)
    try:
        first.start()
        await asyncio.wait_for(first.leading.wait(), 10)
        second.start()
        proxy.cut()
        # replica-a's renewals fail: past renewDeadlineSeconds it stops leading (its chores are
        # cancelled) ...
        await asyncio.wait_for(stopped_leading.wait(), 10)
        assert not first.leading.is_set() and not second.leading.is_set()
        # ... and only then, once the Lease has gone unrenewed for its duration, replica-b leads
        await asyncio.wait_for(second.leading.wait(), 15)
        assert (await _lease(api, namespace, "kubeedge-cloud")).holder_identity == "replica-b"
    finally:
        await first.stop()
        await second.stop()
        await cut_api.close()
        await proxy.stop()


async def test_a_late_disconnect_on_the_old_replica_leaves_the_edge_ready_on_the_new_one(
    api: Any,
    kube_cluster: Cluster,  # noqa: F811
) -> None:
    node = f"{kube_cluster.new_namespace('blip')}-edge"
    settings = NodeSettings(renewSeconds=0.5)
    old, new = NodeKeeper(api, settings, "replica-a"), NodeKeeper(api, settings, "replica-b")
    try:
        old.connected(node, "10.0.0.1")

        async def served_by(replica: str) -> bool:
            got = await _node(api, node)
            ready = _ready(got)
            return bool(
                ready is not None
                and ready.status == "True"
                and got.metadata.annotations.get(REPLICA_ANNOTATION) == replica
            )

        await eventually(lambda: served_by("replica-a"), what=f"{node} Ready on replica-a")
        # a network blip: the edge is on replica-b before replica-a sees its old link drop
        new.connected(node, "10.0.0.2")
        await eventually(lambda: served_by("replica-b"), what=f"{node} Ready on replica-b")
        old.disconnected(node)
        await old.drain()  # replica-a's NotReady has been tried
        assert await served_by("replica-b")

        # replica-b's own disconnect does mark it NotReady
        new.disconnected(node)
        await new.drain()
        ready = _ready(await _node(api, node))
        assert (ready.status, ready.reason) == ("False", "EdgeDisconnected")
    finally:
        await old.stop()
        await new.stop()


async def test_the_leader_marks_not_ready_the_nodes_whose_replica_stopped_renewing(
    api: Any,
    kube_cluster: Cluster,  # noqa: F811
) -> None:
    prefix = kube_cluster.new_namespace("lost")
    orphan, served = f"{prefix}-orphan", f"{prefix}-served"
    settings = NodeSettings(renewSeconds=0.3, leaseDurationSeconds=2)
    vanished, alive = NodeKeeper(api, settings, "replica-gone"), NodeKeeper(api, settings, "replica-alive")
    monitor = NodeMonitor(api, period=0.2)
    watching: asyncio.Task[None] | None = None
    try:
        vanished.connected(orphan, "10.0.0.3")
        alive.connected(served, "10.0.0.4")

        async def ready(name: str) -> Any:
            condition = _ready(await _node(api, name))
            return condition if condition is not None and condition.status == "True" else None

        await eventually(lambda: ready(orphan), what=f"{orphan} Ready")
        await eventually(lambda: ready(served), what=f"{served} Ready")
        await vanished.stop()  # as if killed: no NotReady, its renewals stop
        watching = asyncio.ensure_future(monitor.run())

        async def lost() -> Any:
            condition = _ready(await _node(api, orphan))
            return condition if condition is not None and condition.status == "False" else None

        condition = await eventually(lost, what=f"{orphan} NotReady by the leader")
        assert condition.reason == "CloudReplicaLost"
        assert "replica-gone" in condition.message
        assert await ready(served) is not None  # its Lease is renewed: left Ready
    finally:
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        await vanished.stop()
        await alive.stop()


# --------------------------------------------------------------------------- processes


class Replicas:
    """Two `kubeedge cloud run` replicas (Kubernetes source, as the ServiceAccount of deploy/)
    and `kubeedge edge run` processes with the virtual mapper."""

    def __init__(
        self, root: Path, ca: trustme.CA, cluster: Cluster, namespace: str, kubeconfig: Path
    ) -> None:
        self.root = root
        self.cluster = cluster
        self.namespace = namespace
        self.ca_file = root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert = ca.issue_cert("127.0.0.1", "localhost")
        (root / "hub.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(root / "hub.key"))
        self.hubs: dict[str, str] = {}
        self.configs: dict[str, Path] = {}
        self.clouds: dict[str, Process] = {}
        for name in ("cloud-a", "cloud-b"):
            port = free_port()
            self.hubs[name] = f"wss://127.0.0.1:{port}"
            self.configs[name] = root / f"{name}.yaml"
            self.configs[name].write_text(
                yaml.safe_dump(
                    {
                        "listen": f"127.0.0.1:{port}",
                        "tls": {"certFile": "hub.pem", "keyFile": "hub.key"},
                        "dataDir": f"{name}-data",
                        "tokenSecretFile": "token.secret",  # one secret: a token is good on either
                        "source": {
                            "kind": "kubernetes",
                            "kubeconfig": str(kubeconfig),
                            "namespaces": [namespace],
                            "statusIntervalMs": 100,
                            "nodes": {"renewSeconds": 0.5, "leaseDurationSeconds": 3},
                            "replica": {
                                "id": name,
                                "leaseNamespace": "kubeedge",  # deploy/'s namespace and Role
                                "leaseDurationSeconds": 3,
                                "renewDeadlineSeconds": 2,
                                "retryPeriodSeconds": 0.5,
                                "nodeMonitorPeriodSeconds": 0.5,
                            },
                        },
                        "resend": {"firstMs": 500, "maxMs": 2000},
                        "status": {"flushMs": 20},
                    }
                )
            )
            self.clouds[name] = Process(name, "cloud", "run", "-c", str(self.configs[name]))
        self.edges: dict[str, Process] = {}

    async def start_edge(self, node: str, hubs: list[str]) -> Process:
        folder = self.root / node
        folder.mkdir()
        process = await spawn("token", "create", node, "-c", str(self.configs["cloud-a"]))
        out, _ = await process.communicate()
        assert process.returncode == 0, out.decode()
        token = next(line for line in out.decode().splitlines() if line.count(".") == 2)
        (folder / "node.token").write_text(token + "\n")
        cloud: dict[str, Any] = {
            "tokenFile": "node.token",
            "caFile": str(self.ca_file),
            "batchDelayMs": 20,
            "reconnectMinMs": 100,
            "reconnectMaxMs": 500,
        }
        urls = [self.hubs[h] for h in hubs]
        if len(urls) == 1:
            cloud["url"] = urls[0]  # the one-hub form stays valid
        else:
            cloud["urls"] = urls
        config = folder / "edge.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "node": node,
                    "bus": {"listen": f"127.0.0.1:{free_port()}"},
                    "dataDir": "data",
                    "mappers": {"virtual": {}},
                    "cloud": cloud,
                }
            )
        )
        edge = Process(node, "edge", "run", "-c", str(config))
        self.edges[node] = edge
        await edge.start(rf"edge {node} running")
        return edge

    async def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return await self.cluster.kubectl(*args, input=input, check=check)

    async def twin(self, device: str, prop: str) -> dict[str, Any]:
        done = await self.kubectl("-n", self.namespace, "get", "device", device, "-o", "json")
        for twin in (json.loads(done.stdout).get("status") or {}).get("twins") or []:
            if twin.get("propertyName") == prop:
                return dict(twin)
        return {}

    async def node(self, name: str) -> tuple[str | None, str | None, str, str]:
        """(Ready status, replica annotation, reason, message) of a Node."""
        done = await self.kubectl("get", "node", name, "-o", "json", check=False)
        if done.returncode != 0:
            return None, None, "", ""
        got = json.loads(done.stdout)
        ready = next((c for c in got["status"].get("conditions") or [] if c["type"] == "Ready"), {})
        replica = (got["metadata"].get("annotations") or {}).get(REPLICA_ANNOTATION)
        return ready.get("status"), replica, ready.get("reason", ""), ready.get("message", "")

    async def leader(self) -> str | None:
        done = await self.kubectl(
            "-n", "kubeedge", "get", "lease", "kubeedge-cloud", "-o", "json", check=False
        )
        return json.loads(done.stdout)["spec"].get("holderIdentity") if done.returncode == 0 else None

    async def close(self) -> None:
        await asyncio.gather(*(edge.stop() for edge in self.edges.values()))
        await asyncio.gather(*(cloud.stop() for cloud in self.clouds.values()))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest_asyncio.fixture
async def replicas(tmp_path: Path, ca: trustme.CA, kube_cluster: Cluster) -> AsyncIterator[Replicas]:  # noqa: F811
    await kube_cluster.kubectl("apply", "-f", str(REPO / "deploy" / "rbac.yaml"))
    made = Replicas(
        tmp_path, ca, kube_cluster, kube_cluster.new_namespace("rep"), kube_cluster.user(CLOUD_IDENTITY)
    )
    try:
        yield made
    finally:
        await made.close()


async def test_a_replica_killed_with_9_its_edges_move_to_the_other_and_the_leader_takes_over(
    replicas: Replicas,
) -> None:
    site = replicas
    ns = site.namespace
    nodes = {n: f"{ns}-e{n}" for n in range(1, 5)}
    await site.kubectl(
        "apply",
        "-f",
        "-",
        input=manifest(
            model(namespace=ns), *(device(f"d{n}", namespace=ns, node=nodes[n]) for n in range(1, 5))
        ),
    )
    a, b = site.clouds["cloud-a"], site.clouds["cloud-b"]
    await a.start(r"cloud running")
    await a.wait_line(r"cloud-a is the leader")
    await b.start(r"cloud running")
    # both replicas list the devices before any status exists: the one that takes an edge over
    # must not write the status back as it was then
    await asyncio.gather(
        site.start_edge(nodes[1], ["cloud-a", "cloud-b"]),  # moves to cloud-b when cloud-a dies
        site.start_edge(nodes[2], ["cloud-a"]),  # pinned to cloud-a: cannot move
        site.start_edge(nodes[3], ["cloud-b", "cloud-a"]),
        site.start_edge(nodes[4], ["cloud-b", "cloud-a"]),
    )
    owners = {1: "cloud-a", 2: "cloud-a", 3: "cloud-b", 4: "cloud-b"}
    for n, owner in owners.items():

        async def served(n: int = n, owner: str = owner) -> bool:
            status, replica, _, _ = await site.node(nodes[n])
            return (status, replica) == ("True", owner)

        await eventually(served, what=f"{nodes[n]} Ready, served by {owner}")

    async def label_reported(name: str) -> bool:
        return ((await site.twin(name, "label")).get("reported") or {}).get("value") == "hello"

    for n in range(1, 5):
        await eventually(lambda n=n: label_reported(f"d{n}"), what=f"d{n}'s label reported")
    assert await site.leader() == "cloud-a"

    # cloud-a killed; a desired value for a device of one of its edges patched right after
    await a.stop(signal.SIGKILL)
    killed = time.monotonic()
    killed_ms = int(time.time() * 1000)
    await site.kubectl(
        "-n",
        ns,
        "patch",
        "device",
        "d1",
        "--type",
        "json",
        "-p",
        '[{"op": "add", "path": "/spec/properties/1/desired", "value": {"value": "27"}}]',
    )

    async def moved() -> bool:
        status, replica, _, _ = await site.node(nodes[1])
        return (status, replica) == ("True", "cloud-b")

    await eventually(moved, timeout=10, what=f"{nodes[1]} Ready on cloud-b within 10 s of the kill")
    moved_after = time.monotonic() - killed

    async def landed() -> bool:
        twin = await site.twin("d1", "setpoint")
        observed = (twin.get("observedDesired") or {}).get("value")
        return observed == "27" and (twin.get("reported") or {}).get("value") == "27"

    await eventually(landed, timeout=20, what="d1's setpoint 27 written and observed through cloud-b")

    async def fresh_temperature() -> bool:
        metadata = ((await site.twin("d1", "temperature")).get("reported") or {}).get("metadata") or {}
        return int(metadata.get("timestamp", 0)) > killed_ms

    await eventually(fresh_temperature, what="d1's temperature still reported after the move")
    # what cloud-a wrote before it died is still there: cloud-b's patches (each carries the
    # whole twins[]) start from it, not from what cloud-b listed at its start
    assert await label_reported("d1")

    async def leads() -> bool:
        return await site.leader() == "cloud-b"

    await eventually(leads, timeout=10, what="the Lease held by cloud-b")

    # the edge that cannot reach cloud-b: the leader marks its Node NotReady (its Lease has
    # stopped), naming the replica that vanished
    async def lost() -> tuple[str, str] | None:
        status, _, reason, message = await site.node(nodes[2])
        return (reason, message) if status == "False" else None

    reason, message = await eventually(lost, timeout=20, what=f"{nodes[2]} NotReady by the leader")
    lost_after = time.monotonic() - killed
    assert reason == "CloudReplicaLost" and "cloud-a" in message, (reason, message)
    for n in (3, 4):
        assert (await site.node(nodes[n]))[:2] == ("True", "cloud-b")
    assert "forbidden" not in b.output.lower(), b.output[-3000:]
    print(
        f"failover: edge Ready on the survivor {moved_after:.1f} s, orphan NotReady {lost_after:.1f} s after kill -9"
    )
