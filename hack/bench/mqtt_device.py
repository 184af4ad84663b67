#!/usr/bin/env python3
"""Benchmark: MQTT devices publishing JSON through Mosquitto, into the twin by the MQTT mapper.

    python hack/bench/mqtt_device.py                     # 500 devices at 2 Hz, 10 s window
    python hack/bench/mqtt_device.py --devices 1000 --hz 2 --seconds 20
    python hack/bench/mqtt_device.py --quick             # a small run (the test suite runs this)

Set-up: Mosquitto is both the devices' broker and the edge's bus. A publisher process plays N
devices, each publishing ``{"sent": <wall-clock ms>, "temperature": ..., "seq": n}`` on
``bench/dev-NNNNN/state`` at ``--hz``, spread evenly. The edge runs in this process (twin module,
SQLite), pinned to one core; ``kubeedge mapper run mqtt`` runs as its own process on the other,
one Device per simulated device, one property (``sent``, the publish time) each. Measured over
a window after every device has reported:

* values/s stored in the twin, and the latency from the device's publish to the twin's commit
  (the stored value is the publish time: read back after each commit), p50 / p99; and the
  edge's part of it (the mapper's twin update, stamped when the value reached the mapper, to
  the commit: ``edge p99``);
* CPU (% of one core) and RSS of the mapper process, and of the edge.

Baseline, in the same run and on the same load: a bare paho subscriber process on ``bench/+/state``
(pinned to the mapper's core) that only parses each message and timestamps it (publish → received
latency, its CPU): what the broker and a client cost before any mapper work. The machines these
run on are shared: compare the two columns of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

from kubeedge.config import EdgeConfig
from kubeedge.edge.core import EdgeCore
from kubeedge.testing import Mosquitto

PUBLISHER = r"""
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, devices, hz, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-devices")
client.max_queued_messages_set(0)
client.connect(host, port)
client.loop_start()
period = 1.0 / hz
start = time.monotonic()
sent = 0
seq = 0
while time.monotonic() - start < seconds:
    # every device publishes once a period, device d at offset d/devices of it
    elapsed = time.monotonic() - start
    due = int(elapsed / period * devices)
    while sent < due:
        d = sent % devices
        seq = sent // devices
        payload = json.dumps({"sent": time.time() * 1000, "temperature": 20 + (seq % 50) / 10, "seq": seq})
        client.publish(f"bench/dev-{d:05d}/state", payload, 0)
        sent += 1
    time.sleep(0.002)
