#!/usr/bin/env python3
"""Benchmark: K edge nodes reporting into one cloud process (``kubeedge cloud run``).

    python hack/bench/cloud_fanin.py                        # K = 10, 100, 1000, 5000; P = 10 updates/s per node
    python hack/bench/cloud_fanin.py --nodes 1000 --rate 20 --seconds 20
    python hack/bench/cloud_fanin.py --quick                # a small run (the test suite runs this)

Set-up, per K: a fresh ``kubeedge cloud run`` process (TLS from a trustme CA, the files source
with K devices of P properties, one per node, SQLite on disk) and, in this process, K simulated
edge nodes as real websocket clients speaking the channel: each connects with its own token,
sends ``hub/sync``, acks the objects it gets (its device and the model) and, once every node is
connected, sends one ``twin/report`` a second with P property updates (spread over the second).

Measured: the connect storm (every node connected and synced, from the first dial); the property
updates/s acked by the cloud (an ack means stored: the cloud acks after the commit) over a window
after warm-up; the report -> stored latency (send to ack) p50 / p99; the cloud's CPU (% of one
core) and RSS (peak during the window).

Baseline, in the same run: a bare websockets server in its own process (same TLS, same client)
that acks every report at once, without parsing or storing: the transport's own ceiling at the
same K, so the cost of the cloud's work shows apart from the client's and the TLS's.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import secrets
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
import trustme
import yaml
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake

from kubeedge.bus import free_port
from kubeedge_cloud.tokens import create_token

BARE_HUB = r"""
import asyncio, ssl, sys
import orjson
from websockets.asyncio.server import serve
cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
async def handler(ws):
    async for frame in ws:
        message = orjson.loads(frame)
        route = message["route"]
        if route["operation"] == "sync":
            await ws.send(orjson.dumps({"v": 1, "header": {"msg_id": "s", "parent_msg_id": "", "timestamp": 0,
                "resourceversion": ""}, "route": {"source": "bare", "group": "hub", "operation": "synced",
                "resource": ""}, "content": {"sent": 0}}).decode())
        elif route["operation"] == "report":
            await ws.send(orjson.dumps({"v": 1, "header": {"msg_id": "a", "parent_msg_id": message["header"]["msg_id"],
                "timestamp": 0, "resourceversion": ""}, "route": {"source": "bare", "group": "hub",
                "operation": "ack", "resource": ""}, "content": None}).decode())
async def main():
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    async with serve(handler, "127.0.0.1", port, ssl=tls, compression=None, max_size=None):
        print("ready", flush=True)
        await asyncio.Future()
asyncio.run(main())
"""


DIALS = 256
"""Connection attempts in flight at once from the simulated nodes (edges in the field come back
spread by their back-off's jitter, not in one instant)."""


@dataclass
class Load:
    nodes: int
    props: int
    interval: float = 1.0
    connected: list[float] = field(default_factory=list)
    latencies: list[tuple[float, float, int]] = field(default_factory=list)
    """(sent at, acked at, updates) per report."""
    errors: list[str] = field(default_factory=list)
    retries: int = 0
    dials: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(DIALS))
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)


def message(group: str, operation: str, content: Any = None, parent: str = "") -> tuple[str, bytes]:
    msg_id = secrets.token_hex(8)
    frame = orjson.dumps(
        {
            "v": 1,
            "header": {
                "msg_id": msg_id,
                "parent_msg_id": parent,
                "timestamp": int(time.time() * 1000),
                "resourceversion": "",
            },
            "route": {"source": "bench", "group": group, "operation": operation, "resource": ""},
            "content": content,
        }
    )
    return msg_id, frame


