#!/usr/bin/env python3
"""Benchmark: BACnet polled ReadProperty vs ReadPropertyMultiple vs COV, on the wire.

    python hack/bench/bacnet.py                 # 20 devices x 10 objects
    python hack/bench/bacnet.py --quick

The devices (real bacpypes3 device applications, one UDP port each, on loopback) run in a child
process that counts every datagram their sockets send and receive, and changes each object's
present value every ``--change-every`` seconds (staggered), writing the time of the change into
the value, so the age of a value is known when it arrives. This process runs the BACnet driver
for every device over one shared local application, as the mapper does. All in one run:

* **throughput**: every device read as fast as it answers, with ReadProperty (one request per
  property) and with ReadPropertyMultiple (one request per device): properties/s, datagrams per
  property, CPU per 1,000 properties (on loopback both sides are pure-Python bacpypes3: this is
  CPU-bound, by its encoding cost per property, not by round trips as on a network);
* **equal freshness**: every value at most ``--freshness`` seconds old: polling every
  ``--freshness`` s with ReadProperty and with ReadPropertyMultiple, against COV subscriptions
  (a notification per change, confirmed and unconfirmed): datagrams/s on the wire, CPU, and how
  long after a change the mapper sees it (p50/p99).

Headline last: COV vs polled ReadProperty packets, and RPM vs ReadProperty properties/s.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil

from kubeedge import Device, DeviceModel, Property
from kubeedge_mapper_bacnet.config import BacnetConfig, BacnetVisitor
from kubeedge_mapper_bacnet.driver import BacnetDriver
from kubeedge_mapper_bacnet.simulator import BacnetDevice, free_udp_port

WRAP = 1000.0
"""Values carry the change time modulo this (a Real is float32: about 0.1 ms of precision)."""


def stamp() -> float:
    return time.monotonic() % WRAP


def age(value: float) -> float:
    return (time.monotonic() - value) % WRAP


# --------------------------------------------------------------------------- the devices' process


async def serve(devices: int, objects: int, change_every: float) -> None:
    from bacpypes3.local.analog import AnalogInputObject

    simulated = []
    for d in range(devices):
        made = [
            AnalogInputObject(
                objectIdentifier=("analogInput", i),
                objectName=f"point-{i}",
                presentValue=stamp(),
                covIncrement=0.0,
                units="degreesCelsius",
                statusFlags=[0, 0, 0, 0],
            )
            for i in range(objects)
        ]
        simulated.append(await BacnetDevice(instance=2000 + d, objects=made).start())
    print(" ".join(s.address for s in simulated), flush=True)

    def quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # a mode's subscriptions end without cancelling: notifications until they lapse are refused
        if "unknown-subscription" not in str(context.get("exception")):
            loop.default_exception_handler(context)

    asyncio.get_running_loop().set_exception_handler(quiet)

    async def change() -> None:
        points = [(s, i) for s in simulated for i in range(objects)]
        gap = change_every / len(points)
        while True:
            for s, i in points:  # staggered: one change every `gap` seconds, each point once per period
                s.get("analog-input", i).presentValue = stamp()
                await asyncio.sleep(gap)

    changer = asyncio.create_task(change())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"count":
            print(sum(s.received for s in simulated), sum(s.sent for s in simulated), flush=True)

    changer.cancel()


# --------------------------------------------------------------------------- the mapper's side


def drivers_for(addresses: list[str], local: int, read_multiple: bool) -> list[BacnetDriver]:
    drivers = []
    for n, address in enumerate(addresses):
        config = BacnetConfig.model_validate(
            {
                "deviceInstance": 2000 + n,
                "address": address,
                "localAddress": f"127.0.0.1:{local}",
                "apduTimeout": 3000,
                "apduRetries": 1,  # a datagram lost to a burst (200 subscriptions at once) is resent
                "readMultiple": read_multiple,
            }
        )
        device = Device.model_validate({"metadata": {"name": f"ahu-{n}"}})
        model = DeviceModel.model_validate({"metadata": {"name": "ahu"}})
        drivers.append(BacnetDriver(device, model, config, BacnetDriver.settings_model()))
    return drivers


def properties(objects: int, cov: bool, confirmed: bool = True) -> list[Property[BacnetVisitor]]:
    return [
        Property(
            f"p{i}",
            "float",
            BacnetVisitor.model_validate(
                {
                    "objectType": "analogInput",
                    "objectInstance": i,
                    "cov": cov,
                    "covLifetime": 300,
                    "covConfirmed": confirmed,
                }
            ),
        )
        for i in range(objects)
    ]


class Changes:
    """The delay from a change on the device to the mapper seeing it (a value it had not seen)."""

    def __init__(self) -> None:
        self.last: dict[tuple[int, str], float] = {}
        self.delays: list[float] = []

    def seen(self, device: int, prop: str, value: Any) -> None:
        if not isinstance(value, float):
            return
        key = (device, prop)
        if key in self.last and self.last[key] != value:
            self.delays.append(age(value))
        self.last[key] = value


class Devices:
    """The child process with the devices, and its datagram counters."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        assert process.stdout is not None
        self.addresses = process.stdout.readline().split()
        self.psutil = psutil.Process(process.pid)

    def datagrams(self) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        received, sent = self.process.stdout.readline().split()
        return int(received) + int(sent)

    def cpu(self) -> float:
        times = self.psutil.cpu_times()
        return float(times.user + times.system)