client.loop_stop()
print(sent, flush=True)
"""

SUBSCRIBER = r"""
import json, sys, time, resource
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, seconds, warmup = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
latencies = []
t_start = [None]
def on_message(client, userdata, message):
    now = time.time() * 1000
    if t_start[0] is None or time.monotonic() < t_start[0]:
        return
    latencies.append(now - json.loads(message.payload)["sent"])
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare-subscriber")
client.on_message = on_message
client.connect(host, port)
client.subscribe("bench/+/state", 0)
client.loop_start()
print("ready", flush=True)
time.sleep(warmup)
t_start[0] = time.monotonic()
usage0 = resource.getrusage(resource.RUSAGE_SELF)
time.sleep(seconds)
usage1 = resource.getrusage(resource.RUSAGE_SELF)
client.loop_stop()
cpu = (usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime) / seconds * 100
latencies.sort()
print(json.dumps({
    "values/s": len(latencies) / seconds,
    "p50 ms": latencies[len(latencies) // 2] if latencies else float("nan"),
    "p99 ms": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
    "CPU %": cpu,
    "RSS MB": usage1.ru_maxrss / 1024,
}), flush=True)
"""


def manifests(folder: Path, devices: int, broker: str) -> None:
    """One model, one Device per simulated device (written as text: building them with PyYAML
    would inflate this process's memory, which is the edge's and is measured)."""
    model = (
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\n"
        "metadata: {name: bench-sensor, namespace: bench}\nspec:\n  protocol: mqtt\n"
        f'  protocolConfigData: {{broker: "{broker}"}}\n'
        "  properties:\n"
        "    - {name: sent, type: DOUBLE, accessMode: ReadOnly, visitors: {protocolName: mqtt, "
        'configData: {stateTopic: "bench/{name}/state", path: sent}}}\n'
    )
    with (folder / "bench.yaml").open("w") as out:
        out.write(model)
        for d in range(devices):
            out.write(
                "---\napiVersion: devices.kubeedge.io/v1beta1\nkind: Device\n"
                f"metadata: {{name: dev-{d:05d}, namespace: bench}}\nspec:\n"
                "  deviceModelRef: {name: bench-sensor}\n  protocol: {protocolName: mqtt}\n"
                "  properties:\n    - {name: sent}\n"
            )


async def baseline(broker: Mosquitto, args: argparse.Namespace) -> dict[str, float]:
    """The bare subscriber on the same load."""
    host, port = "127.0.0.1", broker.port
    subscriber = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SUBSCRIBER,
        host,
        str(port),
        str(args.seconds),
        str(args.warmup),
        stdout=asyncio.subprocess.PIPE,
    )
    assert subscriber.stdout is not None
    if args.pin:  # on the core the mapper gets, so both see the same machine
        os.sched_setaffinity(subscriber.pid, {1})
    await subscriber.stdout.readline()  # ready
    publisher = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PUBLISHER,
        host,
        str(port),
        str(args.devices),
        str(args.hz),
        str(args.warmup + args.seconds + 1),
        stdout=asyncio.subprocess.PIPE,
    )
    line = await subscriber.stdout.readline()
    await subscriber.wait()
    await publisher.communicate()
    result: dict[str, float] = json.loads(line)
    return result


async def pipeline(broker: Mosquitto, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    folder = workdir / "manifests"
    folder.mkdir(parents=True)
    manifests(folder, args.devices, broker.url)
    config = EdgeConfig.model_validate(
        {
            "node": "bench",
            "bus": {"url": broker.url},
            "dataDir": str(workdir / "data"),
            "manifests": str(folder),
            "mappers": {},
        }
    )
    core = EdgeCore(config)
    await core.start()
    twin = core.module("twin")
    latencies: list[float] = []
    stored = [0]
    measuring = [False]

    def on_commit(twins: set[tuple[str, str]], _devices: set[str]) -> None:
        if not measuring[0]:
            return
        now = time.time() * 1000
        for key, prop in twins:
            record = twin.devices[key].twins.get(prop)
            if record is not None and record.actual:
                stored[0] += 1
                latencies.append(now - float(record.actual))

    twin.add_change_listener(on_commit)
    mapper_config = workdir / "mapper.yaml"
    mapper_config.write_text(yaml.safe_dump({"node": "bench", "bus": {"url": broker.url}}))
    with (workdir / "mapper.log").open("wb") as mapper_log:
        mapper = subprocess.Popen(
            [
                sys.executable,
                *(["-m", "cProfile", "-o", args.profile] if args.profile else []),
                "-m",
                "kubeedge",
                "mapper",
                "run",
                "mqtt",
                "-c",
                str(mapper_config),
            ],
            stdout=mapper_log,
            stderr=subprocess.STDOUT,
        )
    if args.pin:
        os.sched_setaffinity(0, {0})
        os.sched_setaffinity(mapper.pid, {1})
    publisher = None
    try:
        deadline = time.monotonic() + 60
        while sum(1 for d in twin.devices.values() if d.state == "online") < args.devices:
            if time.monotonic() > deadline:
                raise RuntimeError(f"devices online: not all after 60 s; see {workdir / 'mapper.log'}")
            await asyncio.sleep(0.2)
        publisher = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PUBLISHER,
            "127.0.0.1",
            str(broker.port),
            str(args.devices),
            str(args.hz),
            str(args.warmup + args.seconds + 1),
            stdout=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(args.warmup)
        me, other = psutil.Process(), psutil.Process(mapper.pid)
        threads0 = {t.id: t.user_time + t.system_time for t in other.threads()}
        cpu0, cpu_m0, t0 = me.cpu_times(), other.cpu_times(), time.monotonic()
        measuring[0] = True
        twin.stats.latencies_ms.clear()
        rss_peak = 0
        while time.monotonic() - t0 < args.seconds:
            await asyncio.sleep(0.25)
            rss_peak = max(rss_peak, other.memory_info().rss)
        measuring[0] = False
        elapsed = time.monotonic() - t0
        cpu1, cpu_m1 = me.cpu_times(), other.cpu_times()
        threads1 = {t.id: t.user_time + t.system_time for t in other.threads()}
        main_thread = 100 * (threads1.get(mapper.pid, 0) - threads0.get(mapper.pid, 0)) / elapsed
        await publisher.communicate()
        latencies.sort()
        edge_part = sorted(twin.stats.latencies_ms)
        return {
            "values/s": stored[0] / elapsed,
            "p50 ms": statistics.median(latencies) if latencies else float("nan"),
            "p99 ms": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
            "edge p99 ms": edge_part[int(len(edge_part) * 0.99)] if edge_part else float("nan"),
            "CPU %": 100 * ((cpu_m1.user + cpu_m1.system) - (cpu_m0.user + cpu_m0.system)) / elapsed,
            "RSS MB": rss_peak / 2**20,
            "event loop %": main_thread,
            "edge CPU %": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / elapsed,
        }
    finally:
        if publisher is not None and publisher.returncode is None:
            publisher.kill()
            await publisher.wait()
        mapper.terminate()
        try:
            mapper.wait(10)
        except subprocess.TimeoutExpired:
            mapper.kill()
        await core.stop()
        if args.pin:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


async def main() -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--hz", type=float, default=2.0, help="messages per device per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin edge and mapper to cores"
    )
    parser.add_argument("--quick", action="store_true", help="a small, short run (smoke test)")
    parser.add_argument("--profile", metavar="FILE", help="run the mapper under cProfile, its stats to FILE")
    args = parser.parse_args()
    if args.quick:
        args.devices, args.seconds, args.warmup = 50, 2, 1
    if (os.cpu_count() or 1) < 2:
        args.pin = False
    offered = args.devices * args.hz
    print(
        f"mqtt devices: {args.devices} devices x {args.hz:g} Hz ({offered:,.0f} JSON messages/s offered) "
        f"through Mosquitto, {args.seconds:g} s window"
    )
    broker = Mosquitto().start()
    workdir = Path(tempfile.mkdtemp(prefix="kubeedge-bench-mqtt-"))
    try:
        bare = await baseline(broker, args)
        mapped = await pipeline(broker, args, workdir)
    finally:
        broker.close()
        shutil.rmtree(workdir, ignore_errors=True)
    rows: list[tuple[str, dict[str, Any]]] = [("bare subscriber", bare), ("mqtt mapper", mapped)]
    keys = ["values/s", "p50 ms", "p99 ms", "edge p99 ms", "CPU %", "event loop %", "RSS MB", "edge CPU %"]
    print(f"{'':12}" + "".join(f"{name:>18}" for name, _ in rows))
    for key in keys:
        print(f"{key:12}" + "".join(f"{r[key]:>18,.1f}" if key in r else f"{'-':>18}" for _, r in rows))
    print(
        f"headline: {args.devices} MQTT devices at {args.hz:g} Hz: {mapped['values/s']:,.0f} values/s into the "
        f"twin, p99 {mapped['p99 ms']:.1f} ms device publish -> twin stored, mapper CPU {mapped['CPU %']:.1f} % "
        f"of a core, RSS {mapped['RSS MB']:.0f} MB (bare subscriber: p99 {bare['p99 ms']:.1f} ms, "
        f"CPU {bare['CPU %']:.1f} %)"
    )


if __name__ == "__main__":
    asyncio.run(main())