async def edge_node(load: Load, index: int, url: str, token: str, tls: ssl.SSLContext) -> None:
    node = f"node-{index}"
    key = f"default/dev-{index}"
    pending: dict[str, tuple[float, int]] = {}
    synced = asyncio.Event()
    for attempt in range(20):
        try:
            async with load.dials:
                ws = await connect(
                    f"{url}/v1/nodes/{node}/events",
                    ssl=tls,
                    additional_headers={"Authorization": f"Bearer {token}"},
                    max_size=None,
                    compression=None,
                    open_timeout=60,
                )
            break
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            # what an edge does too: a handshake the hub gave up on is tried again, with back-off
            if attempt == 19:
                load.errors.append(f"{node}: {exc}")
                return
            load.retries += 1
            await asyncio.sleep(random.uniform(0.5, 1.0) * min(10.0, 0.2 * 2**attempt))

    async def read() -> None:
        async for frame in ws:
            got = orjson.loads(frame)
            route, header = got["route"], got["header"]
            if route["group"] == "resource":
                await ws.send(message("hub", "ack", parent=header["msg_id"])[1].decode())
            elif route["operation"] == "synced":
                synced.set()
            elif route["operation"] == "ack":
                sent = pending.pop(header["parent_msg_id"], None)
                if sent is not None:
                    load.latencies.append((sent[0], time.perf_counter(), sent[1]))
            elif route["operation"] == "error":
                load.errors.append(f"{node}: {got['content']}")

    reader = asyncio.create_task(read())
    await ws.send(message("hub", "sync", {"instance": node, "versions": {}})[1].decode())
    await synced.wait()
    load.connected.append(time.perf_counter())
    await load.go.wait()
    await asyncio.sleep(random.uniform(0, load.interval))  # spreading load, not security
    value = 0
    next_at = time.perf_counter()
    while not load.stop.is_set():
        value += 1
        now_ms = int(time.time() * 1000)
        twins = {
            f"p{j}": {"reported": str(value), "reported_at": now_ms, "type": "float"}
            for j in range(load.props)
        }
        msg_id, frame = message("twin", "report", {"devices": {key: {"twins": twins}}})
        pending[msg_id] = (time.perf_counter(), load.props)
        await ws.send(frame.decode())
        next_at += load.interval
        delay = next_at - time.perf_counter()
        if delay > 0:
            try:
                await asyncio.wait_for(load.stop.wait(), delay)
            except TimeoutError:
                pass
    await ws.close()
    reader.cancel()


def manifests(folder: Path, nodes: int, props: int) -> None:
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "DeviceModel",
            "metadata": {"name": "bench-model", "namespace": "default"},
            "spec": {
                "protocol": "virtual",
                "properties": [
                    {"name": f"p{j}", "type": "FLOAT", "accessMode": "ReadOnly"} for j in range(props)
                ],
            },
        }
    ]
    for i in range(nodes):
        documents.append(
            {
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "Device",
                "metadata": {"name": f"dev-{i}", "namespace": "default"},
                "spec": {
                    "deviceModelRef": {"name": "bench-model"},
                    "nodeName": f"node-{i}",
                    "protocol": {"protocolName": "virtual"},
                    "properties": [{"name": f"p{j}"} for j in range(props)],
                },
            }
        )
    (folder / "bench.yaml").write_text(yaml.safe_dump_all(documents))


async def read_until(process: asyncio.subprocess.Process, text: str, timeout: float) -> str:
    assert process.stdout is not None
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise RuntimeError("the process exited:\n" + "".join(seen[-30:]))
            seen.append(line)
            if text in line:
                return line


background: set[asyncio.Task[None]] = set()


