#!/usr/bin/env python3
"""Benchmark: property updates from mapper to persisted twin, on Mosquitto and on the embedded broker.

    python hack/bench/twin_pipeline.py                      # 1000 devices x 10 properties, 1 s cycle
    python hack/bench/twin_pipeline.py --devices 2000 --cycle 250 --seconds 15
    python hack/bench/twin_pipeline.py --quick              # a small run (the test suite runs this)

Set-up, per broker: the edge (bus client + twin module + SQLite) runs in this process, pinned to
one core; the virtual mapper runs as its own process (``kubeedge mapper run virtual``) on the
other core, reading N devices x M counter properties every cycle and sending one twin update per
device and cycle. Measured over a window after warm-up:

* property updates/s the twin module processed, and rows/s it persisted (group commits);
* latency from the mapper's read (the update's timestamp) to the commit: p50 / p99;
* RSS and CPU of the edge process (the embedded broker lives in it when embedded) and the mapper.

Baseline, in the same run: the broker's own raw QoS 0 rate, one paho publisher process sending
as fast as it can to a subscriber in this process, messages of the same size as the twin updates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kubeedge.bus import BusClient, EmbeddedBroker, free_port
from kubeedge.testing import Mosquitto

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin_load import twin_load  # a sibling script, not a package

RAW_PUBLISHER = r"""
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
client.max_queued_messages_set(0)
client.connect(host, port)
client.loop_start()
time.sleep(0.3)
payload = b"x" * size
for i in range(count):
    client.publish("$hw/events/device/bench/raw/twin/update", payload, 0)
    if i % 1000 == 0:
        while len(client._out_packet) > 5000:
            time.sleep(0.001)
while client._out_packet:
    time.sleep(0.01)
time.sleep(0.5)
client.disconnect()
client.loop_stop()
"""


def sample_payload_size(properties: int) -> int:
    twin = {
        f"p{i}": {
            "actual": {"value": "12345.5", "metadata": {"timestamp": 1754450000000}},
            "metadata": {"type": "float"},
        }
        for i in range(properties)
    }
    body = {"event_id": "", "timestamp": 1754450000000, "twin": twin}
    return len(json.dumps(body, separators=(",", ":")))


async def raw_rate(url: str, size: int, count: int) -> float:
    """Messages/s from a paho publisher process through the broker to a subscriber here."""
    bus = BusClient(url, client_id=f"bench-raw-{os.getpid()}")
    await bus.start()
    stamps: list[float] = []
    done = asyncio.Event()

    def on_message(_topic: str, _payload: bytes) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) >= count:
            done.set()

    bus.subscribe("$hw/events/device/bench/raw/twin/update", on_message)
    await asyncio.sleep(0.3)
    host, port = bus.address.host, bus.address.port
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RAW_PUBLISHER, host, str(port), str(count), str(size)
    )
    try:
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        pass
    await process.wait()
    await bus.stop()
    if len(stamps) < 2:
        return 0.0
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


async def pipeline(url: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    async with twin_load(url, workdir, args.devices, args.properties, args.cycle, args.pin) as load:
        twin, me, other = load.twin, load.edge_process, load.mapper_process
        # warm-up: every device reporting
        deadline = time.monotonic() + args.warmup + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            if load.online() >= args.devices and time.monotonic() > deadline - 60:
                break
        await asyncio.sleep(args.warmup)
        stats = twin.stats
        start_updates, start_rows, start_messages = (
            stats.property_updates,
            stats.persisted_rows,
            stats.messages,
        )
        stats.latencies_ms.clear()
        cpu0, cpu_m0, t0 = me.cpu_times(), other.cpu_times(), time.monotonic()
        rss_peak = 0
        while time.monotonic() - t0 < args.seconds:
            await asyncio.sleep(0.5)
            rss_peak = max(rss_peak, me.memory_info().rss)
        elapsed = time.monotonic() - t0
        cpu1, cpu_m1 = me.cpu_times(), other.cpu_times()
        latencies = sorted(stats.latencies_ms)
        return {
            "offered/s": args.devices * args.properties * 1000 / args.cycle,
            "updates/s": (stats.property_updates - start_updates) / elapsed,
            "rows/s": (stats.persisted_rows - start_rows) / elapsed,
            "msgs/s": (stats.messages - start_messages) / elapsed,
            "p50 ms": statistics.median(latencies) if latencies else float("nan"),
            "p99 ms": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
            "edge RSS MB": rss_peak / 2**20,
            "edge CPU %": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / elapsed,
            "mapper RSS MB": other.memory_info().rss / 2**20,
            "mapper CPU %": 100 * ((cpu_m1.user + cpu_m1.system) - (cpu_m0.user + cpu_m0.system)) / elapsed,
        }


async def main() -> None:
    # `timeout` or a supervisor stops us with SIGTERM: cancel, so the finally blocks stop the children.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--properties", type=int, default=10)
    parser.add_argument("--cycle", type=int, default=1000, help="collectCycle, ms")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--raw-count", type=int, default=50_000)
    parser.add_argument("--brokers", default="mosquitto,embedded")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin edge and mapper to cores"
    )
    parser.add_argument("--quick", action="store_true", help="a small, short run (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.devices, args.properties, args.cycle, args.seconds, args.warmup, args.raw_count = (
            20,
            5,
            200,
            2,
            1,
            2000,
        )
    if (os.cpu_count() or 1) < 2:
        args.pin = False
    size = sample_payload_size(args.properties)
    print(
        f"twin pipeline: {args.devices} devices x {args.properties} properties every {args.cycle} ms "
        f"({args.devices * args.properties * 1000 / args.cycle:,.0f} property updates/s offered), "
        f"{size}-byte updates, {args.seconds:g} s window"
    )
    rows = []
    for broker in args.brokers.split(","):
        workdir = Path(tempfile.mkdtemp(prefix="kubeedge-bench-"))
        mosquitto = None
        embedded = None
        try:
            if broker == "mosquitto":
                mosquitto = Mosquitto().start()
                url = mosquitto.url
                raw_url = url
            else:
                embedded = EmbeddedBroker("127.0.0.1", free_port())
                await embedded.start()
                raw_url = embedded.url
                url = "embedded"
            raw = await raw_rate(raw_url, size, args.raw_count)
            if embedded is not None:
                await embedded.stop()
            result = await pipeline(url, args, workdir)
            result["raw msgs/s"] = raw
            result["msgs % of raw"] = 100 * result["msgs/s"] / raw if raw else float("nan")
            rows.append((broker, result))
        finally:
            if mosquitto is not None:
                mosquitto.close()
            shutil.rmtree(workdir, ignore_errors=True)
    keys = list(rows[0][1])
    print(f"{'':16}" + "".join(f"{b:>14}" for b, _ in rows))
    for key in keys:
        print(f"{key:16}" + "".join(f"{r[key]:>14,.1f}" for _, r in rows))
    best = dict(rows)
    headline = ", ".join(
        f"{b}: {r['updates/s']:,.0f} updates/s persisted, p99 {r['p99 ms']:.1f} ms, edge RSS {r['edge RSS MB']:.0f} MB"
        for b, r in best.items()
    )
    print(f"headline: {headline}")


if __name__ == "__main__":
    asyncio.run(main())
