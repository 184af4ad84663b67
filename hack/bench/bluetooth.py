#!/usr/bin/env python3
"""Benchmark: Bluetooth LE notifications and polls into the twin, on the emulated controller.

    python hack/bench/bluetooth.py             # 20 notifying at 10 Hz, 10 polled every 1 s, 3 slots
    python hack/bench/bluetooth.py --quick     # a small run (the test suite runs this)

Set-up: a child process holds the emulated air (Bumble's virtual link layer,
``kubeedge_mapper_bluetooth.testing``) with the peripherals and two HCI ports on loopback TCP:
``hci0`` for the notifying thermometers (a controller with a slot for each: they stay connected)
and ``hci1`` for the polled ones, limited to ``--slots`` connections (3: a common BLE adapter), so
the polled devices queue for a slot, connect, read and disconnect each cycle. Every peripheral's
value is the time it was set (CLOCK_MONOTONIC in µs, shared by the processes): the notifying ones
notify it ``--hz`` times a second, the polled ones update it as often. This process runs the edge
(twin module, SQLite) with the bluetooth mapper in it, ``backend: bumble`` on those ports.
Measured over a window after every device is online:

* values/s committed to the twin (notified and polled; two values of one property that arrive
  within one twin commit are stored as one, the newer), and notification -> twin commit latency
  p50 / p99 (the stored value is the notification's send time);
* connection churn: connections opened per second (the polled devices: one per poll), and the
  most held at once on the 3-slot adapter;
* CPU of this process (edge + mapper + bleak/Bumble host) and of the air process.

Baseline, in the same run: bleak alone on a port of its own (the same Bumble host stack, no edge)
subscribed to the same notifying peripherals: notifications/s received and send -> callback
latency, i.e. what the BLE stack costs before the mapper and the twin. The machines are shared:
compare the columns of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from kubeedge.config import EdgeConfig
from kubeedge.edge.core import EdgeCore

ADVERTISING_INTERVAL_MS = 250
"""As real sensors advertise (100 ms to 1 s); the tests' 20 ms, times 30 devices, would make the
mapper's scanner the load being measured."""
WRAP = 2**32


def now_us() -> int:
    return int(time.monotonic() * 1e6) % WRAP


def age_ms(stamp: int) -> float:
    return ((now_us() - stamp) % WRAP) / 1000


# --------------------------------------------------------------------------- the air's process


async def serve_air(notifying: int, polled: int, hz: float) -> None:
    from kubeedge_mapper_bluetooth.testing import EmulatedAir, EmulatedPeripheral, GattPoint

    air = EmulatedAir()
    ports = {name: await air.open_adapter(name) for name in ("hci0", "hci1", "baseline")}
    peripherals: list[EmulatedPeripheral] = []
    for i in range(notifying + polled):
        notify = i < notifying
        peripheral = EmulatedPeripheral(
            f"{'N' if notify else 'P'}-{i}",
            f"F0:F0:F0:F0:{i // 256:02X}:{i % 256:02X}",
            [GattPoint("2a6e", struct.pack("<I", now_us()), notify=notify)],
            manufacturer=None,
            advertising_interval_ms=ADVERTISING_INTERVAL_MS,
        )
        await peripheral.start(air)
        peripherals.append(peripheral)
    print(json.dumps({"ports": ports, "addresses": [p.address for p in peripherals]}), flush=True)
    period = 1.0 / hz

    async def tick(peripheral: EmulatedPeripheral, offset: float) -> None:
        await asyncio.sleep(offset)
        next_at = time.monotonic()
        while True:
            await peripheral.set("2a6e", struct.pack("<I", now_us()))
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    count = len(peripherals)
    tasks = [asyncio.create_task(tick(p, period * i / count)) for i, p in enumerate(peripherals)]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # the parent closes stdin to stop us
    for task in tasks:
        task.cancel()
    me = psutil.Process()
    cpu = me.cpu_times()
    print(
        json.dumps(
            {"connections": air.connections_made, "peak": air.peak_connections, "cpu": cpu.user + cpu.system}
        ),
        flush=True,
    )


