"""The twin pipeline's load, shared by the benchmarks in this folder: an edge in this process and
the virtual mapper in its own, reporting N devices x M counter properties every cycle.

``twin_pipeline.py`` measures a short window of it; ``soak.py`` runs it for minutes and watches
memory. Both import from here, so they measure the same thing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from kubeedge.bus import free_port
from kubeedge.config import EdgeConfig
from kubeedge.edge.core import EdgeCore


def manifests(folder: Path, devices: int, properties: int, cycle: int) -> None:
    """The load's manifests, written as text (building them with PyYAML would inflate this
    process's memory, which is the edge's and is measured)."""
    props = "".join(
        f"    - {{name: p{i}, type: FLOAT, accessMode: ReadOnly, visitors: {{protocolName: virtual, "
        f"configData: {{generator: counter, step: 0.5}}}}}}\n"
        for i in range(properties)
    )
    model = (
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: DeviceModel\n"
        f"metadata: {{name: bench-model, namespace: bench}}\nspec:\n  protocol: virtual\n  properties:\n{props}"
    )
    device_props = "".join(f"    - {{name: p{i}, collectCycle: {cycle}}}\n" for i in range(properties))
    with (folder / "bench.yaml").open("w") as out:
        out.write(model)
        for d in range(devices):
            out.write(
                "---\napiVersion: devices.kubeedge.io/v1beta1\nkind: Device\n"
                f"metadata: {{name: dev-{d:05d}, namespace: bench}}\nspec:\n"
                "  deviceModelRef: {name: bench-model}\n  protocol: {protocolName: virtual}\n"
                f"  properties:\n{device_props}"
            )


@dataclass
class Load:
    """A running load: the edge (in this process), its twin module and the mapper process."""

    core: EdgeCore
    twin: Any
    mapper: subprocess.Popen[bytes]
    edge_process: psutil.Process
    mapper_process: psutil.Process
    workdir: Path

    def online(self) -> int:
        return sum(1 for d in self.twin.devices.values() if d.state == "online")


@asynccontextmanager
async def twin_load(
    url: str, workdir: Path, devices: int, properties: int, cycle: int, pin: bool
) -> AsyncIterator[Load]:
    """Start the edge on ``url`` (``embedded`` or a broker URL) and the mapper; stop both after."""
    folder = workdir / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    manifests(folder, devices, properties, cycle)
    bus: dict[str, object] = {"url": url}
    if url == "embedded":
        bus["listen"] = f"127.0.0.1:{free_port()}"
    config = EdgeConfig.model_validate(
        {
            "node": "bench",
            "bus": bus,
            "dataDir": str(workdir / "data"),
            "manifests": str(folder),
            "mappers": {},
        }
    )
    core = EdgeCore(config)
    await core.start()
    assert core.context is not None
    mapper_config = workdir / "mapper.yaml"
    mapper_config.write_text(yaml.safe_dump({"node": "bench", "bus": {"url": core.context.bus_url}}))
    with (workdir / "mapper.log").open("wb") as mapper_log:  # its log, for when it fails
        mapper = subprocess.Popen(
            [sys.executable, "-m", "kubeedge", "mapper", "run", "virtual", "-c", str(mapper_config)],
            stdout=mapper_log,
            stderr=subprocess.STDOUT,
        )
    if pin:
        os.sched_setaffinity(0, {0})
        os.sched_setaffinity(mapper.pid, {1})
    try:
        yield Load(core, core.module("twin"), mapper, psutil.Process(), psutil.Process(mapper.pid), workdir)
    finally:
        mapper.terminate()
        try:
            mapper.wait(10)
        except subprocess.TimeoutExpired:
            print("mapper did not stop within 10 s of SIGTERM; its tasks:", file=sys.stderr)
            mapper.send_signal(signal.SIGUSR1)
            await asyncio.sleep(2)
            mapper.kill()
        await core.stop()
        if pin:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
