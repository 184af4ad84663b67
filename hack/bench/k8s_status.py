#!/usr/bin/env python3
"""Benchmark: device status through a real Kubernetes API server (the Kubernetes source).

    python hack/bench/k8s_status.py                          # 1,000 devices x 10 properties at 1 Hz
    python hack/bench/k8s_status.py --devices 200 --seconds 20
    python hack/bench/k8s_status.py --quick                  # a small run (40 x 4, 5 s, 10 patches)
    python hack/bench/k8s_status.py --cluster DIR            # on a running hack/test-cluster.sh up DIR

Set-up: ``hack/test-cluster.sh up`` (kube-apiserver 1.20.2 + etcd on loopback), N Devices of P
float properties (the virtual mapper's random walk: every read is a new value, read and reported
once a second) made with kubectl, one ``kubeedge cloud run`` with ``source: {kind: kubernetes}``
and one ``kubeedge edge run`` serving all N devices; the edge's ``batchDelayMs`` and the
cloud's ``status.flushMs`` are 20 ms (``--flush-ms``; their defaults, 100 ms each, add 200 ms to
every round trip). Two phases, each with a fresh cloud and edge:

* **coalesced**: the defaults (per device at most one status patch per ``statusIntervalMs``, 250
  ms; all devices together ``qps`` 50, ``burst`` 100);
* **uncoalesced**: ``statusIntervalMs: 0``, ``qps``/``burst`` 100,000: a patch per device for
  every batch the controller writes, as fast as the API server takes them.

Measured over the window after every device is online: status patches/s the API server served
(its own ``apiserver_request_total`` for PATCH devices/status), the API server's CPU (% of one
core, from /proc), the staleness kubectl would see (each second, every twin's age: now - the
reported value's timestamp, p50/p99; the writable property p0 left out: it holds the value
written to it, so it is not reported again), and, in the coalesced phase, the desired-value round trip
over ``--patches`` JSON patches (a new setpoint on a random device -> written by the mapper ->
``observedDesired`` in the Device's status, seen on a watch), p50/p99; a patch not answered
within 10 s counts as 10 s and is counted ("N over 10 s"). Targets: round trip p99 < 250 ms,
staleness p99 < 2 s. The headline is the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from kubeedge.bus import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "test-cluster.sh"
KUBEEDGE = [sys.executable, "-m", "kubeedge"]
GROUP, VERSION = "devices.kubeedge.io", "v1beta1"
TRIP_LIMIT = 10.0
"""Seconds a desired value's answer is waited for; a longer one counts as this and is counted."""
PATCH_METRIC = re.compile(
    r'^apiserver_request_total\{[^}]*resource="devices"[^}]*subresource="status"[^}]*verb="PATCH"[^}]*\} (\S+)$'
)


def manifests(namespace: str, devices: int, props: int) -> str:
    properties = [
        {
            "name": f"p{i}",
            "type": "FLOAT",
            "accessMode": "ReadWrite" if i == 0 else "ReadOnly",
            "visitors": {
                "protocolName": "virtual",
                "configData": {"generator": "random-walk", "value": 20, "step": 0.5, "min": 0, "max": 100},
            },
        }
        for i in range(props)
    ]
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DeviceModel",
            "metadata": {"name": "bench-model", "namespace": namespace},
            "spec": {"protocol": "virtual", "properties": properties},
        }
    ]
    for d in range(devices):
        docs.append(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Device",
                "metadata": {"name": f"dev-{d:04d}", "namespace": namespace},
                "spec": {
                    "nodeName": "bench-edge",
                    "deviceModelRef": {"name": "bench-model"},
                    "protocol": {"protocolName": "virtual", "configData": {"seed": d}},
                    "properties": [
                        {
                            "name": f"p{i}",
                            "collectCycle": 1000,
                            "reportCycle": 1000,
                            **({"desired": {"value": "20"}} if i == 0 else {}),
                        }
                        for i in range(props)
                    ],
                },
            }
        )
    return yaml.safe_dump_all(docs, sort_keys=False)


