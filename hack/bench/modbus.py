#!/usr/bin/env python3
"""Benchmark: Modbus reads batched by the framework's planner vs one request per property.

    python hack/bench/modbus.py                    # 50 devices x 20 registers, 5 s per mode
    python hack/bench/modbus.py --quick

The simulator (a pymodbus TCP server with one unit per device, as behind a gateway) runs in its
own process; this process runs the Modbus driver for every device, each device reading all its
properties as fast as the link allows, all devices at once over the shared connection. Both modes
run in the same invocation: ``batched`` (the driver's default: blocks of up to 125 registers) and
``per-property`` (``maxRegisters: 1``, one request per register, what most gateways do).
Printed: properties read per second, requests per second, and the CPU seconds this process and
the simulator spent per 1,000 properties.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time

import psutil

from kubeedge import Device, DeviceModel, Property
from kubeedge.testing import free_port
from kubeedge_mapper_modbus.config import ModbusConfig, ModbusVisitor
from kubeedge_mapper_modbus.driver import ModbusDriver


def driver_for(unit: int, port: int, max_registers: int) -> ModbusDriver:
    config = ModbusConfig.model_validate(
        {"ip": "127.0.0.1", "port": port, "slaveID": unit, "maxRegisters": max_registers, "timeout": 3000}
    )
    device = Device.model_validate({"metadata": {"name": f"meter-{unit}"}})
    model = DeviceModel.model_validate({"metadata": {"name": "meter"}})
    return ModbusDriver(device, model, config, ModbusDriver.settings_model())


def properties(count: int) -> list[Property[ModbusVisitor]]:
    return [
        Property(f"r{i}", "int", ModbusVisitor.model_validate({"register": "HoldingRegister", "offset": i}))
        for i in range(count)
    ]


async def run_mode(
    port: int, devices: int, registers: int, seconds: float, max_registers: int
) -> dict[str, float]:
    drivers = [driver_for(unit, port, max_registers) for unit in range(1, devices + 1)]
    props = properties(registers)
    for driver in drivers:
        await driver.connect()
    counts = [0] * devices
    deadline = time.monotonic() + seconds

    async def loop(i: int, driver: ModbusDriver) -> None:
        while time.monotonic() < deadline:
            results = await driver.read_many(props)
            bad = [r for r in results if isinstance(r, BaseException)]
            if bad:
                raise bad[0]
            counts[i] += len(results)

    me = psutil.Process()
    cpu0 = me.cpu_times()
    start = time.monotonic()
    await asyncio.gather(*(loop(i, d) for i, d in enumerate(drivers)))
    elapsed = time.monotonic() - start
    cpu1 = me.cpu_times()
    requests = sum(d.requests for d in drivers)
    for driver in drivers:
        await driver.close()
    total = sum(counts)
    return {
        "properties/s": total / elapsed,
        "requests/s": requests / elapsed,
        "client CPU s/1k props": ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / total * 1000,
        "_total": total,
        "_elapsed": elapsed,
    }


async def main() -> None:
    # `timeout` or a supervisor stops us with SIGTERM: cancel, so the finally blocks stop the children.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--registers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.devices, args.registers, args.seconds = 5, 20, 1
    port = free_port()
    units = ",".join(str(u) for u in range(1, args.devices + 1))
    server = subprocess.Popen(
        [sys.executable, "-m", "kubeedge_mapper_modbus.simulator", "--port", str(port), "--units", units],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "simulated Modbus units ... on ..."
        server_process = psutil.Process(server.pid)
        print(
            f"modbus: {args.devices} devices x {args.registers} holding registers, one gateway (shared connection), "
            f"{args.seconds:g} s per mode"
        )
        rows = {}
        for mode, limit in (("per-property", 1), ("batched", 125)):
            before = server_process.cpu_times()
            result = await run_mode(port, args.devices, args.registers, args.seconds, limit)
            after = server_process.cpu_times()
            server_cpu = (after.user + after.system) - (before.user + before.system)
            result["server CPU s/1k props"] = server_cpu / result["_total"] * 1000
            rows[mode] = result
    finally:
        server.terminate()
        server.wait(10)
    keys = [k for k in rows["batched"] if not k.startswith("_")]
    print(f"{'':24}" + "".join(f"{m:>16}" for m in rows))
    for key in keys:
        print(f"{key:24}" + "".join(f"{r[key]:>16,.3f}" for r in rows.values()))
    speedup = rows["batched"]["properties/s"] / rows["per-property"]["properties/s"]
    cpu_ratio = rows["per-property"]["client CPU s/1k props"] / rows["batched"]["client CPU s/1k props"]
    print(
        f"headline: batching reads {speedup:.1f}x more properties/s "
        f"({rows['batched']['properties/s']:,.0f} vs {rows['per-property']['properties/s']:,.0f}) "
        f"with {cpu_ratio:.1f}x less client CPU per property"
    )


if __name__ == "__main__":
    asyncio.run(main())