async def drain(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    while await process.stdout.readline():
        pass


async def measure(
    args: argparse.Namespace, workdir: Path, ca: trustme.CA, nodes: int, bare: bool
) -> dict[str, Any]:
    workdir.mkdir(parents=True)  # noqa: ASYNC240 - before anything runs
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = workdir / "hub.crt", workdir / "hub.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    secret = secrets.token_hex(32).encode()
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if bare:
        command = [sys.executable, "-c", BARE_HUB, str(cert_file), str(key_file), str(port)]
        ready = "ready"
    else:
        (workdir / "manifests").mkdir()
        manifests(workdir / "manifests", nodes, args.props)
        data = workdir / "data"
        data.mkdir()
        (data / "token.secret").write_bytes(secret)
        (data / "token.secret").chmod(0o600)
        config = {
            "listen": f"127.0.0.1:{port}",
            "tls": {"certFile": str(cert_file), "keyFile": str(key_file)},
            "dataDir": str(data),
            "source": {"kind": "files", "path": str(workdir / "manifests")},
        }
        (workdir / "cloud.yaml").write_text(yaml.safe_dump(config))
        command = [sys.executable, "-m", "kubeedge", "cloud", "run", "-c", str(workdir / "cloud.yaml")]
        ready = "cloud running"
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    try:
        await read_until(process, ready, timeout=300)
        # read to the end: a process whose output nobody reads blocks on its next log line
        drainer = asyncio.create_task(drain(process))
        background.add(drainer)
        drainer.add_done_callback(background.discard)
        info = psutil.Process(process.pid)
        tls = ssl.create_default_context()
        ca.configure_trust(tls)
        load = Load(nodes, args.props)
        expires = dt.timedelta(hours=1)
        tokens = [create_token(secret, f"node-{i}", expires) for i in range(nodes)]
        url = f"wss://localhost:{port}"
        storm_started = time.perf_counter()
        tasks = [asyncio.create_task(edge_node(load, i, url, tokens[i], tls)) for i in range(nodes)]
        try:
            async with asyncio.timeout(args.storm_timeout):
                while len(load.connected) + len(load.errors) < nodes:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise TimeoutError(
                f"{len(load.connected)} of {nodes} connected in {args.storm_timeout:g} s "
                f"({load.retries} retries)"
            ) from None
        storm = (max(load.connected) if load.connected else time.perf_counter()) - storm_started
        load.go.set()
        await asyncio.sleep(args.warmup + load.interval)
        info.cpu_percent()
        rss = info.memory_info().rss
        window_start = time.perf_counter()
        samples = []
        while time.perf_counter() - window_start < args.seconds:
            await asyncio.sleep(0.5)
            rss = max(rss, info.memory_info().rss)
            samples.append(info.cpu_percent())
        window_end = time.perf_counter()
        cpu = statistics.fmean(samples) if samples else 0.0
        load_average = os.getloadavg()[0]
        load.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        acked = [(s, a, n) for s, a, n in load.latencies if window_start <= a < window_end]
        updates = sum(n for _, _, n in acked)
        sent_in_window = [(s, a) for s, a, _ in load.latencies if window_start <= s < window_end]
        latencies = sorted((a - s) * 1000 for s, a in sent_in_window) or [float("nan")]
        return {
            "storm": storm,
            "connected": len(load.connected),
            "retries": load.retries,
            "errors": len(load.errors),
            "offered": nodes * args.props / load.interval,
            "sustained": updates / (window_end - window_start),
            "p50": latencies[len(latencies) // 2],
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "cpu": cpu,
            "rss": rss / 1e6,
            "load": load_average,
            "first_error": load.errors[0] if load.errors else "",
        }
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


def cpu_per_update(result: dict[str, Any]) -> float:
    """Microseconds of the server's CPU per stored update: comparable on a machine shared with
    other work, where the CPU share a process gets (and so its rate) depends on the neighbours."""
    return float(result["cpu"]) / 100 / max(float(result["sustained"]), 1.0) * 1e6


def line(label: str, nodes: int, result: dict[str, Any]) -> str:
    return (
        f"{label:5} K={nodes:<5} connected {result['connected']:>5} in {result['storm']:5.1f} s "
        f"({result['retries']} retries)  "
        f"offered {result['offered']:8.0f}/s  stored {result['sustained']:8.0f}/s  "
        f"p50 {result['p50']:7.1f} ms  p99 {result['p99']:7.1f} ms  "
        f"CPU {result['cpu']:5.1f} %  {cpu_per_update(result):5.1f} us/update  RSS {result['rss']:6.1f} MB"
        f"  (load {result['load']:.1f})"
        + (f"  errors {result['errors']} ({str(result['first_error'])[:80]})" if result["errors"] else "")
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", default="10,100,1000,5000", help="comma-separated K values")
    parser.add_argument(
        "--props", "--rate", type=int, default=10, dest="props", help="property updates/s per node"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring window per K")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--storm-timeout", type=float, default=240.0)
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare websockets server")
    parser.add_argument("--quick", action="store_true", help="K = 10, 100 and a short window")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.seconds, args.warmup = "10,100", 3.0, 1.0
    counts = [int(k) for k in args.nodes.split(",")]
    soft, hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
    if max(counts) * 2 + 100 > soft:
        __import__("resource").setrlimit(
            __import__("resource").RLIMIT_NOFILE, (min(hard, max(counts) * 2 + 1000), hard)
        )
    ca = trustme.CA()
    print(f"cloud fan-in: {args.props} property updates/s per node (one report/s), TLS, files source, SQLite")
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="kubeedge-bench-cloud-") as tmp:
        for nodes in counts:
            for label in ("bare", "cloud") if not args.no_baseline else ("cloud",):
                try:
                    result = await measure(
                        args, Path(tmp) / f"{label}-{nodes}", ca, nodes, bare=label == "bare"
                    )
                except (TimeoutError, RuntimeError) as exc:
                    print(f"{label:5} K={nodes:<5} did not complete: {type(exc).__name__} {exc}", flush=True)
                    continue
                print(line(label, nodes, result), flush=True)
                if label == "cloud":
                    results[nodes] = result
    if not results:
        sys.exit("no run completed")
    # the issue's targets are stated at 1,000 nodes
    top = 1000 if 1000 in results else max(results)
    best = results[top]
    print(
        f"headline: {top} nodes connected in {best['storm']:.1f} s; {best['sustained']:.0f} of "
        f"{best['offered']:.0f} updates/s offered stored, p99 report->stored {best['p99']:.0f} ms; "
        f"cloud {best['cpu']:.0f} % of a core ({cpu_per_update(best):.0f} us per update: "
        f"{1e6 / max(cpu_per_update(best), 1e-9):.0f} updates/s per core), RSS {best['rss']:.0f} MB; "
        f"load average {best['load']:.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    asyncio.run(main())