class Cluster:
    def __init__(self, folder: Path, *, running: bool = False) -> None:
        """Start a cluster in ``folder``, or (``running``) use the one already running there."""
        self.folder = folder
        self.running = running
        if running:
            self.kubeconfig = folder / "kubeconfig"
        else:
            up = subprocess.run([str(SCRIPT), "up", str(folder)], capture_output=True, text=True)
            if up.returncode != 0:  # it may have started etcd and the API server before failing
                subprocess.run([str(SCRIPT), "down", str(folder)], check=False)
                raise RuntimeError(f"hack/test-cluster.sh up {folder} failed:\n{up.stderr}")
            self.kubeconfig = Path(up.stdout.strip().splitlines()[-1])
        bin_dir = subprocess.run(
            [str(SCRIPT), "build"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.kubectl_bin = Path(bin_dir) / "kubectl"
        self.apiserver = psutil.Process(int((folder / "kube-apiserver.pid").read_text()))

    def kubectl(self, *args: str, input: str | None = None) -> str:
        done = subprocess.run(
            [str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])}: {done.stderr}")
        return done.stdout

    def patches_served(self) -> float:
        total = 0.0
        for line in self.kubectl("get", "--raw", "/metrics").splitlines():
            match = PATCH_METRIC.match(line)
            if match:
                total += float(match.group(1))
        return total

    def down(self) -> None:
        if not self.running:  # a cluster given with --cluster is left as it was found
            subprocess.run([str(SCRIPT), "down", str(self.folder)], check=False)


async def spawn(*args: str, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return await asyncio.create_subprocess_exec(
        *KUBEEDGE, *args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env
    )


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


async def phase(
    cluster: Cluster, root: Path, namespace: str, args: argparse.Namespace, *, coalesced: bool
) -> dict[str, Any]:
    from kubernetes.aio import client, config, watch

    name = "coalesced" if coalesced else "uncoalesced"
    folder = root / name
    folder.mkdir()
    port = free_port()
    source: dict[str, Any] = {
        "kind": "kubernetes",
        "kubeconfig": str(cluster.kubeconfig),
        "namespaces": [namespace],
    }
    if not coalesced:
        source |= {"statusIntervalMs": 0, "qps": 100_000, "burst": 100_000, "parallelWrites": 32}
    (folder / "cloud.yaml").write_text(
        yaml.safe_dump(
            {
                "listen": f"127.0.0.1:{port}",
                "dataDir": "data",
                "source": source,
                "status": {"flushMs": args.flush_ms},
            }
        )
    )
    made = await asyncio.to_thread(
        subprocess.run,
        [*KUBEEDGE, "token", "create", "bench-edge", "-c", str(folder / "cloud.yaml")],
        capture_output=True,
        text=True,
        check=True,
    )
    token = made.stdout
    (folder / "node.token").write_text(
        next(line for line in token.splitlines() if line.count(".") == 2) + "\n"
    )
    (folder / "edge.yaml").write_text(
        yaml.safe_dump(
            {
                "node": "bench-edge",
                "bus": {"listen": f"127.0.0.1:{free_port()}"},
                "dataDir": "edge-data",
                "mappers": {"virtual": {}},
                "cloud": {
                    "url": f"ws://127.0.0.1:{port}",
                    "tokenFile": "node.token",
                    "batchDelayMs": args.flush_ms,
                },
            }
        )
    )
    cloud = await spawn("cloud", "run", "-c", str(folder / "cloud.yaml"), log=folder / "cloud.log")
    await asyncio.sleep(2)
    edge = await spawn("edge", "run", "-c", str(folder / "edge.yaml"), log=folder / "edge.log")
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    api_client = client.ApiClient(configuration)
    api = client.CustomObjectsApi(api_client)
    result: dict[str, Any] = {"phase": name}
    try:
        started = time.monotonic()
        while True:  # every device online, with a value for every property
            listed = await api.list_namespaced_custom_object(GROUP, VERSION, namespace, "devices")
            ready = sum(
                1
                for d in listed["items"]
                if (d.get("status") or {}).get("state") == "online"
                and len((d.get("status") or {}).get("twins") or []) >= args.props
            )
            if ready == args.devices or time.monotonic() - started > args.warmup_limit:
                break  # past the limit, measured anyway: the line says how many were online
            await asyncio.sleep(1)
        result["online_after"] = time.monotonic() - started
        result["online"] = ready
        await asyncio.sleep(3)  # settle

        patches0, cpu0, t0 = (
            cluster.patches_served(),
            sum(cluster.apiserver.cpu_times()[:2]),
            time.monotonic(),
        )
        ages: list[float] = []
        while time.monotonic() - t0 < args.seconds:
            listed = await api.list_namespaced_custom_object(GROUP, VERSION, namespace, "devices")
            now_ms = time.time() * 1000
            for d in listed["items"]:
                for twin in (d.get("status") or {}).get("twins") or []:
                    if twin.get("propertyName") == "p0":
                        continue  # the writable one holds its written value: not re-reported
                    stamp = ((twin.get("reported") or {}).get("metadata") or {}).get("timestamp", "")
                    if stamp.isdigit():
                        ages.append((now_ms - int(stamp)) / 1000)
            await asyncio.sleep(1)
        elapsed = time.monotonic() - t0
        result["patches_per_s"] = (cluster.patches_served() - patches0) / elapsed
        result["apiserver_cpu"] = 100 * (sum(cluster.apiserver.cpu_times()[:2]) - cpu0) / elapsed
        result["offered"] = args.devices * args.props
        ages.sort()
        result["stale_p50"] = statistics.median(ages) if ages else float("nan")
        result["stale_p99"] = ages[int(len(ages) * 0.99)] if ages else float("nan")

        if coalesced and args.patches:
            waiting: dict[tuple[str, str], asyncio.Future[float]] = {}
            watcher = watch.Watch()

            async def follow() -> None:
                async with watcher.stream(
                    api.list_namespaced_custom_object, GROUP, VERSION, namespace, "devices"
                ) as events:
                    async for event in events:
                        obj = event["raw_object"]
                        for twin in (obj.get("status") or {}).get("twins") or []:
                            if twin.get("propertyName") != "p0":
                                continue
                            value = (twin.get("observedDesired") or {}).get("value")
                            future = waiting.get((obj["metadata"]["name"], str(value)))
                            if future is not None and not future.done():
                                future.set_result(time.monotonic())

            follower = asyncio.create_task(follow())
            await asyncio.sleep(1)
            trips: list[float] = []
            loop = asyncio.get_running_loop()
            for n in range(args.patches):
                device = f"dev-{random.randrange(args.devices):04d}"
                value = f"{30 + n % 40}.{n % 10}"
                future: asyncio.Future[float] = loop.create_future()
                waiting[(device, value)] = future
                sent = time.monotonic()
                await api.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    "devices",
                    device,
                    [{"op": "replace", "path": "/spec/properties/0/desired/value", "value": value}],
                    _content_type="application/json-patch+json",
                )
                try:
                    trips.append(await asyncio.wait_for(future, TRIP_LIMIT) - sent)
                except TimeoutError:
                    trips.append(TRIP_LIMIT)
                    result["trips_over"] = result.get("trips_over", 0) + 1
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            trips.sort()
            result["trip_p50"] = statistics.median(trips)
            result["trip_p99"] = trips[min(len(trips) - 1, int(len(trips) * 0.99))]
            result["patches"] = len(trips)
    finally:
        await api_client.close()
        await stop(edge)
        await stop(cloud)
    return result


def show(r: dict[str, Any]) -> str:
    line = (
        f"{r['phase']:12} {r['online']} devices online after {r['online_after']:.1f} s; {r['offered']} values/s offered; "
        f"{r['patches_per_s']:.0f} status patches/s served; API server CPU {r['apiserver_cpu']:.0f}%; "
        f"staleness p50 {r['stale_p50']:.2f} s p99 {r['stale_p99']:.2f} s"
    )
    if "trip_p50" in r:
        line += f"; desired round trip p50 {trip(r['trip_p50'])} p99 {trip(r['trip_p99'])}"
        if r.get("trips_over"):
            line += f" ({r['trips_over']} of {r['patches']} over {TRIP_LIMIT:g} s)"
    return line


def trip(seconds: float) -> str:
    return f"over {TRIP_LIMIT:g} s" if seconds >= TRIP_LIMIT else f"{seconds * 1000:.0f} ms"


async def main() -> None:
    # `timeout` or a supervisor stops us with SIGTERM: cancel, so the finally blocks stop the
    # cloud, the edge and the cluster (they were left running).
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--props", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--patches", type=int, default=100)
    parser.add_argument("--warmup-limit", type=float, default=300)
    parser.add_argument(
        "--flush-ms",
        type=int,
        default=20,
        help="the edge's batchDelayMs and the cloud's status.flushMs (default 20)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="40 devices x 4 properties, 5 s, 10 patches (the test suite's run)",
    )
    parser.add_argument(
        "--cluster",
        type=Path,
        help="use the cluster already running in this folder (hack/test-cluster.sh up DIR); left running",
    )
    parser.add_argument(
        "--only", choices=["coalesced", "uncoalesced"], help="run one phase (no headline: it compares both)"
    )
    args = parser.parse_args()
    if args.quick:
        args.devices, args.props, args.seconds, args.patches, args.warmup_limit = 40, 4, 5, 10, 120
    root = Path(tempfile.mkdtemp(prefix="k8s-status-"))
    cluster = Cluster(args.cluster, running=True) if args.cluster else Cluster(root / "cluster")
    try:
        namespace = f"bench-{os.getpid()}"  # a fresh one, also on a cluster used before
        cluster.kubectl("create", "namespace", namespace)
        t0 = time.monotonic()
        cluster.kubectl("create", "-f", "-", input=manifests(namespace, args.devices, args.props))
        print(
            f"k8s status: {args.devices} devices x {args.props} properties at 1 Hz on one edge "
            f"(made with kubectl in {time.monotonic() - t0:.1f} s); kube-apiserver 1.20.2, 2 cores shared",
            flush=True,
        )
        results = {}
        for coalesced in (True, False):
            if args.only and args.only != ("coalesced" if coalesced else "uncoalesced"):
                continue
            result = await phase(cluster, root, namespace, args, coalesced=coalesced)
            results[coalesced] = result
            print(show(result), flush=True)
        if len(results) == 2:  # the headline compares the two phases
            good, raw = results[True], results[False]
            print(
                f"headline: {args.devices}x{args.props} values/s -> {good['patches_per_s']:.0f} status patches/s with "
                f"coalescing (vs {raw['patches_per_s']:.0f} without), API server CPU {good['apiserver_cpu']:.0f}% "
                f"(vs {raw['apiserver_cpu']:.0f}%); staleness p99 {good['stale_p99']:.2f} s (target < 2 s); "
                f"desired round trip p99 {trip(good['trip_p99'])} (target < 250 ms)",
                flush=True,
            )
    except BaseException:
        print(f"the run's folder, with the cloud's and the edge's logs: {root}", file=sys.stderr)
        raise
    finally:
        cluster.down()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