def cpu() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


async def measure(devices: Devices, seconds: float, work: Any) -> dict[str, float]:
    """Run ``work(deadline)`` (it returns how many properties it delivered): rates and costs."""
    datagrams0, cpu0, device_cpu0, start = devices.datagrams(), cpu(), devices.cpu(), time.monotonic()
    delivered = await work(start + seconds)
    elapsed = time.monotonic() - start
    datagrams = devices.datagrams() - datagrams0
    return {
        "properties/s": delivered / elapsed,
        "datagrams/s": datagrams / elapsed,
        "datagrams/property": datagrams / max(delivered, 1),
        "mapper CPU %": (cpu() - cpu0) / elapsed * 100,
        "devices CPU %": (devices.cpu() - device_cpu0) / elapsed * 100,
        "_delivered": delivered,
    }


async def connect(drivers: list[BacnetDriver]) -> None:
    for driver in drivers:
        await driver.connect()


async def close(drivers: list[BacnetDriver]) -> None:
    for driver in drivers:
        await driver.close()


async def throughput(devices: Devices, objects: int, seconds: float, read_multiple: bool) -> dict[str, float]:
    drivers = drivers_for(devices.addresses, free_udp_port(), read_multiple)
    props = properties(objects, cov=False)
    await connect(drivers)

    async def work(deadline: float) -> int:
        counts = [0] * len(drivers)

        async def loop(n: int, driver: BacnetDriver) -> None:
            while time.monotonic() < deadline:
                results = await driver.read_many(props)
                bad = [r for r in results if isinstance(r, BaseException)]
                if bad:
                    raise bad[0]
                counts[n] += len(results)

        await asyncio.gather(*(loop(n, d) for n, d in enumerate(drivers)))
        return sum(counts)

    try:
        result = await measure(devices, seconds, work)
    finally:
        await close(drivers)
    result["mapper CPU ms/1k props"] = result["mapper CPU %"] * 10 / max(result["properties/s"], 1e-9)
    return result


async def polled(
    devices: Devices, objects: int, seconds: float, freshness: float, read_multiple: bool
) -> dict[str, float]:
    drivers = drivers_for(devices.addresses, free_udp_port(), read_multiple)
    props = properties(objects, cov=False)
    await connect(drivers)
    changes = Changes()
    counts = [0]
    stop = asyncio.Event()

    async def loop(n: int, driver: BacnetDriver) -> None:
        await asyncio.sleep(freshness * n / len(drivers))  # spread the cycles, as the runtime does
        while not stop.is_set():
            cycle = time.monotonic()
            results = await driver.read_many(props)
            for prop, value in zip(props, results, strict=True):
                changes.seen(n, prop.name, value)
            counts[0] += len(results)
            await asyncio.sleep(max(0.0, freshness - (time.monotonic() - cycle)))

    tasks = [asyncio.create_task(loop(n, d)) for n, d in enumerate(drivers)]
    await asyncio.sleep(freshness)  # every device polling before the measurement starts
    changes.delays.clear()

    async def work(deadline: float) -> int:
        start = counts[0]
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        for task in tasks:
            if task.done():
                task.result()
        return counts[0] - start

    try:
        result = await measure(devices, seconds, work)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close(drivers)
    add_delays(result, changes.delays)
    return result


