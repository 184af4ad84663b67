#!/usr/bin/env python3
"""Benchmark: Zigbee attribute reports and polls into the twin, on the emulated coordinator.

    python hack/bench/zigbee.py              # 100 devices reporting every 5 s, 20 polled every 1 s
    python hack/bench/zigbee.py --quick      # a small run (the test suite runs this)

Set-up, in this process: the emulated air of ``kubeedge_mapper_zigbee.testing`` with the devices
(ZDO/ZCL bytes packed by hand), paired into a fresh zigpy database, then an edge (twin module,
SQLite) with the zigbee mapper on ``radio: emulated``: everything above the radio (zigpy's ZCL,
TSN matching, report events, the mapper, the runtime, the twin) is real. Each reporting device
has Configure Reporting sent by the mapper and reports its temperature attribute every
``--period`` seconds (a counter, so each report is a new value, spread evenly over the period);
the polled devices are read on a ``--cycle-ms`` collectCycle. Measured over a window after every
device is online:

* reports/s committed to the twin, and report -> twin commit latency p50 / p99 (from the moment
  the emulated device sends the Report Attributes frame to the twin's commit of that value);
* polled values/s committed (a polled device's value changes every cycle);
* CPU and RSS of this process (edge + mapper + zigpy + the emulated devices, which are cheap: a
  struct.pack per report).

The machines are shared: compare runs made one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from kubeedge.config import EdgeConfig
from kubeedge.edge.core import EdgeCore
from kubeedge_mapper_zigbee import testing

AIR = "bench"


def ieee(i: int) -> str:
    return f"00:0d:6f:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def manifests(folder: Path, reporting: int, polled: int, cycle_ms: int) -> None:
    def model(name: str, visitor: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "DeviceModel",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {
                "protocol": "zigbee",
                "properties": [
                    {
                        "name": "counter",
                        "type": "INT",
                        "accessMode": "ReadOnly",
                        "visitors": {"protocolName": "zigbee", "configData": visitor},
                    }
                ],
            },
        }

    temperature = {"cluster": "temperature", "attribute": "measured_value"}
    documents = [
        model("reporting", {**temperature, "reporting": {"minInterval": 0, "maxInterval": 600}}),
        model("polled", temperature),
    ]
    for i in range(reporting + polled):
        kind = "r" if i < reporting else "p"
        documents.append(
            {
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "Device",
                "metadata": {"name": f"{kind}-{i:03d}", "namespace": "bench"},
                "spec": {
                    "deviceModelRef": {"name": "reporting" if kind == "r" else "polled"},
                    "protocol": {"protocolName": "zigbee", "configData": {"ieee": ieee(i)}},
                    "properties": [{"name": "counter", "collectCycle": cycle_ms}],
                },
            }
        )
    (folder / "bench.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    total = args.reporting + args.polled
    devices = [testing.EmulatedDevice.thermo_plug(ieee(i), nwk=0x1000 + i) for i in range(total)]
    settings = {"radio": "emulated", "path": f"emulated://{AIR}", "database": str(workdir / "zigbee.db")}
    t0 = time.monotonic()
    await testing.pair(settings, *devices)
    paired_s = time.monotonic() - t0
    folder = workdir / "manifests"
    folder.mkdir()
    manifests(folder, args.reporting, args.polled, args.cycle_ms)
    config = EdgeConfig.model_validate(
        {
            "node": "bench",
            "bus": {"url": "embedded", "listen": "127.0.0.1:0"},
            "dataDir": str(workdir / "data"),
            "manifests": str(folder),
            "mappers": {"zigbee": {**settings, "readTimeout": 30}},
        }
    )
    core = EdgeCore(config)
    await core.start()
    twin = core.module("twin")
    sent: dict[tuple[int, int], float] = {}
    latencies: list[float] = []
    polled = [0]
    measuring = [False]

    def on_commit(twins: set[tuple[str, str]], _devices: set[str]) -> None:
        if not measuring[0]:
            return
        now = time.monotonic()
        for key, prop in twins:
            record = twin.devices[key].twins.get(prop)
            if record is None or not record.actual:
                continue
            name = key.split("/", 1)[1]
            if name.startswith("r-"):
                at = sent.pop((int(name[2:]), int(record.actual)), None)
                if at is not None:
                    latencies.append((now - at) * 1000)
            else:
                polled[0] += 1

    twin.add_change_listener(on_commit)

    async def report(i: int, device: testing.EmulatedDevice) -> None:
        await asyncio.sleep(args.period * i / max(args.reporting, 1))  # spread over the period
        counter = 0
        next_at = time.monotonic()
        while True:
            counter = (counter + 1) % 30000
            sent[(i, counter)] = time.monotonic()
            device.set(1, 0x0402, 0x0000, counter)
            next_at += args.period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def change(device: testing.EmulatedDevice) -> None:
        """A polled device's value changes every cycle (no report: reporting is not configured)."""
        counter = 0
        while True:
            counter = (counter + 1) % 30000
            device.set(1, 0x0402, 0x0000, counter)
            await asyncio.sleep(args.cycle_ms / 1000)

    tasks: list[asyncio.Task[None]] = []
    try:
        deadline = time.monotonic() + 180
        while sum(1 for d in twin.devices.values() if d.state == "online") < total:
            if time.monotonic() > deadline:
                states = {k: d.state for k, d in twin.devices.items() if d.state != "online"}
                raise RuntimeError(f"not every device online after 180 s: {states}")
            await asyncio.sleep(0.2)
        configured = sum(1 for d in devices[: args.reporting] if (1, 0x0402, 0x0000) in d.reporting)
        if configured != args.reporting:
            raise RuntimeError(f"reporting configured on {configured} of {args.reporting} devices")
        tasks = [asyncio.create_task(report(i, d)) for i, d in enumerate(devices[: args.reporting])]
        tasks += [asyncio.create_task(change(d)) for d in devices[args.reporting :]]
        await asyncio.sleep(args.warmup)
        me = psutil.Process()
        cpu0, start = me.cpu_times(), time.monotonic()
        measuring[0] = True
        await asyncio.sleep(args.seconds)
        measuring[0] = False
        elapsed = time.monotonic() - start
        cpu1 = me.cpu_times()
        return {
            "paired s": paired_s,
            "reports/s": len(latencies) / elapsed,
            "expected/s": args.reporting / args.period,
            "polled/s": polled[0] / elapsed,
            "p50 ms": statistics.median(latencies) if latencies else float("nan"),
            "p99 ms": percentile(latencies, 0.99),
            "CPU %": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / elapsed,
            "RSS MiB": me.memory_info().rss / 2**20,
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await core.stop()
        testing.AIRS.pop(AIR, None)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reporting", type=int, default=100)
    parser.add_argument("--polled", type=int, default=20)
    parser.add_argument("--period", type=float, default=5.0, help="seconds between a device's reports")
    parser.add_argument("--cycle-ms", type=int, default=1000, help="collectCycle of the polled devices")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=6.0)
    parser.add_argument("--quick", action="store_true", help="10 reporting every 1 s, 4 polled, 3 s")
    args = parser.parse_args()
    if args.quick:
        args.reporting, args.polled, args.period, args.seconds, args.warmup = 10, 4, 1.0, 3.0, 1.5
    with tempfile.TemporaryDirectory() as tmp:
        result = await run(args, Path(tmp))
    print(
        f"{args.reporting} devices reporting every {args.period:g}s, {args.polled} polled every {args.cycle_ms} ms"
    )
    print(f"paired (joined and interviewed) in {result['paired s']:.1f}s")
    print(f"{'':28}{'values/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    print(
        f"{'reports -> twin':28}{result['reports/s']:>10.1f}{result['p50 ms']:>9.1f}{result['p99 ms']:>9.1f}"
        f"   (sent: {result['expected/s']:.1f}/s)"
    )
    print(f"{'polls -> twin':28}{result['polled/s']:>10.1f}")
    print(
        f"process (edge + mapper + emulated devices): CPU {result['CPU %']:.0f}%, RSS {result['RSS MiB']:.0f} MiB"
    )
    print(
        f"headline: {result['reports/s']:.1f} reports/s into the twin"
        f" (of {result['expected/s']:.1f}/s sent by {args.reporting} devices) plus"
        f" {result['polled/s']:.1f} polled values/s, report -> twin p99 {result['p99 ms']:.1f} ms,"
        f" CPU {result['CPU %']:.0f}%, RSS {result['RSS MiB']:.0f} MiB"
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