# --------------------------------------------------------------------------- measurements


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def baseline(port: str, addresses: list[str], seconds: float) -> dict[str, float]:
    """bleak alone on the Bumble backend: subscribe to every notifying peripheral."""
    from bleak import BleakClient

    from kubeedge_mapper_bluetooth.testing import BumbleClient, BumbleRadio, uuid16

    radio = BumbleRadio(transport=port)
    latencies: list[float] = []
    received = [0]
    measuring = [False]

    def on_value(_char: Any, data: bytearray) -> None:
        if measuring[0]:
            received[0] += 1
            latencies.append(age_ms(struct.unpack("<I", bytes(data))[0]))

    clients = []
    try:
        for address in addresses:
            client = BleakClient(address, backend=BumbleClient, radio=radio, timeout=20)
            await client.connect()
            await client.start_notify(uuid16("2a6e"), on_value)
            clients.append(client)
        me = psutil.Process()
        cpu0, t0 = me.cpu_times(), time.monotonic()
        measuring[0] = True
        await asyncio.sleep(seconds)
        measuring[0] = False
        elapsed = time.monotonic() - t0
        cpu1 = me.cpu_times()
        return {
            "values/s": received[0] / elapsed,
            "p50 ms": statistics.median(latencies) if latencies else float("nan"),
            "p99 ms": percentile(latencies, 0.99),
            "CPU %": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / elapsed,
        }
    finally:
        for client in clients:
            await client.disconnect()
        await radio.close()