async def cov(devices: Devices, objects: int, seconds: float, confirmed: bool) -> dict[str, float]:
    drivers = drivers_for(devices.addresses, free_udp_port(), read_multiple=True)
    props = properties(objects, cov=True, confirmed=confirmed)
    await connect(drivers)
    changes = Changes()
    counts = [0]

    def emitter(n: int) -> Any:
        def emit(name: str, value: Any) -> None:
            if isinstance(value, float):
                counts[0] += 1
                changes.seen(n, name, value)

        return emit

    tasks = [asyncio.create_task(d.subscribe(props, emitter(n))) for n, d in enumerate(drivers)]
    # wait for every first notification (the subscriptions' initial values) before measuring
    while counts[0] < len(drivers) * objects and all(not t.done() for t in tasks):
        await asyncio.sleep(0.05)
    changes.delays.clear()

    async def work(deadline: float) -> int:
        start = counts[0]
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        for task in tasks:
            if task.done():
                task.result()
        return counts[0] - start

    try:
        result = await measure(devices, seconds, work)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close(drivers)
    add_delays(result, changes.delays)
    return result


def add_delays(result: dict[str, float], delays: list[float]) -> None:
    ordered = sorted(delays) or [float("nan")]
    result["changes seen"] = len(delays)
    result["change seen after p50 ms"] = statistics.median(ordered) * 1000
    result["change seen after p99 ms"] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def table(title: str, rows: dict[str, dict[str, float]]) -> None:
    print(title)
    keys = [k for k in next(iter(rows.values())) if not k.startswith("_")]
    print(f"  {'':26}" + "".join(f"{m:>18}" for m in rows))
    for key in keys:
        print(f"  {key:26}" + "".join(f"{r.get(key, float('nan')):>18,.2f}" for r in rows.values()))


async def main() -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10, help="per mode")
    parser.add_argument("--freshness", type=float, default=1.0, help="polling cycle, s")
    parser.add_argument("--change-every", type=float, default=10.0, help="each value changes this often, s")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.devices, args.objects, args.seconds = 4, 5, 2
    if args.serve:
        await serve(args.devices, args.objects, args.change_every)
        return
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            "--devices",
            str(args.devices),
            "--objects",
            str(args.objects),
            "--change-every",
            str(args.change_every),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        devices = Devices(child)
        print(
            f"bacnet: {args.devices} devices x {args.objects} analog inputs (bacpypes3 applications on loopback),"
            f" one local application; {args.seconds:g} s per mode; each value changes every {args.change_every:g} s"
        )
        fast = {
            "ReadProperty": await throughput(devices, args.objects, args.seconds, read_multiple=False),
            "RPM": await throughput(devices, args.objects, args.seconds, read_multiple=True),
        }
        table("throughput (as fast as the devices answer):", fast)
        fresh = {
            "ReadProperty": await polled(devices, args.objects, args.seconds, args.freshness, False),
            "RPM": await polled(devices, args.objects, args.seconds, args.freshness, True),
            "COV": await cov(devices, args.objects, args.seconds, confirmed=True),
            "COV unconfirmed": await cov(devices, args.objects, args.seconds, confirmed=False),
        }
        table(f"equal freshness (every value at most {args.freshness:g} s old):", fresh)
    finally:
        assert child.stdin is not None
        child.stdin.close()  # the devices' process ends at the end of its input
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
    polled_rp = fresh["ReadProperty"]["datagrams/s"]
    packets = polled_rp / max(fresh["COV"]["datagrams/s"], 1e-9)
    packets_unconfirmed = polled_rp / max(fresh["COV unconfirmed"]["datagrams/s"], 1e-9)
    packets_rpm = fresh["RPM"]["datagrams/s"] / max(fresh["COV"]["datagrams/s"], 1e-9)
    speedup = fast["RPM"]["properties/s"] / fast["ReadProperty"]["properties/s"]
    print(
        f"headline: at {args.freshness:g} s freshness with each value changing every {args.change_every:g} s,"
        f" COV {packets:.1f}x fewer datagrams than polled ReadProperty ({packets_unconfirmed:.1f}x unconfirmed,"
        f" {packets_rpm:.1f}x vs polled RPM); RPM {speedup:.1f}x the properties/s of ReadProperty"
        f" ({fast['RPM']['properties/s']:,.0f} vs {fast['ReadProperty']['properties/s']:,.0f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
