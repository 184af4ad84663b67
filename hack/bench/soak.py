#!/usr/bin/env python3
"""Soak: the twin pipeline's load for minutes, watching the edge's memory.

    python hack/bench/soak.py                      # 10 minutes, 1000 devices x 10 properties, 1 s cycle, Mosquitto
    python hack/bench/soak.py --minutes 60 --broker embedded
    python hack/bench/soak.py --quick              # 20 devices for 20 s (the test suite runs this)

The load is ``twin_pipeline.py``'s (``twin_load.py``: the edge in this process, the virtual mapper
in its own, 10,000 property updates/s by default). Every ``--interval`` seconds (30) a row: time,
edge and mapper RSS, property updates/s and rows persisted/s over the interval, errors. After the
run: the edge's RSS growth from the end of the warm-up (``--warmup``, 60 s) to the end, the figure
a leak shows in; ``--max-growth MB`` makes a larger growth exit with status 1.

Baseline, in the same run: the RSS at the end of the warm-up, which the growth is measured from.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from kubeedge.testing import Mosquitto

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin_load import Load, twin_load  # a sibling script, not a package


def mb(nbytes: int) -> float:
    return nbytes / 2**20


async def soak(load: Load, args: argparse.Namespace) -> tuple[float, float, float, float]:
    """Run the load; print a row per interval; return the RSS after warm-up, at the end and at
    its peak (MB), and the property updates/s processed after warm-up."""
    stats = load.twin.stats
    started = time.monotonic()
    print(
        f"{'time s':>7} {'edge RSS MB':>12} {'mapper RSS MB':>14} {'updates/s':>10} {'rows/s':>9} {'errors':>7}"
    )
    last_updates, last_rows, last_at = stats.property_updates, stats.persisted_rows, started
    warm_rss: float | None = None
    warm_updates, warm_at = 0, started
    peak = 0.0
    next_row = started + args.interval
    while True:
        now = time.monotonic()
        elapsed = now - started
        rss = mb(load.edge_process.memory_info().rss)
        peak = max(peak, rss)
        if warm_rss is None and elapsed >= args.warmup:
            warm_rss, warm_updates, warm_at = rss, stats.property_updates, now
            print(f"{elapsed:7.0f}  warm-up over: edge RSS {rss:.1f} MB, growth measured from here")
        if now >= next_row or elapsed >= args.minutes * 60:
            span = now - last_at
            print(
                f"{elapsed:7.0f} {rss:12.1f} {mb(load.mapper_process.memory_info().rss):14.1f} "
                f"{(stats.property_updates - last_updates) / span:10,.0f} "
                f"{(stats.persisted_rows - last_rows) / span:9,.0f} {stats.errors:7d}",
                flush=True,
            )
            last_updates, last_rows, last_at = stats.property_updates, stats.persisted_rows, now
            next_row += args.interval
        if elapsed >= args.minutes * 60:
            if warm_rss is None:
                warm_rss, warm_updates, warm_at = rss, stats.property_updates, started
            rate = (stats.property_updates - warm_updates) / max(now - warm_at, 1e-9)
            return warm_rss, rss, peak, rate
        if load.mapper.poll() is not None:
            log = (load.workdir / "mapper.log").read_text(errors="replace")[-3000:]
            raise SystemExit(
                f"the mapper process exited ({load.mapper.returncode}) after {elapsed:.0f} s:\n{log}"
            )
        await asyncio.sleep(1.0)


async def main() -> int:
    # `timeout` or a supervisor stops us with SIGTERM: cancel, so the finally blocks stop the children.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--properties", type=int, default=10)
    parser.add_argument("--cycle", type=int, default=1000, help="collectCycle, ms")
    parser.add_argument("--broker", choices=["mosquitto", "embedded"], default="mosquitto")
    parser.add_argument("--interval", type=float, default=30, help="seconds between rows")
    parser.add_argument("--warmup", type=float, default=60, help="seconds before growth is measured")
    parser.add_argument("--max-growth", type=float, help="exit 1 if the edge grows more (MB) after warm-up")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin edge and mapper to cores"
    )
    parser.add_argument("--quick", action="store_true", help="a small, short run (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.devices, args.properties, args.cycle, args.minutes, args.interval, args.warmup = (
            20,
            5,
            200,
            1 / 3,
            5,
            5,
        )
    if (os.cpu_count() or 1) < 2:
        args.pin = False
    offered = args.devices * args.properties * 1000 / args.cycle
    print(
        f"soak: {args.devices} devices x {args.properties} properties every {args.cycle} ms "
        f"({offered:,.0f} property updates/s offered) on {args.broker} for {args.minutes:.3g} min"
    )
    workdir = Path(tempfile.mkdtemp(prefix="kubeedge-soak-"))
    mosquitto = Mosquitto().start() if args.broker == "mosquitto" else None
    try:
        url = mosquitto.url if mosquitto is not None else "embedded"
        async with twin_load(url, workdir, args.devices, args.properties, args.cycle, args.pin) as load:
            warm, end, peak, rate = await soak(load, args)
    finally:
        if mosquitto is not None:
            mosquitto.close()
        shutil.rmtree(workdir, ignore_errors=True)
    growth = end - warm
    print(f"edge RSS after warm-up {warm:.1f} MB, at the end {end:.1f} MB, peak {peak:.1f} MB")
    print(
        f"headline: {offered:,.0f} updates/s offered, {rate:,.0f}/s processed after warm-up, for "
        f"{args.minutes:.3g} min: edge RSS growth after warm-up {growth:+.1f} MB"
    )
    if args.max_growth is not None and growth > args.max_growth:
        print(
            f"the edge grew {growth:.1f} MB, more than --max-growth {args.max_growth:g} MB", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