def manifests(folder: Path, addresses: list[str], notifying: int, cycle_ms: int) -> None:
    import yaml

    model = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "stamp", "namespace": "bench"},
        "spec": {
            "protocol": "bluetooth",
            "properties": [{"name": "sent", "type": "INT", "accessMode": "ReadOnly"}],
        },
    }
    documents: list[dict[str, Any]] = [model]
    for i, address in enumerate(addresses):
        notify = i < notifying
        visitor: dict[str, Any] = {"characteristicUUID": "2a6e", "format": "<I"}
        if notify:
            visitor["notify"] = True
        documents.append(
            {
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "Device",
                "metadata": {"name": f"{'n' if notify else 'p'}-{i}", "namespace": "bench"},
                "spec": {
                    "deviceModelRef": {"name": "stamp"},
                    "protocol": {
                        "protocolName": "bluetooth",
                        "configData": {
                            "macAddress": address,
                            "adapter": "hci0" if notify else "hci1",
                            "connectTimeout": 30,
                        },
                    },
                    "properties": [
                        {
                            "name": "sent",
                            "collectCycle": cycle_ms,
                            "visitors": {"protocolName": "bluetooth", "configData": visitor},
                        }
                    ],
                },
            }
        )
    (folder / "bench.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))


async def through_the_edge(
    ports: dict[str, str], addresses: list[str], args: argparse.Namespace, workdir: Path
) -> dict[str, float]:
    from kubeedge_mapper_bluetooth import adapter as adapters

    folder = workdir / "manifests"
    folder.mkdir()
    manifests(folder, addresses, args.notifying, args.cycle_ms)
    mapper = {
        "backend": "bumble",
        "adapters": {
            "hci0": {"transport": ports["hci0"], "maxConnections": max(args.notifying, 1)},
            "hci1": {"transport": ports["hci1"], "maxConnections": args.slots},
        },
        "readTimeout": 30,
    }
    config = EdgeConfig.model_validate(
        {
            "node": "bench",
            "bus": {"url": "embedded", "listen": "127.0.0.1:0"},
            "dataDir": str(workdir / "data"),
            "manifests": str(folder),
            "mappers": {"bluetooth": mapper},
        }
    )
    core = EdgeCore(config)
    await core.start()
    twin = core.module("twin")
    notified: list[float] = []
    polled = [0]
    measuring = [False]

    def on_commit(twins: set[tuple[str, str]], _devices: set[str]) -> None:
        if not measuring[0]:
            return
        for key, prop in twins:
            record = twin.devices[key].twins.get(prop)
            if record is None or not record.actual:
                continue
            if key.startswith("bench/n-"):
                notified.append(age_ms(int(record.actual)))
            else:
                polled[0] += 1

    twin.add_change_listener(on_commit)
    try:
        total = len(addresses)
        deadline = time.monotonic() + 120
        while sum(1 for d in twin.devices.values() if d.state == "online") < total:
            if time.monotonic() > deadline:
                states = {k: d.state for k, d in twin.devices.items()}
                raise RuntimeError(f"not every device online after 120 s: {states}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(args.warmup)
        open_adapters = adapters.adapters()
        polled_adapter = open_adapters["hci1"]
        connects0 = polled_adapter.connects
        polled_adapter.peak = polled_adapter.in_use
        me = psutil.Process()
        cpu0, t0 = me.cpu_times(), time.monotonic()
        measuring[0] = True
        await asyncio.sleep(args.seconds)
        measuring[0] = False
        elapsed = time.monotonic() - t0
        cpu1 = me.cpu_times()
        return {
            "notified/s": len(notified) / elapsed,
            "polled/s": polled[0] / elapsed,
            "p50 ms": statistics.median(notified) if notified else float("nan"),
            "p99 ms": percentile(notified, 0.99),
            "connections/s": (polled_adapter.connects - connects0) / elapsed,
            "peak slots": float(polled_adapter.peak),
            "CPU %": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / elapsed,
        }
    finally:
        await core.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notifying", type=int, default=20)
    parser.add_argument("--polled", type=int, default=10)
    parser.add_argument("--hz", type=float, default=10.0, help="notifications (and value changes) per second")
    parser.add_argument("--cycle-ms", type=int, default=1000, help="collectCycle of the polled devices")
    parser.add_argument(
        "--slots", type=int, default=3, help="connection slots of the polled devices' adapter"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="6 notifying at 5 Hz, 4 polled, 2 slots, 3 s")
    parser.add_argument("--serve-air", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.notifying, args.polled, args.hz, args.slots, args.seconds, args.warmup = 6, 4, 5.0, 2, 3.0, 1.0
    if args.serve_air:
        await serve_air(args.notifying, args.polled, args.hz)
        return

    air = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-air",
        "--notifying",
        str(args.notifying),
        "--polled",
        str(args.polled),
        "--hz",
        str(args.hz),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert air.stdout is not None and air.stdin is not None
    try:
        started = json.loads(await asyncio.wait_for(air.stdout.readline(), 60))
        ports, addresses = started["ports"], started["addresses"]
        air_process = psutil.Process(air.pid)
        base = await baseline(ports["baseline"], addresses[: args.notifying], args.seconds)
        air_cpu0, t0 = air_process.cpu_times(), time.monotonic()
        with tempfile.TemporaryDirectory(prefix="bench-bluetooth-") as tmp:
            edge = await through_the_edge(ports, addresses, args, Path(tmp))
        air_cpu1 = air_process.cpu_times()
        air_cpu = (
            100
            * ((air_cpu1.user + air_cpu1.system) - (air_cpu0.user + air_cpu0.system))
            / (time.monotonic() - t0)
        )
    finally:
        air.stdin.close()
        try:
            await asyncio.wait_for(air.wait(), 10)
        except TimeoutError:
            air.kill()
            await air.wait()
    offered = args.notifying * args.hz
    print(
        f"bluetooth: {args.notifying} notifying at {args.hz:g} Hz on hci0 (a slot each), {args.polled} polled"
        f" every {args.cycle_ms} ms on hci1 ({args.slots} slots); {args.seconds:g} s window; offered"
        f" {offered:g} notifications/s"
    )
    print(f"{'':28}{'values/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU %':>8}")
    print(
        f"{'bleak alone (baseline)':28}{base['values/s']:>10.1f}{base['p50 ms']:>9.1f}{base['p99 ms']:>9.1f}"
        f"{base['CPU %']:>8.1f}"
    )
    print(
        f"{'mapper -> twin (notified)':28}{edge['notified/s']:>10.1f}{edge['p50 ms']:>9.1f}{edge['p99 ms']:>9.1f}"
        f"{edge['CPU %']:>8.1f}"
    )
    print(f"{'mapper -> twin (polled)':28}{edge['polled/s']:>10.1f}")
    print(
        f"connection churn on hci1: {edge['connections/s']:.1f} connections/s, at most {edge['peak slots']:.0f}"
        f" of {args.slots} slots held at once; the air process used {air_cpu:.1f} % CPU"
    )
    print(
        f"headline: {edge['notified/s'] + edge['polled/s']:.0f} values/s into the twin"
        f" ({edge['notified/s']:.0f} notified of {offered:g} offered, {edge['polled/s']:.1f} polled"
        f" through {args.slots} slots), notify -> twin p99 {edge['p99 ms']:.1f} ms"
        f" (bleak alone {base['p99 ms']:.1f} ms), {edge['connections/s']:.1f} connections/s"
    )


if __name__ == "__main__":
    asyncio.run(main())
